package ksrc

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// TestBuildModuleCleansTheEnvironment: the module build, like the compile
// stage, does not take the user's KCFLAGS, ARCH or CROSS_COMPILE (before,
// create --source and the final build of create --patch did).
func TestBuildModuleCleansTheEnvironment(t *testing.T) {
	seen := filepath.Join(t.TempDir(), "env")
	kbuild := testutil.TempTree(t, map[string]string{
		"Makefile": "modules:\n\t@echo \"KCFLAGS=[$$KCFLAGS] ARCH=[$$ARCH] CROSS_COMPILE=[$$CROSS_COMPILE] LC_ALL=[$$LC_ALL]\" > " + seen + "\n",
	})
	src := testutil.TempTree(t, map[string]string{"Kbuild": "obj-m := x.o\n", "x.c": "\n"})
	t.Setenv("KCFLAGS", "-DEVIL")
	t.Setenv("ARCH", "arm64")
	t.Setenv("CROSS_COMPILE", "aarch64-linux-gnu-")
	var log bytes.Buffer
	_, err := BuildModule(t.Context(), BuildOptions{Source: src, KernelBuild: kbuild}, &log)
	if err == nil || !strings.Contains(err.Error(), "made no .ko") {
		t.Fatalf("BuildModule = %v (the fake build makes no module)\n%s", err, log.String())
	}
	got, err := os.ReadFile(seen)
	if err != nil {
		t.Fatalf("the build's recipe did not run: %v\n%s", err, log.String())
	}
	if want := "KCFLAGS=[] ARCH=[] CROSS_COMPILE=[] LC_ALL=[C]\n"; string(got) != want {
		t.Errorf("the build saw %q, want %q", got, want)
	}
}
