package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/splicefleet/splicefleet/internal/atomicfile"
	"github.com/splicefleet/splicefleet/internal/bounded"
	"github.com/splicefleet/splicefleet/splice"
)

// readFile reads at most limit bytes of path and fails when there are more:
// nothing unbounded reaches a parser.
func readFile(path string, limit int64) ([]byte, error) {
	return bounded.ReadFile(path, limit)
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

// writeBundle encodes b and writes it to path atomically.
func writeBundle(path string, b *splice.Bundle) error {
	raw, err := b.Bytes()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, raw, 0o644)
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
