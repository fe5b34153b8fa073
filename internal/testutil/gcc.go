package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// CompileC compiles C source, as name.c in a new temporary folder, with
// gcc and flags, and returns the object's bytes. The folder is mapped
// away in debug info (-fdebug-prefix-map), so the same source always
// makes the same bytes. The test fails, and does not skip, without gcc:
// the project's test set-up installs it.
func CompileC(t testing.TB, name, src string, flags ...string) []byte {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("gcc is not installed: run `make test-deps` (or apt-get install gcc); the test compiles C: %v", err)
	}
	dir := t.TempDir()
	c, o := filepath.Join(dir, name+".c"), filepath.Join(dir, name+".o")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(slices.Clone(flags), "-fdebug-prefix-map="+dir+"=.", c, "-o", o)
	if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	obj, err := os.ReadFile(o)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}
