package splice_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/splice"
)

// stacked returns the bundles of two updates to one function: fix1, made
// from source patch digestA, and fix2, made from digestB on top of fix1.
func (e *hostEnv) stacked() (fix1, fix2 *splice.Bundle) {
	e.t.Helper()
	fix1 = e.bundle("fix1", 1, []string{"cmdline_proc_show"}, func(m *splice.Manifest) { m.SourcePatch = digestA })
	fix2 = e.bundle("fix2", 1, []string{"cmdline_proc_show"}, func(m *splice.Manifest) {
		m.SourcePatch = digestB
		m.OnTopOf = []splice.UpdateRef{{SourcePatch: digestA, Name: "fix1.patch"}}
	})
	return fix1, fix2
}

// TestOnTopOf: a bundle built on top of an earlier update applies only
// where that update is applied, and while it is, the earlier update can
// neither be undone nor upgraded from under it.
func TestOnTopOf(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	fix1, fix2 := e.stacked()
	ctx := context.Background()

	before, kernel := e.snapshot(), e.kernelState()
	_, err := h.Apply(ctx, fix2, e.policy)
	if !errors.Is(err, splice.ErrStack) || !strings.Contains(err.Error(),
		"fix2 version 1 is built on top of fix1.patch (source patch "+digestA+"), which is not applied on this host: apply that update first") {
		t.Fatalf("apply without the earlier update: %v", err)
	}
	if !sameMap(before, e.snapshot()) || e.kernelState() != kernel {
		t.Fatal("a refused apply changed state or kernel")
	}

	e.apply(h, fix1)
	e.apply(h, fix2)
	if got := e.kernelState(); got != "livepatch_fix1_1:on livepatch_fix2_1:on | modules livepatch_fix1_1 livepatch_fix2_1" {
		t.Fatalf("kernel: %s", got)
	}

	before, kernel = e.snapshot(), e.kernelState()
	_, _, err = h.Undo(ctx, "fix1")
	if !errors.Is(err, splice.ErrStack) || !strings.Contains(err.Error(), "undo fix2 version 1 first (or use --all) (fix2 version 1 is built on top of it") {
		t.Fatalf("undo of the earlier update: %v", err)
	}
	// A new version of fix1 would take version 1 off from under fix2.
	_, err = h.Apply(ctx, e.bundle("fix1", 2, []string{"cmdline_proc_show"}, func(m *splice.Manifest) { m.SourcePatch = digestC }), e.policy)
	if !errors.Is(err, splice.ErrStack) || !strings.Contains(err.Error(), "would take off version 1, on top of which fix2 version 1 is built") {
		t.Fatalf("upgrade of the earlier update: %v", err)
	}
	if !sameMap(before, e.snapshot()) || e.kernelState() != kernel {
		t.Fatal("a refused undo or upgrade changed state or kernel")
	}

	if _, _, err := h.Undo(ctx, "fix2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Undo(ctx, "fix1"); err != nil {
		t.Fatal(err)
	}
	if got := e.kernelState(); got != " | modules " {
		t.Fatalf("kernel after both undone: %q", got)
	}
}

// TestOnTopOfBoot: at boot a bundle is loaded again only when the update
// it is built on top of is in the kernel.
func TestOnTopOfBoot(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	fix1, fix2 := e.stacked()
	e.apply(h, fix1)
	e.apply(h, fix2)
	h.Close()
	if err := sim.Reboot(e.simDir, ""); err != nil {
		t.Fatal(err)
	}
	h = e.mustOpen()
	done, err := h.Boot(context.Background())
	if err != nil || len(done) != 2 || done[0].ID != "fix1" || done[1].ID != "fix2" {
		t.Fatalf("boot: %v %v", done, err)
	}
	h.Close()

	// fix1 does not load at the next boot: fix2 is not loaded either.
	if err := sim.Reboot(e.simDir, ""); err != nil {
		t.Fatal(err)
	}
	e.faults(sim.Faults{"livepatch_fix1_1": {LoadErrno: "ENOEXEC"}})
	h = e.mustOpen()
	_, err = h.Boot(context.Background())
	if err == nil || !strings.Contains(err.Error(), "fix2 version 1: not loaded at boot: it is built on top of fix1.patch") {
		t.Fatalf("boot without fix1: %v", err)
	}
	if got := states(t, h); got != "fix1@1=failed fix2@1=failed" {
		t.Fatalf("states: %s", got)
	}
	if got := e.kernelState(); got != " | modules " {
		t.Fatalf("kernel: %q", got)
	}
}
