package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCheckCommandAtTheEnd: on a rollout judged done, every command but
// revoke is refused with an explanation that points at revoke; on one halted by the gates
// or revoked, resume is refused and says a halt is final. The commands
// that still mean something pass, and a promote on a paused rollout says
// it takes effect at resume.
func TestCheckCommandAtTheEnd(t *testing.T) {
	f := newFleet(t, "id: end\nbundle: "+digest+"\nstages: [{percent: 100}]\ngates: {health_window: 1m}\n", 3, nil)
	f.step(t0, StateHealthy)
	done := f.eval("host-00", t0)
	if done.State != Done {
		t.Fatalf("state %s: %s", done.State, done.Why)
	}
	// Done is final: only revoke changes it.
	for _, a := range []string{ActionHalt, ActionPause, ActionResume, ActionPromote} {
		err := CheckCommand(done, a)
		if !errors.Is(err, ErrEnded) || !strings.Contains(err.Error(), "rollout end is done") || !strings.Contains(err.Error(), "revoke it") {
			t.Errorf("%s of a done rollout: %v", a, err)
		}
	}
	if err := CheckCommand(done, ActionRevoke); err != nil {
		t.Errorf("revoke of a done rollout: %v", err)
	}

	// Halted by its gate: a host failed.
	f = newFleet(t, stagedPlan, 10, map[int]string{0: "canary"})
	f.step(t0, StateFailed)
	halted := f.eval("host-05", t0)
	if !Ended(halted.State) {
		t.Fatalf("state %s: %s", halted.State, halted.Why)
	}
	err := CheckCommand(halted, ActionResume)
	if !errors.Is(err, ErrEnded) || !strings.Contains(err.Error(), "rollout staged halted: 1 host failed") ||
		!strings.Contains(err.Error(), "a halt is final and resume only undoes a pause") {
		t.Errorf("resume of a halted rollout: %v", err)
	}
	// Revoked by an operator.
	f = newFleet(t, stagedPlan, 10, map[int]string{0: "canary"})
	if err := f.r.AddCommand(Command{Plan: digest, Seq: 1, Action: ActionRevoke, Reason: "regression", Issued: t0}); err != nil {
		t.Fatal(err)
	}
	revoked := f.eval("host-05", t0)
	if err := CheckCommand(revoked, ActionResume); !errors.Is(err, ErrEnded) || !strings.Contains(err.Error(), "revoke by operator (seq 1): regression") {
		t.Errorf("resume of a revoked rollout: %v", err)
	}
	if err := CheckCommand(revoked, ActionRevoke); err != nil {
		t.Errorf("revoke of a halted rollout: %v", err)
	}

	// Paused: promote is accepted and says when it takes effect.
	f = newFleet(t, stagedPlan, 10, map[int]string{0: "canary"})
	if err := f.r.AddCommand(Command{Plan: digest, Seq: 1, Action: ActionPause, Issued: t0}); err != nil {
		t.Fatal(err)
	}
	paused := f.eval("host-05", t0)
	if err := CheckCommand(paused, ActionPromote); err != nil || !strings.Contains(PromoteNote(paused), "takes effect at resume") {
		t.Errorf("promote while paused: %v, note %q", err, PromoteNote(paused))
	}
	if err := CheckCommand(paused, ActionResume); err != nil {
		t.Errorf("resume of a paused rollout: %v", err)
	}
	if n := PromoteNote(done); n != "" {
		t.Errorf("promote note on a done rollout: %q", n)
	}
}

// TestForgetCommand: a forget names a bundle and nothing of a rollout;
// anything else in it is refused, and it never enters a rollout's fold.
func TestForgetCommand(t *testing.T) {
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	good := Command{Action: ActionForget, Bundle: digest, Reason: "superseded", Issued: issued}
	body, err := EncodeCommand(good)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeCommand(body)
	if err != nil || back.Bundle != digest || back.Action != ActionForget {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	for _, tt := range []struct {
		name string
		c    Command
		want string
	}{
		{"no bundle", Command{Action: ActionForget, Issued: issued}, "is not a manifest digest"},
		{"with a plan", Command{Action: ActionForget, Bundle: digest, Plan: digest, Issued: issued}, "names a bundle, not a plan"},
		{"with a seq", Command{Action: ActionForget, Bundle: digest, Seq: 3, Issued: issued}, "names a bundle, not a plan, a seq"},
		{"no time", Command{Action: ActionForget, Bundle: digest}, "issued time missing"},
		{"halt naming a bundle", Command{Action: ActionHalt, Plan: digest, Seq: 1, Bundle: digest, Issued: issued}, "only forget names a bundle"},
	} {
		if _, err := EncodeCommand(tt.c); !errors.Is(err, ErrInvalidCommand) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrInvalidCommand with %q", tt.name, err, tt.want)
		}
	}
	f := newFleet(t, stagedPlan, 3, nil)
	if err := f.r.AddCommand(*back); !errors.Is(err, ErrInvalidCommand) || len(f.r.Commands) != 0 {
		t.Errorf("a forget added to a rollout: %v, commands %v", err, f.r.Commands)
	}
}
