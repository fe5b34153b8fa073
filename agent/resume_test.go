package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/rollout"
)

// interruptedApplyFleet runs three agents and a rollout whose canary
// (node-01) is healthy while the second stage soaks for an hour. It then
// stops node-02 and leaves its state as an agent killed in the middle of
// an apply would: its record says "applying", having been cut short
// interrupted times before, while the host's journal holds nothing of
// the patch (the kill came before the apply's first journal write). It
// returns the agents with node-02 restarted, and the plan's digest.
func interruptedApplyFleet(t *testing.T, interrupted int) (*testFleet, []*Agent, string) {
	f := newTestFleet(t)
	var agents []*Agent
	for i := range 3 {
		cfg := f.config(fmt.Sprintf("node-%02d", i))
		if i == 1 {
			cfg.Tags = map[string]string{"ring": "canary"}
		}
		agents = append(agents, f.start(cfg))
	}
	waitMembers(t, agents, 3)
	_, st := f.publishWithPlan(agents[0], "resume", 1, `id: ID
bundle: BUNDLE
stages:
  - ring: canary
    soak: 1h
  - percent: 100
gates:
  health_window: 200ms
`)
	eventually(t, 30*time.Second, "the canary is healthy", func() error {
		if s := localState(agents[1], st.Digest); s != rollout.StateHealthy {
			return fmt.Errorf("canary %s", s)
		}
		return nil
	})
	victim := agents[2]
	cfg := victim.cfg
	f.stop(victim.Name())
	path := filepath.Join(cfg.StateDir, "rollouts", st.Digest+".json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec rolloutRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Local.State != rollout.StateNone {
		t.Fatalf("node-02 took part before the soak ended: %s", rec.Local.State)
	}
	rec.Local = local{State: rollout.StateApplying, Updated: time.Now().UTC(), Interrupted: interrupted}
	if data, err = json.Marshal(rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	agents[2] = f.start(cfg)
	waitMembers(t, agents, 3)
	return f, agents, st.Digest
}

// TestRestartAfterAnInterruptedApply: an agent killed during an apply,
// before the kernel ran the patch, finds at restart that the apply never
// happened. Nothing is wrong with the patch, so it neither reports a
// failure nor halts the fleet: it waits for its stage like a host that
// never started, and applies when the stage opens. (Found by `make soak`:
// the restarted agent watched the health of a patch that was never
// loaded, reported "no longer in /sys/kernel/livepatch" and halted a
// healthy rollout.)
func TestRestartAfterAnInterruptedApply(t *testing.T) {
	f, agents, digest := interruptedApplyFleet(t, 0)
	restarted := agents[2]
	eventually(t, 10*time.Second, "the restarted host waits for its stage again", func() error {
		if s := localState(restarted, digest); s != rollout.StateNone {
			return fmt.Errorf("host state %s", s)
		}
		return nil
	})
	time.Sleep(time.Second) // several judgement rounds
	for _, a := range agents {
		if s, _ := a.Rollout(digest); s.State != rollout.Running || s.Open != 0 {
			t.Fatalf("%s judges the rollout %s in stage %d: %s", a.Name(), s.State, s.Open+1, s.Why)
		}
	}
	if got := kernelState(t, restarted); len(got) != 0 {
		t.Fatalf("applied before its stage opened: %v", got)
	}
	restarted.ro.mu.Lock()
	rec := restarted.ro.recs[digest]
	n, reason := rec.Local.Interrupted, rec.Local.Reason
	restarted.ro.mu.Unlock()
	if n != 1 || !strings.Contains(reason, "cut short") {
		t.Errorf("record: interrupted %d, reason %q; want 1 and why", n, reason)
	}
	if _, err := agents[0].Command(f.command(f.signer, rollout.Command{Plan: digest, Seq: 1, Action: rollout.ActionPromote, Stage: 1})); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, agents, digest, rollout.Done, 60*time.Second)
	for _, a := range agents {
		if got := kernelState(t, a); !slices.Equal(got, []string{"lp_resume"}) {
			t.Errorf("%s runs %v", a.Name(), got)
		}
	}
}

// TestApplyCutShortTooOftenFails: an agent whose applies of one rollout
// were cut short maxInterrupted times does not try again: it reports the
// failure, which halts the rollout, and the kernel is left untouched.
func TestApplyCutShortTooOftenFails(t *testing.T) {
	f, agents, digest := interruptedApplyFleet(t, maxInterrupted)
	// The fixture made node-02 applying in a stage no agent opened, which
	// no host can be: its failure counts once its stage is open.
	if _, err := agents[0].Command(f.command(f.signer, rollout.Command{Plan: digest, Seq: 1, Action: rollout.ActionPromote, Stage: 1})); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, agents, digest, rollout.Halted, 30*time.Second)
	restarted := agents[2]
	restarted.ro.mu.Lock()
	l := restarted.ro.recs[digest].Local
	restarted.ro.mu.Unlock()
	if l.State != rollout.StateFailed || !strings.Contains(l.Reason, fmt.Sprintf("cut short %d times", maxInterrupted)) {
		t.Errorf("host state %s: %q", l.State, l.Reason)
	}
	if got := kernelState(t, restarted); len(got) != 0 {
		t.Errorf("kernel runs %v", got)
	}
}
