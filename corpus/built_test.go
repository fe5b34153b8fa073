package corpus

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// IndexDebugInfo on objects compiled here with debug info: a unit of
// "vmlinux" and one of a module, whose source paths are absolute paths of
// the build folder, are found under their paths in the tree; a header
// that gives them code is built too; a file no object names is not.
func TestIndexDebugInfo(t *testing.T) {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("the test compiles with gcc (Debian package gcc): %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	files := map[string]string{
		"include/linux/twice.h": "static inline int twice(int x) { return 2 * x; }\n",
		"lib/dup.c":             "#include <linux/twice.h>\nint dup(int x) { return twice(x); }\n",
		"fs/nfsd/fh.c":          "int fh(int x) { return x + 1; }\n",
		"fs/nfsd/unbuilt.c":     "int unbuilt(void) { return 0; }\n",
	}
	for name, text := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const release = "6.1.0-53-cloud-amd64"
	dbg := filepath.Join(dir, "dbg")
	vmlinux := filepath.Join(dbg, "usr/lib/debug/boot/vmlinux-"+release)
	module := filepath.Join(dbg, "usr/lib/debug/lib/modules", release, "kernel/fs/nfsd/nfsd-x.ko")
	for out, in := range map[string]string{vmlinux: "lib/dup.c", module: "fs/nfsd/fh.c"} {
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		// Built from the tree's absolute path, as a build folder is.
		cmd := exec.Command(cc, "-g", "-O1", "-I", filepath.Join(src, "include"), "-c", "-o", out, filepath.Join(src, in))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
	}
	b, err := IndexDebugInfo(dbg, release, src)
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string][]string{
		"lib/dup.c":             {Vmlinux},
		"include/linux/twice.h": {Vmlinux},
		"fs/nfsd/fh.c":          {"nfsd_x"},
	} {
		if !slices.Equal(b[file], want) {
			t.Errorf("%s built into %v, want %v", file, b[file], want)
		}
	}
	if b["fs/nfsd/unbuilt.c"] != nil {
		t.Errorf("fs/nfsd/unbuilt.c is in no object, yet indexed as %v", b["fs/nfsd/unbuilt.c"])
	}
	if got := b.Objects([]string{"fs/nfsd/fh.c", "lib/dup.c", "fs/nfsd/unbuilt.c"}); !slices.Equal(got, []string{Vmlinux, "nfsd_x"}) {
		t.Errorf("Objects = %v, want vmlinux first, then the module", got)
	}

	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadBuilt(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(b) || !slices.Equal(back["fs/nfsd/fh.c"], b["fs/nfsd/fh.c"]) {
		t.Errorf("round trip gave %v, want %v", back, b)
	}
	if _, err := ReadBuilt(bytes.NewReader([]byte("no tab here\n"))); err == nil {
		t.Error("ReadBuilt accepted a line without an object")
	}
	if _, err := IndexDebugInfo(filepath.Join(dir, "missing"), release, src); err == nil {
		t.Error("IndexDebugInfo of a missing folder gave no error")
	}
}
