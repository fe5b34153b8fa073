package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
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
	plan := []byte(allowSimulated(strings.ReplaceAll(body, "BUNDLE", bundleDigest)))
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

// recordedOpen says whether the agent's own record of a rollout has stage
// k open.
func recordedOpen(a *Agent, plan string, k int) bool {
	a.ro.mu.Lock()
	defer a.ro.mu.Unlock()
	rec, ok := a.ro.recs[plan]
	return ok && k < len(rec.Rollout.Opened) && !rec.Rollout.Opened[k].IsZero()
}

func waitRollout(t *testing.T, agents []*Agent, plan, state string, within time.Duration) {
	t.Helper()
	eventually(t, within, "every agent sees the rollout "+state, func() error {
		for _, a := range agents {
			st, err := a.Rollout(plan)
			if err != nil {
				return fmt.Errorf("%s: %w", a.Name(), err)
			}
			if !rollout.Is(st.State, state) {
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

// TestRestartResumesInTheRightStage restarts a host of the last stage
// while the second stage soaks for an hour: right after the start, before
// it has rejoined, it says the second stage is open (its own record,
// not a fresh judgement) and does not apply; a promote then takes it
// through.
func TestRestartResumesInTheRightStage(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(4)
	waitMembers(t, agents, 4)
	// A rollout id that puts a host in the first stage and a host other
	// than the seed (a restarted seed joins nobody) outside the second.
	var id string
	var out *Agent
	for i := 0; out == nil; i++ {
		id = fmt.Sprintf("resume-%d", i)
		first := false
		var outside *Agent
		for _, a := range agents {
			b := rollout.Bucket(id, a.Name())
			first = first || b < 2500
			if b >= 5000 && a != agents[0] {
				outside = a
			}
		}
		if first && outside != nil {
			out = outside
		}
	}
	_, st := f.publishWithPlan(agents[0], id, 1, `id: ID
bundle: BUNDLE
stages:
  - percent: 25
    soak: 200ms
  - percent: 50
    soak: 1h
  - percent: 100
gates:
  health_window: 100ms
`)
	// Opened by each agent's own loop, which records it (a status read
	// only judges a copy).
	eventually(t, 60*time.Second, "every agent opened the second stage", func() error {
		for _, a := range agents {
			if s, _ := a.Rollout(st.Digest); s.Open != 1 || !recordedOpen(a, st.Digest, 1) {
				return fmt.Errorf("%s: stage %d open: %s", a.Name(), s.Open+1, s.Why)
			}
		}
		return nil
	})
	cfg := out.cfg
	f.stop(out.Name())
	restarted := f.start(cfg)
	s, err := restarted.Rollout(st.Digest)
	if err != nil {
		t.Fatalf("the restarted agent forgot the rollout: %v", err)
	}
	if s.Open != 1 || s.Self.Apply {
		t.Errorf("restarted in stage %d (apply %t), want the second stage and waiting: %s", s.Open+1, s.Self.Apply, s.Why)
	}
	rest := []*Agent{restarted}
	for _, a := range agents {
		if a != out {
			rest = append(rest, a)
		}
	}
	waitMembers(t, rest, 4)
	time.Sleep(time.Second) // several judgement rounds, rejoined
	if s, _ := restarted.Rollout(st.Digest); s.Open != 1 || localState(restarted, st.Digest) != rollout.StateNone {
		t.Fatalf("rejoined during the second stage's soak: stage %d open, host %s: %s", s.Open+1, localState(restarted, st.Digest), s.Why)
	}
	if _, err := agents[0].Command(f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 1, Action: rollout.ActionPromote, Stage: 2})); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, rest, st.Digest, rollout.Done, 60*time.Second)
	if got := kernelState(t, restarted); !slices.Equal(got, []string{"lp_" + id}) {
		t.Errorf("restarted host runs %v", got)
	}
}

// TestRestartedAgentJudgesOnlyOnceJoined: a host restarted while the
// canary is inside its health window holds only itself in its member
// list until it has joined, where the canary's stage looks empty. It
// must not take that for a pass: it never applies before the canary is
// healthy, and goes on once it has rejoined. Its join is slow (a first
// address that does not answer) or never succeeds by itself (a peer
// joins it later).
func TestRestartedAgentJudgesOnlyOnceJoined(t *testing.T) {
	// stalled accepts connections and never answers: a join through it
	// waits for the gossip TCP timeout.
	stalled, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := stalled.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name string
		join func(seed string) []string
		// peerJoins: a peer joins the restarted host (its own join
		// never succeeds).
		peerJoins bool
	}{
		{"slow first join address", func(seed string) []string { return []string{stalled.Addr().String(), seed} }, false},
		{"joined by a peer", func(string) []string { return []string{closedAddr} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFleet(t)
			seed := f.start(f.config("node-00"))
			cc := f.config("node-01")
			cc.Tags = map[string]string{"ring": "canary"}
			canary := f.start(cc)
			other := f.start(f.config("node-02"))
			waitMembers(t, []*Agent{seed, canary, other}, 3)
			_, st := f.publishWithPlan(seed, "rejoin", 1, `id: ID
bundle: BUNDLE
stages:
  - ring: canary
  - percent: 100
gates:
  health_window: 6s
`)
			eventually(t, 30*time.Second, "the canary applies", func() error {
				if s := localState(canary, st.Digest); s != rollout.StateApplying {
					return fmt.Errorf("canary %s", s)
				}
				return nil
			})
			if s := localState(other, st.Digest); s != rollout.StateNone {
				t.Fatalf("node-02 is %s while the canary applies", s)
			}
			cfg := other.cfg
			cfg.Join = tc.join(f.seedAddr)
			f.stop("node-02")
			restarted := f.start(cfg)
			s, _ := restarted.Rollout(st.Digest)
			if s.Open != 0 || s.Self.Apply || !strings.Contains(s.Why, "waiting: this agent has not joined the cluster since it started") {
				t.Errorf("right after the restart: stage %d open, apply %t: %s", s.Open+1, s.Self.Apply, s.Why)
			}
			if tc.peerJoins {
				time.Sleep(time.Second) // alone, judging every 100ms
				if _, err := seed.node.Join(t.Context(), []string{restarted.GossipAddr()}); err != nil {
					t.Fatal(err)
				}
			}
			// Until the canary is healthy, the restarted host waits.
			for localState(canary, st.Digest) == rollout.StateApplying {
				if s := localState(restarted, st.Digest); s != rollout.StateNone {
					s2, _ := restarted.Rollout(st.Digest)
					t.Fatalf("node-02 is %s while the canary is inside its health window: %s", s, s2.Why)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if s := localState(canary, st.Digest); s != rollout.StateHealthy {
				t.Fatalf("canary %s", s)
			}
			waitRollout(t, []*Agent{seed, canary, restarted}, st.Digest, rollout.Done, 60*time.Second)
			if got := kernelState(t, restarted); !slices.Equal(got, []string{"lp_rejoin"}) {
				t.Errorf("restarted host runs %v", got)
			}
		})
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
	// The canary's journal keeps why the patch was reverted, for view.
	eventually(t, 30*time.Second, "the canary's journal names the health check", func() error {
		p, err := journaled(agents[1], "slowbad")
		if err != nil {
			return err
		}
		if p.State != splice.StateReverted || !strings.HasPrefix(p.Reason, "rollout slowbad failed on this host: health check: ") {
			return fmt.Errorf("slowbad is %s: %q", p.State, p.Reason)
		}
		return nil
	})
	t.Logf("halted %s after publishing, with a health window of 1m", time.Since(start).Round(time.Millisecond))
}

// TestPlanStoredWithoutItsRecordIsFetchedAgain: an agent killed between
// storing a plan and saving its rollout record (the acceptance cut
// short) follows the plan after its restart: the stored plan is dropped
// at start and fetched again from a peer, with the rollout's reports,
// instead of looking held forever while the host never follows it.
func TestPlanStoredWithoutItsRecordIsFetchedAgain(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(2)
	waitMembers(t, agents, 2)
	_, st := f.publishWithPlan(agents[0], "cut", 1, "id: ID\nbundle: BUNDLE\nstages: [{percent: 100}]\ngates: {health_window: 100ms}\n")
	waitRollout(t, agents, st.Digest, rollout.Done, 60*time.Second)

	cfg := agents[1].cfg
	f.stop(cfg.NodeName)
	// The state a crash between the two writes leaves.
	if err := os.Remove(filepath.Join(cfg.StateDir, "rollouts", st.Digest+".json")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "docs", st.Digest+".json")); err != nil {
		t.Fatalf("the plan document: %v", err)
	}
	restarted := f.start(cfg)
	waitRollout(t, []*Agent{agents[0], restarted}, st.Digest, rollout.Done, 60*time.Second)
	if got := localState(restarted, st.Digest); got != rollout.StateHealthy {
		t.Errorf("the restarted host is %s in the rollout, want healthy", got)
	}
}

// journaled is a patch as the agent's host journal records it.
func journaled(a *Agent, id string) (*splice.PatchView, error) {
	a.ro.hostMu.Lock()
	defer a.ro.hostMu.Unlock()
	h, err := a.openHost(context.Background(), 0, nil)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	v, err := h.View()
	if err != nil {
		return nil, err
	}
	for i := range v.Patches {
		if v.Patches[i].ID == id {
			return &v.Patches[i], nil
		}
	}
	return nil, fmt.Errorf("no patch %s in the journal", id)
}
