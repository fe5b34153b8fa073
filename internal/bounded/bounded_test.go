package bounded

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(p, 10); err != nil || string(b) != "0123456789" {
		t.Fatalf("at the limit: %q %v", b, err)
	}
	_, err := ReadFile(p, 9)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "more than 9 bytes") {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing"), 9); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}

// TestReadFileIgnoresStat: /proc files report a size of 0 and are read in
// full; the limit is on what is read.
func TestReadFileIgnoresStat(t *testing.T) {
	b, err := ReadFile("/proc/self/status", 1<<20)
	if err != nil || !strings.Contains(string(b), "Name:") {
		t.Fatalf("/proc/self/status: %q %v", b, err)
	}
	if _, err := ReadFile("/proc/self/status", 16); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("/proc/self/status over 16 bytes: %v", err)
	}
}
