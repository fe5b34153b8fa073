package splice_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/internal/testdisk"
	"github.com/splicefleet/splicefleet/splice"
)

// TestStateDiskFullOrReadOnly puts the host's state directory on a small
// tmpfs, applies one patch, and then makes the file system full, then
// read-only. An apply (of a bundle already stored, and of a new one), an
// upgrade, an undo and an undo --all are each refused with the cause in
// the error, before the kernel is asked anything: the kernel, every file
// of the state directory and the host's own view stay as they were. Once
// the disk is back, the same operations succeed on the same Host.
func TestStateDiskFullOrReadOnly(t *testing.T) {
	for _, c := range []struct {
		name, cause string
		break_      func(t *testing.T, e *hostEnv) func()
	}{
		{"full", "no space left on device", func(t *testing.T, e *hostEnv) func() {
			return testdisk.Fill(t, filepath.Join(e.stateDir, "filler"))
		}},
		{"read-only", "read-only file system", func(t *testing.T, e *hostEnv) func() { return testdisk.ReadOnly(t, e.stateDir) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newHostEnv(t)
			testdisk.Tmpfs(t, e.stateDir, 8<<20)
			h := e.mustOpen()
			e.apply(h, e.bundle("base", 1, []string{"f1"}))
			stored := e.bundle("stored", 1, []string{"f2"})
			e.apply(h, stored)
			if _, _, err := h.Undo(context.Background(), "stored"); err != nil {
				t.Fatal(err)
			}
			fresh := e.bundle("fresh", 1, []string{"f3"})
			upgrade := e.bundle("base", 2, []string{"f1"})

			kernel, view := e.kernelState(), states(t, h)
			repair := c.break_(t, e)
			files := e.snapshot()
			refused := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, splice.ErrStateWrite) || !strings.Contains(err.Error(), c.cause) {
					t.Errorf("%s: %v, want ErrStateWrite saying %q", what, err, c.cause)
				}
				if got := e.kernelState(); got != kernel {
					t.Errorf("%s changed the kernel: %s, was %s", what, got, kernel)
				}
				if got := states(t, h); got != view {
					t.Errorf("%s changed the host's view: %s, was %s", what, got, view)
				}
				after := e.snapshot()
				for p, b := range files {
					if after[p] != b {
						t.Errorf("%s changed %s", what, p)
					}
				}
				for p := range after {
					if _, ok := files[p]; !ok {
						t.Errorf("%s left %s", what, p)
					}
				}
			}
			_, err := h.Apply(context.Background(), stored, e.policy)
			refused("apply of a stored bundle", err)
			_, err = h.Apply(context.Background(), fresh, e.policy)
			refused("apply of a new bundle", err)
			_, err = h.Apply(context.Background(), upgrade, e.policy)
			refused("upgrade", err)
			_, _, err = h.Undo(context.Background(), "base")
			refused("undo", err)
			_, err = h.UndoAll(context.Background())
			refused("undo --all", err)

			repair()
			e.apply(h, stored)
			e.apply(h, fresh)
			if _, _, err := h.Undo(context.Background(), "fresh"); err != nil {
				t.Fatal(err)
			}
			if got := states(t, h); got != "base@1=applied stored@1=applied fresh@1=reverted" {
				t.Errorf("once the disk is back: %s", got)
			}
			// What was written on the good disk reads back after a restart.
			h.Close()
			h2 := e.mustOpen()
			if got := states(t, h2); got != "base@1=applied stored@1=applied fresh@1=reverted" {
				t.Errorf("after a restart: %s", got)
			}
		})
	}
}
