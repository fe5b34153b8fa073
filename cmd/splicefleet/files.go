package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/splicefleet/splicefleet/splice"
)

// readFile reads at most limit bytes of path and fails when there are more:
// nothing unbounded reaches a parser.
func readFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: larger than the %d byte limit", path, limit)
	}
	return data, nil
}

// readBundle decodes a bundle file.
func readBundle(path string) (*splice.Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := splice.Decode(io.LimitReader(f, splice.MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// folder, synced and renamed into place, so readers see the old file or the
// new one, never a part. On failure nothing is left behind.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable; a folder that cannot be synced
	// (some network file systems) still holds a complete file.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// writeBundle encodes b and writes it to path atomically.
func writeBundle(path string, b *splice.Bundle) error {
	raw, err := b.Bytes()
	if err != nil {
		return err
	}
	return writeFileAtomic(path, raw, 0o644)
}

// passphrase reads a secret key's passphrase from a file or from the
// SPLICEFLEET_PASSPHRASE environment variable: never from a flag's value,
// which other users can read in the process list.
func passphrase(e *env, file string) ([]byte, error) {
	if file != "" {
		p, err := readFile(file, 4096)
		if err != nil {
			return nil, fmt.Errorf("passphrase file: %w", err)
		}
		// A trailing newline is what an editor or echo leaves.
		for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
			p = p[:len(p)-1]
		}
		if len(p) == 0 {
			return nil, errors.New("passphrase file is empty")
		}
		return p, nil
	}
	if v := e.getenv("SPLICEFLEET_PASSPHRASE"); v != "" {
		return []byte(v), nil
	}
	return nil, nil
}
