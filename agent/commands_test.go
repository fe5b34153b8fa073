package agent

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
)

// TestEveryCommandMustBeSigned: each operator action (promote, pause,
// resume, halt, revoke), unsigned or signed by a key the host does not
// trust, is refused with the reason, and the rollout stays where it was:
// same state, same open stage, no command taken.
func TestEveryCommandMustBeSigned(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(2)
	waitMembers(t, agents, 2)
	_, st := f.publishWithPlan(agents[0], "signed-only", 1, `id: ID
bundle: BUNDLE
stages:
  - percent: 0.01
    soak: 1h
  - percent: 100
gates:
  health_window: 100ms
`)
	waitRollout(t, agents, st.Digest, rollout.Running, 30*time.Second)
	stranger, err := signing.GenerateSigner("Stranger <x@example.com>", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a := agents[1]
	before, err := a.Rollout(st.Digest)
	if err != nil {
		t.Fatal(err)
	}
	for i, action := range rollout.Actions {
		c := rollout.Command{Plan: st.Digest, Seq: uint64(i + 1), Action: action, Reason: "test"}
		if action == rollout.ActionPromote {
			c.Stage = 1
		}
		t.Run(action+" unsigned", func(t *testing.T) {
			d := f.command(f.signer, c)
			d.Signatures = nil
			if _, err := a.Command(d); !errors.Is(err, rollout.ErrInvalidDocument) || !strings.Contains(err.Error(), "unsigned") {
				t.Errorf("err = %v", err)
			}
		})
		t.Run(action+" by an untrusted key", func(t *testing.T) {
			_, err := a.Command(f.command(stranger, c))
			if !signing.IsVerificationError(err) || !errors.Is(err, ErrRolloutRefused) || !strings.Contains(err.Error(), "signer is not a trusted key") {
				t.Errorf("err = %v", err)
			}
		})
		after, err := a.Rollout(st.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if after.State != before.State || after.Open != before.Open || after.LastSeq != 0 {
			t.Errorf("after a refused %s: state %s, open stage %d, last seq %d; was %s, %d", action, after.State, after.Open, after.LastSeq, before.State, before.Open)
		}
	}
	if got := kernelState(t, a); len(got) != 0 {
		t.Errorf("kernel runs %v", got)
	}
}
