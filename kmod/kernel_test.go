package kmod

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLogRecordProblem(t *testing.T) {
	cases := []struct {
		prio int
		msg  string
		want string
	}{
		{4, "Oops: general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI", "oops"},
		{0, "Kernel panic - not syncing: Fatal exception", "oops"},
		{1, "BUG: kernel NULL pointer dereference, address: 0000000000000000", "bug"},
		{4, "kernel BUG at mm/slub.c:435!", "bug"},
		{4, "WARNING: CPU: 0 PID: 87 at kernel/livepatch/transition.c:100 klp_complete_transition+0x1/0x2", "warn"},
		{4, "------------[ cut here ]------------", "warn"},
		{3, "livepatch: failed to enable patch 'lp_refuse'", "livepatch"},
		{6, "livepatch: enabling patch 'lp_cmdline'", ""},
		{6, "livepatch: 'lp_cmdline': patching complete", ""},
		{5, "Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org)", ""},
		{6, "a driver mentions the word Oops in passing", ""},
	}
	for _, c := range cases {
		if got := (LogRecord{Priority: c.prio, Message: c.msg}).Problem(); got != c.want {
			t.Errorf("Problem(%q) = %q, want %q", c.msg, got, c.want)
		}
	}
}

func TestTaintNames(t *testing.T) {
	if got := Taint(0).Names(); got != nil {
		t.Errorf("no taint: %v", got)
	}
	got := (TaintLivepatch | 1<<0 | 1<<40).Names()
	if d := cmp.Diff([]string{"proprietary_module", "livepatch", "bit40"}, got); d != "" {
		t.Errorf("Names (-want +got):\n%s", d)
	}
}

func TestTransitionErrorMessage(t *testing.T) {
	e := &TransitionError{Patch: "lp_stall", Enabling: true, Waited: 75 * time.Second,
		Blockers: []Task{{PID: 312, Comm: "cat"}, {PID: 313, Comm: "sleeper"}}, Reverted: true}
	want := "enabling lp_stall: transition did not complete in 1m15s; blocked by cat[312], sleeper[313]; reversed"
	if e.Error() != want {
		t.Errorf("got  %q\nwant %q", e.Error(), want)
	}
	if !errors.Is(e, ErrTransitionStuck) {
		t.Error("does not wrap ErrTransitionStuck")
	}
	e.Err = errors.New("unload: busy")
	if !strings.HasSuffix(e.Error(), "; reversing failed: unload: busy") {
		t.Errorf("with Err: %q", e.Error())
	}
}
