package agent

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
)

// failingConfig is an agent's configuration whose simulated kernel fails
// the health check of patch module lp.
func failingConfig(t *testing.T, f *testFleet, name, lp string, tags map[string]string) Config {
	t.Helper()
	cfg := f.config(name)
	cfg.Tags = tags
	dir := strings.TrimPrefix(cfg.Kernel, "sim:")
	if err := sim.Init(dir, sim.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetFaults(dir, sim.Faults{lp: {HealthFail: true}}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

const ringPlan = `id: ID
bundle: BUNDLE
stages:
  - ring: canary
    soak: 200ms
  - percent: 100
gates:
  health_window: 200ms
`

// TestAttackFailureAfterDone (G1): a rollout finished; a member holding
// the gossip key, itself a host of the rollout that reported healthy,
// now sends an unsigned failure naming a real host, a failure of a real
// host signed by its own key, and its own signed failure. The first two
// are refused and counted; the third is a regression. No agent halts,
// and every kernel keeps the fix.
func TestAttackFailureAfterDone(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(3)
	waitMembers(t, agents, 3)
	r := f.joinRogue("rogue", kernelTags(t, agents[0]))
	waitMembers(t, agents, 4)
	_, st := f.publishWithPlan(agents[0], "g1", 1, ringPlan)
	// The rogue is the canary ring: it says it applied and is healthy.
	eventually(t, 30*time.Second, "every agent follows the plan", func() error {
		for _, a := range agents {
			if _, err := a.Rollout(st.Digest); err != nil {
				return err
			}
		}
		return nil
	})
	r.report(rollout.HostReport{Plan: st.Digest, Node: "rogue", State: rollout.StateApplying, Seq: 1})
	r.report(rollout.HostReport{Plan: st.Digest, Node: "rogue", State: rollout.StateHealthy, Seq: 2})
	waitRollout(t, agents, st.Digest, rollout.Done, 60*time.Second)
	for _, a := range agents {
		if got := kernelState(t, a); !slices.Equal(got, []string{"lp_g1"}) {
			t.Fatalf("%s runs %v when the rollout is done", a.Name(), got)
		}
	}
	victim := agents[1].Name()
	r.broadcast(rollout.FailureEvent, append([]byte{1}, make([]byte, 40)...))
	r.report(rollout.HostReport{Plan: st.Digest, Node: victim, State: rollout.StateFailed, Seq: 99, Reason: "forged"})
	r.report(rollout.HostReport{Plan: st.Digest, Node: "rogue", State: rollout.StateFailed, Seq: 3, Reason: "after the end"})
	for _, a := range agents {
		waitMetric(t, a, 1, "splicefleet_rollout_documents_refused_total", "kind", "report", "reason", "unsigned")
		if a.Name() != victim {
			waitMetric(t, a, 1, "splicefleet_rollout_documents_refused_total", "kind", "report", "reason", "key")
		}
	}
	eventually(t, 30*time.Second, "the rogue's failure shown as a regression", func() error {
		for _, a := range agents {
			s, err := a.Rollout(st.Digest)
			if err != nil {
				return err
			}
			if len(s.Regressed) != 1 || !strings.Contains(s.Regressed[0], "rogue: after the end") {
				return fmt.Errorf("%s: regressed %v", a.Name(), s.Regressed)
			}
		}
		return nil
	})
	time.Sleep(time.Second) // ten judgement ticks
	for _, a := range agents {
		s, _ := a.Rollout(st.Digest)
		if s.State != rollout.Done || len(s.Failed) != 0 || s.Self.RollBack {
			t.Errorf("%s: %s %s failed %v", a.Name(), s.State, s.Why, s.Failed)
		}
		if got := kernelState(t, a); !slices.Equal(got, []string{"lp_g1"}) {
			t.Errorf("%s runs %v after the forged failures", a.Name(), got)
		}
		if got := metricValue(t, a, "splicefleet_rollbacks_total", "reason", "canary_halt"); got != 0 {
			t.Errorf("%s counted %g rollbacks", a.Name(), got)
		}
	}
}

// TestHaltIsDurable (G3): a rollout halts on its canary's failure; eight
// later rollouts and 600 other gossip events follow. A new host of the
// canary ring joins, learns every plan by anti-entropy, and sees the old
// one halted: it never applies the bundle that broke the canary.
func TestHaltIsDurable(t *testing.T) {
	f := newTestFleet(t)
	seed := f.start(f.config("seed"))
	canary := f.start(failingConfig(t, f, "canary", "lp_bad", map[string]string{"ring": "canary"}))
	agents := []*Agent{seed, canary}
	waitMembers(t, agents, 2)
	_, bad := f.publishWithPlan(seed, "bad", 1, ringPlan)
	waitRollout(t, agents, bad.Digest, rollout.Halted, 60*time.Second)
	for i := range 8 {
		_, st := f.publishWithPlan(seed, fmt.Sprintf("later-%d", i), 1, ringPlan)
		waitRollout(t, agents, st.Digest, rollout.Done, 60*time.Second)
	}
	r := f.joinRogue("chatter")
	for i := range 600 {
		r.broadcast("sf-junk", []byte(fmt.Sprint(i)))
	}
	if tag := rollout.DecodeReports(seed.ro.reports()); len(tag) != rollout.MaxReports {
		t.Fatalf("the seed's reports tag holds %d rollouts", len(tag))
	} else if _, ok := tag[rollout.ReportKey(bad.Digest)]; ok {
		t.Fatal("the halted rollout is still in the reports tag; the test needs it gone")
	}

	lateCfg := f.config("late")
	lateCfg.Tags = map[string]string{"ring": "canary"}
	late := f.start(lateCfg)
	waitMembers(t, []*Agent{seed, canary, late}, 4)
	eventually(t, 60*time.Second, "the newcomer follows every rollout", func() error {
		sts := late.ro.Statuses()
		if len(sts) != 9 {
			return fmt.Errorf("%d rollouts", len(sts))
		}
		return nil
	})
	s, err := late.Rollout(bad.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if !rollout.Ended(s.State) || !strings.Contains(s.Why, "canary") {
		t.Errorf("the newcomer sees the old rollout %s: %s", s.State, s.Why)
	}
	time.Sleep(time.Second)
	for _, lp := range kernelState(t, late) {
		if lp == "lp_bad" {
			t.Fatalf("the newcomer applied the bundle that broke the canary: %v", kernelState(t, late))
		}
	}
	if st := localState(late, bad.Digest); st == rollout.StateApplying || st == rollout.StateHealthy || st == rollout.StateFailed {
		t.Errorf("the newcomer's state in the halted rollout: %s", st)
	}
	// It restarts: still halted, from its own records.
	f.stop("late")
	late = f.start(lateCfg)
	if s, err := late.Rollout(bad.Digest); err != nil || !rollout.Ended(s.State) {
		t.Errorf("after a restart: %+v %v", s, err)
	}
}

// TestAttackReportFlood (item 5): a member floods signed reports for
// thousands of plans nobody follows. None is kept, and a real canary's
// failure still halts the rollout.
func TestAttackReportFlood(t *testing.T) {
	f := newTestFleet(t)
	seed := f.start(f.config("seed"))
	canary := f.start(failingConfig(t, f, "canary", "lp_late", map[string]string{"ring": "canary"}))
	agents := []*Agent{seed, canary}
	waitMembers(t, agents, 2)
	r := f.joinRogue("flood")
	waitMembers(t, agents, 3)
	for i := range 2000 {
		plan := fmt.Sprintf("%064x", i+1)
		r.report(rollout.HostReport{Plan: plan, Node: "flood", State: rollout.StateFailed, Seq: 1, Reason: "x"})
		if i%50 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitMetric(t, seed, 100, "splicefleet_rollout_documents_refused_total", "kind", "report", "reason", "refused")
	_, st := f.publishWithPlan(seed, "late", 1, ringPlan)
	waitRollout(t, agents, st.Digest, rollout.Halted, 60*time.Second)
	seed.ro.mu.Lock()
	plans := len(seed.ro.book.plans)
	seed.ro.mu.Unlock()
	if plans != 1 {
		t.Errorf("reports kept for %d plans, want the one followed", plans)
	}
}

// TestSybilCanaryAfterPlan: a member that appears after the plan was
// accepted, in the canary ring, reports healthy at once. Its word does
// not count towards min_healthy: the canary stage waits for the real
// canary, still inside its health window.
func TestSybilCanaryAfterPlan(t *testing.T) {
	f := newTestFleet(t)
	seed := f.start(f.config("seed"))
	canaryCfg := f.config("canary")
	canaryCfg.Tags = map[string]string{"ring": "canary"}
	canary := f.start(canaryCfg)
	agents := []*Agent{seed, canary}
	waitMembers(t, agents, 2)
	plan := "id: ID\nbundle: BUNDLE\nstages:\n  - ring: canary\n    soak: 100ms\n  - percent: 100\ngates:\n  min_healthy: 0.5\n  health_window: 1h\n"
	_, st := f.publishWithPlan(seed, "sybil", 1, plan)
	eventually(t, 30*time.Second, "the canary applies", func() error {
		if s := localState(canary, st.Digest); s != rollout.StateApplying {
			return fmt.Errorf("canary %s", s)
		}
		return nil
	})
	r := f.joinRogue("sybil", kernelTags(t, seed))
	waitMembers(t, agents, 3)
	r.report(rollout.HostReport{Plan: st.Digest, Node: "sybil", State: rollout.StateHealthy, Seq: 1})
	eventually(t, 30*time.Second, "the sybil's report is held", func() error {
		seed.ro.mu.Lock()
		defer seed.ro.mu.Unlock()
		if seed.ro.book.plans[st.Digest]["sybil"] == nil {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	time.Sleep(time.Second)
	s, err := seed.Rollout(st.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if s.Open != 0 || s.Stages[0].Passed || s.Stages[0].Cohort != 2 || s.Stages[0].Healthy != 1 {
		t.Errorf("a member made up after the plan passed the canary stage: %+v; %s", s.Stages[0], s.Why)
	}
	if got := kernelState(t, seed); len(got) != 0 {
		t.Errorf("the seed applied: %v", got)
	}
	seed.ro.mu.Lock()
	accepted := seed.ro.recs[st.Digest].Rollout.Accepted
	seed.ro.mu.Unlock()
	if pin, ok := seed.pins.Lookup("sybil"); !ok || !pin.Since.After(accepted) {
		t.Errorf("the sybil's pin: %+v %t", pin, ok)
	}
}
