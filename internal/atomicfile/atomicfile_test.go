package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFileReplacesWholeFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := WriteFile(p, []byte("old contents, longer"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "new" {
		t.Fatalf("read %q, %v", got, err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

func TestWriteFileFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A target that is a folder cannot be replaced by rename.
	bad := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(bad, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(bad, []byte("data"), 0o600); err == nil {
		t.Fatal("wrote over a folder")
	}
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Fatalf("old file changed: %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary file left behind: %v", entries)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("wrote into a missing folder")
	}
}

// TestCreateCommitStreams: a file written in pieces replaces its target
// only at Commit; until then readers see the old contents, and the
// temporary file carries the caller's pattern.
func TestCreateCommitStreams(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "m.ko")
	if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Create(target, 0o640, "m.*.unverified")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if !strings.HasSuffix(f.Name(), ".unverified") || filepath.Dir(f.Name()) != dir {
		t.Errorf("temporary file %s", f.Name())
	}
	for _, piece := range []string{"n", "e", "w"} {
		if _, err := f.Write([]byte(piece)); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(target); string(b) != "old" {
			t.Fatalf("the target reads %q before Commit", b)
		}
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Fatalf("after Commit: %q", b)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if err := f.Commit(); err == nil {
		t.Error("a second Commit was taken")
	}
	f.Abort() // after Commit: nothing
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left in the folder: %v", entries)
	}
}

// TestAbortLeavesTheTarget: an aborted write removes its temporary file
// and leaves the target as it was.
func TestAbortLeavesTheTarget(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "state.json")
	if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Create(target, 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	f.Abort()
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Fatalf("after Abort: %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left in the folder: %v", entries)
	}
	if err := f.Commit(); err == nil {
		t.Error("Commit after Abort was taken")
	}
}
