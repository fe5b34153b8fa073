package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// signedPlan signs a plan for a bundle with the fleet's key.
func (f *testFleet) signedPlan(bundleDigest, body string) *rollout.Document {
	f.t.Helper()
	plan := []byte(strings.ReplaceAll(body, "BUNDLE", bundleDigest))
	sig, err := f.signer.Sign(plan, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return rollout.SignPlan(plan, [][]byte{sig})
}

// command signs an operator command with s.
func (f *testFleet) command(s *signing.Signer, c rollout.Command) *rollout.Document {
	f.t.Helper()
	if c.Issued.IsZero() {
		c.Issued = time.Now()
	}
	body, err := rollout.EncodeCommand(c)
	if err != nil {
		f.t.Fatal(err)
	}
	sig, err := s.Sign(body, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return &rollout.Document{Kind: rollout.KindCommand, Body: body, Signatures: [][]byte{sig}}
}

// kernelState says what the simulated kernel of an agent runs: the
// livepatch module names, sorted.
func kernelState(t testing.TB, a *Agent) []string {
	t.Helper()
	lps, err := a.kernel.Backend().Livepatches()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, lp := range lps {
		if lp.Enabled {
			names = append(names, lp.Name)
		}
	}
	slices.Sort(names)
	return names
}

// applyLog records, per node, the first time a rollout's apply started
// there, from the agents' own state (not the gossip view).
func localState(a *Agent, plan string) rollout.HostState {
	a.ro.mu.Lock()
	defer a.ro.mu.Unlock()
	if rec, ok := a.ro.recs[plan]; ok {
		return rec.Local.State
	}
	return rollout.StateNone
}

func waitRollout(t *testing.T, agents []*Agent, plan, state string, within time.Duration) {
	t.Helper()
	eventually(t, within, "every agent sees the rollout "+state, func() error {
		for _, a := range agents {
			st, err := a.Rollout(plan)
			if err != nil {
				return fmt.Errorf("%s: %w", a.Name(), err)
			}
			if st.State != state {
				return fmt.Errorf("%s: %s: %s", a.Name(), st.State, st.Why)
			}
		}
		return nil
	})
}

const canaryPlan = `id: ID
bundle: BUNDLE
stages:
  - ring: canary
    soak: 300ms
  - percent: 50
    soak: 300ms
  - percent: 100
gates:
  health_window: 300ms
`

// publishWithPlan publishes a bundle at a and starts a rollout of it.
func (f *testFleet) publishWithPlan(a *Agent, id string, version uint64, plan string) (*splice.Verified, rollout.Status) {
	f.t.Helper()
	v, err := a.Publish(f.bundle(id, version, f.signer, 0))
	if err != nil {
		f.t.Fatal(err)
	}
	st, err := a.StartRollout(f.signedPlan(v.ManifestDigest, strings.ReplaceAll(plan, "ID", id)))
	if err != nil {
		f.t.Fatal(err)
	}
	return v, st
}

func TestStagedRolloutReachesEveryHost(t *testing.T) {
	f := newTestFleet(t)
	var agents []*Agent
	for i := range 6 {
		cfg := f.config(fmt.Sprintf("node-%02d", i))
		if i == 4 {
			cfg.Tags = map[string]string{"ring": "canary"}
		}
		agents = append(agents, f.start(cfg))
	}
	waitMembers(t, agents, 6)
	_, st := f.publishWithPlan(agents[0], "staged", 1, canaryPlan)
	if st.State != rollout.Running || st.Open != 0 {
		t.Fatalf("a fresh rollout: %+v", st)
	}
	// Only the canary applies first; nobody else until it is healthy.
	eventually(t, 30*time.Second, "the canary is patched", func() error {
		if got := kernelState(t, agents[4]); !slices.Equal(got, []string{"lp_staged"}) {
			return fmt.Errorf("canary kernel runs %v", got)
		}
		return nil
	})
	for i, a := range agents {
		if i != 4 && localState(a, st.Digest) != rollout.StateNone && localState(agents[4], st.Digest) != rollout.StateHealthy {
			t.Errorf("%s applied before the canary was healthy", a.Name())
		}
	}
	waitRollout(t, agents, st.Digest, rollout.Done, 60*time.Second)
	for _, a := range agents {
		if got := kernelState(t, a); !slices.Equal(got, []string{"lp_staged"}) {
			t.Errorf("%s kernel runs %v after the rollout", a.Name(), got)
		}
		s, _ := a.Rollout("staged")
		if s.Stages[2].Healthy != 6 {
			t.Errorf("%s sees %+v", a.Name(), s.Stages[2])
		}
	}
}

func TestCanaryFailureHaltsFleetAndRollsBack(t *testing.T) {
	f := newTestFleet(t)
	var agents []*Agent
	for i := range 5 {
		cfg := f.config(fmt.Sprintf("node-%02d", i))
		if i == 1 {
			cfg.Tags = map[string]string{"ring": "canary"}
			// The patch breaks this host: its health check fails.
			if err := sim.Init(strings.TrimPrefix(cfg.Kernel, "sim:"), sim.Config{}); err != nil {
				t.Fatal(err)
			}
			if err := sim.SetFaults(strings.TrimPrefix(cfg.Kernel, "sim:"), sim.Faults{"lp_bad": {HealthFail: true}}); err != nil {
				t.Fatal(err)
			}
		}
		agents = append(agents, f.start(cfg))
	}
	waitMembers(t, agents, 5)
	_, st := f.publishWithPlan(agents[3], "bad", 1, canaryPlan)
	waitRollout(t, agents, st.Digest, rollout.Halted, 60*time.Second)
	eventually(t, 30*time.Second, "every agent knows why, and the others marked halted", func() error {
		for _, a := range agents {
			s, _ := a.Rollout(st.Digest)
			if !strings.Contains(s.Why, "node-01") || !strings.Contains(s.Why, "health") {
				return fmt.Errorf("%s: why = %q, want the canary and the health check named", a.Name(), s.Why)
			}
			if a.Name() != "node-01" && localState(a, st.Digest) != rollout.StateHalted {
				return fmt.Errorf("%s: local state %s, want halted without applying", a.Name(), localState(a, st.Digest))
			}
		}
		return nil
	})
	for _, a := range agents {
		if got := kernelState(t, a); len(got) != 0 {
			t.Errorf("%s kernel runs %v after the halt", a.Name(), got)
		}
	}
	if s := localState(agents[1], st.Digest); s != rollout.StateFailed {
		t.Errorf("canary state %s, want failed", s)
	}
}

func TestOperatorCommands(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(3)
	waitMembers(t, agents, 3)
	_, st := f.publishWithPlan(agents[0], "steer", 1, `id: ID
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

	t.Run("unsigned is refused", func(t *testing.T) {
		d := f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 1, Action: rollout.ActionHalt})
		d.Signatures = nil
		_, err := agents[1].Command(d)
		if !errors.Is(err, rollout.ErrInvalidDocument) || !strings.Contains(err.Error(), "unsigned") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("untrusted signer is refused", func(t *testing.T) {
		_, err := agents[1].Command(f.command(stranger, rollout.Command{Plan: st.Digest, Seq: 1, Action: rollout.ActionHalt}))
		if !signing.IsVerificationError(err) || !errors.Is(err, ErrRolloutRefused) {
			t.Errorf("err = %v", err)
		}
		if s, _ := agents[1].Rollout(st.Digest); s.State != rollout.Running {
			t.Errorf("state %s after a refused halt", s.State)
		}
	})
	// promote opens the 1h-soaked second stage everywhere now.
	if _, err := agents[2].Command(f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 2, Action: rollout.ActionPromote, Stage: 1})); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, agents, st.Digest, rollout.Done, 30*time.Second)

	t.Run("replayed is refused", func(t *testing.T) {
		d := f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 2, Action: rollout.ActionPromote, Stage: 1})
		if _, err := agents[1].Command(d); !errors.Is(err, rollout.ErrReplayed) {
			t.Errorf("same seq again: err = %v", err)
		}
	})
	t.Run("out of order", func(t *testing.T) {
		// seq 5 (revoke) arrives before seq 4 (pause): the fold ends
		// revoked, as in order, and seq 4 is still accepted.
		if _, err := agents[0].Command(f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 5, Action: rollout.ActionRevoke, Reason: "bad patch"})); err != nil {
			t.Fatal(err)
		}
		if _, err := agents[0].Command(f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 4, Action: rollout.ActionPause})); err != nil {
			t.Fatal(err)
		}
		waitRollout(t, agents, st.Digest, rollout.Halted, 30*time.Second)
		eventually(t, 30*time.Second, "revoke rolled back every host", func() error {
			for _, a := range agents {
				if got := kernelState(t, a); len(got) != 0 {
					return fmt.Errorf("%s runs %v", a.Name(), got)
				}
				s, _ := a.Rollout(st.Digest)
				if !strings.Contains(s.Why, "revoke by operator (seq 5): bad patch") {
					return fmt.Errorf("%s: why %q", a.Name(), s.Why)
				}
			}
			return nil
		})
	})
}

func TestRestartResumesInTheRightStage(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(4)
	waitMembers(t, agents, 4)
	// Find a host outside the 25% stage, to restart while the first stage
	// soaks.
	_, st := f.publishWithPlan(agents[0], "resume", 1, `id: ID
bundle: BUNDLE
stages:
  - percent: 25
    soak: 3s
  - percent: 100
gates:
  health_window: 100ms
`)
	var out *Agent
	for _, a := range agents {
		if rollout.Bucket("resume", a.Name()) >= 2500 {
			out = a
		}
	}
	if out == nil {
		t.Fatal("every host is in the first stage; pick another rollout id")
	}
	waitRollout(t, agents, st.Digest, rollout.Running, 30*time.Second)
	cfg := out.cfg
	f.stop(out.Name())
	restarted := f.start(cfg)
	s, err := restarted.Rollout(st.Digest)
	if err != nil {
		t.Fatalf("the restarted agent forgot the rollout: %v", err)
	}
	if s.Open != 0 || s.Self.Apply {
		t.Errorf("restarted in stage %d (apply %t), want the first stage and waiting", s.Open+1, s.Self.Apply)
	}
	rest := []*Agent{restarted}
	for _, a := range agents {
		if a != out {
			rest = append(rest, a)
		}
	}
	waitRollout(t, rest, st.Digest, rollout.Done, 60*time.Second)
	if got := kernelState(t, restarted); !slices.Equal(got, []string{"lp_resume"}) {
		t.Errorf("restarted host runs %v", got)
	}
}

// TestFailingHealthCheckCutsTheWindowShort: a canary whose health check
// fails undoes the patch and halts the fleet at once, not at the end of
// its health window.
func TestFailingHealthCheckCutsTheWindowShort(t *testing.T) {
	f := newTestFleet(t)
	var agents []*Agent
	for i := range 3 {
		cfg := f.config(fmt.Sprintf("node-%02d", i))
		if i == 1 {
			cfg.Tags = map[string]string{"ring": "canary"}
			dir := strings.TrimPrefix(cfg.Kernel, "sim:")
			if err := sim.Init(dir, sim.Config{}); err != nil {
				t.Fatal(err)
			}
			if err := sim.SetFaults(dir, sim.Faults{"lp_slowbad": {HealthFail: true}}); err != nil {
				t.Fatal(err)
			}
		}
		agents = append(agents, f.start(cfg))
	}
	waitMembers(t, agents, 3)
	start := time.Now()
	_, st := f.publishWithPlan(agents[0], "slowbad", 1, `id: ID
bundle: BUNDLE
stages:
  - ring: canary
  - percent: 100
gates:
  health_window: 1m
`)
	waitRollout(t, agents, st.Digest, rollout.Halted, 20*time.Second)
	if got := kernelState(t, agents[1]); len(got) != 0 {
		t.Errorf("the canary runs %v after the halt", got)
	}
	t.Logf("halted %s after publishing, with a health window of 1m", time.Since(start).Round(time.Millisecond))
}
