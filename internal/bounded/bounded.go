// Package bounded reads whole files of a known largest size. Every file
// splicefleet parses (keyrings, journals, stored documents, kernel value
// files, patches) is read through it: the limit is checked on the bytes
// read, never on the size Stat reports (a file may grow, and /proc and
// /sys report 4096 or 0), and a file over its limit is an error, never a
// silent truncation, so nothing unbounded reaches a parser.
package bounded

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge wraps the error for a file over its limit.
var ErrTooLarge = errors.New("larger than its limit")

// ReadFile reads all of path, at most limit bytes. A missing file's error
// is os.Open's (errors.Is fs.ErrNotExist); every error names the file.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, path, limit)
}

// Read reads all of r, at most limit bytes; name says what r is in errors.
func Read(r io.Reader, name string, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: %w: more than %d bytes", name, ErrTooLarge, limit)
	}
	return data, nil
}
