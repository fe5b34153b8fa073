package hostkey

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	again, err := LoadOrCreate(dir)
	if err != nil || !bytes.Equal(again.Public(), k.Public()) {
		t.Fatalf("read back another key: %v", err)
	}
	p, err := Decode(Encode(k.Public()))
	if err != nil || !bytes.Equal(p, k.Public()) || len(Encode(k.Public())) != 43 {
		t.Errorf("encoding round trip: %v", err)
	}
	if _, err := Decode("not a key"); !errors.Is(err, ErrBadKey) {
		t.Errorf("decoded junk: %v", err)
	}
}

// One test per way the key file can be unsafe: each is refused, saying
// what is wrong, and nothing is written over it.
func TestLoadOrCreateRefusesUnsafeFiles(t *testing.T) {
	for name, setup := range map[string]func(t *testing.T, path string){
		"readable by others": func(t *testing.T, path string) {
			if err := os.WriteFile(path, make([]byte, 32), 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"a symbolic link": func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "elsewhere")
			if err := os.WriteFile(target, make([]byte, 32), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		},
		"truncated": func(t *testing.T, path string) {
			if err := os.WriteFile(path, make([]byte, 31), 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			setup(t, path)
			before, _ := os.Lstat(path)
			if _, err := LoadOrCreate(dir); !errors.Is(err, ErrBadKey) {
				t.Fatalf("loaded: %v", err)
			}
			after, _ := os.Lstat(path)
			if before.Mode() != after.Mode() || before.Size() != after.Size() {
				t.Errorf("the file changed: %v, was %v", after.Mode(), before.Mode())
			}
		})
	}
}

func TestPins(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	p, err := OpenPins(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := Generate(nil)
	b, _ := Generate(nil)
	pin, pinned, err := p.Observe("web", a.Public(), t0.Add(time.Minute))
	if err != nil || !pinned || !pin.Since.Equal(t0.Add(time.Minute)) {
		t.Fatalf("first sight: %+v %t %v", pin, pinned, err)
	}
	if _, pinned, err := p.Observe("web", a.Public(), t0.Add(time.Hour)); err != nil || pinned {
		t.Errorf("the same key again: %t %v", pinned, err)
	}
	if _, _, err := p.Observe("web", b.Public(), t0.Add(time.Hour)); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("another key for the name: %v", err)
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	// Read back: the pin and the table's start survive.
	p, err = OpenPins(dir, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := p.Lookup("web"); !ok || !bytes.Equal(got.Key, a.Public()) || !p.Created().Equal(t0) {
		t.Fatalf("read back: %+v %t created %s", got, ok, p.Created())
	}
	// A re-key takes the new key, keeps the pin's age; an older one is
	// refused and changes nothing.
	if err := p.Rekey("web", b.Public(), "doc-2", t0.Add(2*time.Hour), t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	err = p.Rekey("web", a.Public(), "doc-1", t0.Add(time.Hour), t0.Add(4*time.Hour))
	if !errors.Is(err, ErrStaleRekey) || !strings.Contains(err.Error(), "issued") {
		t.Errorf("an older re-key: %v", err)
	}
	got, _ := p.Lookup("web")
	if !bytes.Equal(got.Key, b.Public()) || !got.Since.Equal(t0.Add(time.Minute)) || got.Rekeyed != "doc-2" {
		t.Errorf("after the re-keys: %+v", got)
	}
}
