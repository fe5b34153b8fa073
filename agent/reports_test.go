package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/hostkey"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
)

// envCount reads a count from the environment, or gives def.
func envCount(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q is not a count", name, s)
	}
	return n
}

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
// later rollouts and 600 other gossip events follow (more in make soak:
// SPLICEFLEET_DURABLE_LATER, SPLICEFLEET_DURABLE_EVENTS). A new host of
// the canary ring joins, learns every plan by anti-entropy, and sees the
// old one halted: it never applies the bundle that broke the canary.
func TestHaltIsDurable(t *testing.T) {
	later, events := envCount(t, "SPLICEFLEET_DURABLE_LATER", 8), envCount(t, "SPLICEFLEET_DURABLE_EVENTS", 600)
	f := newTestFleet(t)
	seed := f.start(f.config("seed"))
	canary := f.start(failingConfig(t, f, "canary", "lp_bad", map[string]string{"ring": "canary"}))
	agents := []*Agent{seed, canary}
	waitMembers(t, agents, 2)
	_, bad := f.publishWithPlan(seed, "bad", 1, ringPlan)
	waitRollout(t, agents, bad.Digest, rollout.Halted, 60*time.Second)
	for i := range later {
		_, st := f.publishWithPlan(seed, fmt.Sprintf("later-%d", i), 1, ringPlan)
		waitRollout(t, agents, st.Digest, rollout.Done, 60*time.Second)
	}
	r := f.joinRogue("chatter")
	for i := range events {
		r.broadcast("sf-junk", []byte(fmt.Sprint(i)))
		if i%200 == 199 {
			time.Sleep(50 * time.Millisecond) // paced, so that gossip carries it
		}
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
		if len(sts) != later+1 {
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

// rekeyDoc is an operator's re-key of node, signed by s.
func (f *testFleet) rekeyDoc(s *signing.Signer, node, key string, issued time.Time) *rollout.Document {
	f.t.Helper()
	body, err := rollout.EncodeRekey(rollout.Rekey{Node: node, Key: key, Issued: issued, Reason: "reinstalled"})
	if err != nil {
		f.t.Fatal(err)
	}
	sig, err := s.Sign(body, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return &rollout.Document{Kind: rollout.KindRekey, Body: body, Signatures: [][]byte{sig}}
}

// TestRekeyReinstalledHost: a host is reinstalled (a new host key under
// its old name). The fleet refuses its reports, so a rollout whose
// canary it is waits; a re-key signed by an untrusted key, or an older
// re-key replayed, changes nothing; the operators' re-key makes its
// reports count, the rollout finishes, and an agent that starts later
// takes the re-key by anti-entropy.
func TestRekeyReinstalledHost(t *testing.T) {
	f := newTestFleet(t)
	seed := f.start(f.config("seed"))
	webCfg := f.config("web")
	webCfg.Tags = map[string]string{"ring": "canary"}
	web := f.start(webCfg)
	waitMembers(t, []*Agent{seed, web}, 2)
	eventually(t, 10*time.Second, "the seed pins web's key", func() error {
		// A judgement round of the engine pins the members' keys.
		seed.ro.mu.Lock()
		seed.ro.cluster()
		seed.ro.mu.Unlock()
		if _, ok := seed.pins.Lookup("web"); !ok {
			return fmt.Errorf("not pinned")
		}
		return nil
	})
	// Reinstalled: the same name, a new host key.
	f.stop("web")
	if err := os.Remove(filepath.Join(webCfg.StateDir, hostkey.FileName)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(webCfg.StateDir, hostkey.PinsFileName)); err != nil {
		t.Fatal(err)
	}
	web = f.start(webCfg)
	waitMembers(t, []*Agent{seed, web}, 2)
	newKey := hostkey.Encode(web.hostKey.Public())

	_, st := f.publishWithPlan(seed, "rekey", 1, ringPlan)
	eventually(t, 30*time.Second, "web applies, and the seed refuses its reports", func() error {
		if s := localState(web, st.Digest); s != rollout.StateHealthy {
			return fmt.Errorf("web %s", s)
		}
		return atLeast(scrape(t, seed), `splicefleet_rollout_documents_refused_total{kind="report",reason="key"}`, 1)
	})
	if s, _ := seed.Rollout(st.Digest); s.Open != 0 || s.Stages[0].Passed {
		t.Fatalf("the canary stage passed on a report the seed refused: %s", s.Why)
	}

	stranger, err := signing.GenerateSigner("Stranger <x@example.com>", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seed.Rekey(f.rekeyDoc(stranger, "web", newKey, time.Now())); err == nil {
		t.Fatal("a re-key signed by an untrusted key was taken")
	}
	waitMetric(t, seed, 1, "splicefleet_rollout_documents_refused_total", "kind", "rekey", "reason", "signature")

	older := f.rekeyDoc(f.signer, "web", newKey, time.Now().Add(-time.Minute))
	if _, err := seed.Rekey(f.rekeyDoc(f.signer, "web", newKey, time.Now())); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, []*Agent{seed, web}, st.Digest, rollout.Done, 60*time.Second)
	if _, err := seed.Rekey(older); !errors.Is(err, rollout.ErrReplayed) {
		t.Errorf("an older re-key replayed: %v", err)
	}
	if pin, _ := seed.pins.Lookup("web"); hostkey.Encode(pin.Key) != newKey {
		t.Errorf("the pin moved: %s", hostkey.Encode(pin.Key))
	}

	// An agent that starts now takes the re-key with the documents.
	late := f.start(f.config("late"))
	waitMembers(t, []*Agent{seed, web, late}, 3)
	eventually(t, 60*time.Second, "the newcomer takes the re-key", func() error {
		late.ro.mu.Lock()
		n := len(late.ro.rekeys)
		late.ro.mu.Unlock()
		if n != 1 {
			return fmt.Errorf("%d re-keys", n)
		}
		return nil
	})
}

// TestReportsSurviveARestart: the reports an agent holds of other hosts
// are read back from its state directory when it starts again, with no
// peer to ask: an agent killed after it heard a host's healthy report,
// and before that host reports again, must not wait for it forever.
func TestReportsSurviveARestart(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(2)
	waitMembers(t, agents, 2)
	_, st := f.publishWithPlan(agents[0], "kept", 1, "id: ID\nbundle: BUNDLE\nstages: [{percent: 100}]\ngates: {health_window: 100ms}\n")
	waitRollout(t, agents, st.Digest, rollout.Done, 60*time.Second)
	other := agents[0].Name()
	held := func(a *Agent) rollout.HostState {
		a.ro.mu.Lock()
		defer a.ro.mu.Unlock()
		if h := a.ro.book.plans[st.Digest][other]; h != nil {
			return h.latest.State
		}
		return rollout.StateNone
	}
	if got := held(agents[1]); got != rollout.StateHealthy {
		t.Fatalf("before the restart %s holds %s's report as %s", agents[1].Name(), other, got)
	}
	cfg := agents[1].cfg
	f.stopAll()
	restarted := f.start(cfg) // alone: nobody to fetch reports from
	if got := held(restarted); got != rollout.StateHealthy {
		t.Errorf("after the restart %s holds %s's report as %s, want healthy (read from its state directory)", restarted.Name(), other, got)
	}
}

// TestLostRollbackReportIsFetched: a rollout halted and rolled back
// everywhere, but one agent missed a host's rolled-back report and so
// still sees that host running the patch. It must not stay "halted,
// rolling back" forever: it asks the host again while it judges the
// rollout settled, and asks it directly once the host's tags no longer
// carry the rollout.
func TestLostRollbackReportIsFetched(t *testing.T) {
	f := newTestFleet(t)
	seed := f.start(f.config("seed"))
	acfg := f.config("a")
	acfg.Tags = map[string]string{"ring": "a"}
	a := f.start(acfg)
	b := f.start(failingConfig(t, f, "b", "lp_lost", map[string]string{"ring": "b"}))
	agents := []*Agent{seed, a, b}
	waitMembers(t, agents, 3)
	_, st := f.publishWithPlan(seed, "lost", 1, `id: ID
bundle: BUNDLE
stages:
  - ring: a
    soak: 200ms
  - ring: b
gates:
  health_window: 200ms
`)
	d := st.Digest
	waitRollout(t, agents, d, rollout.RolledBack, 60*time.Second)

	// forget makes the seed hold only a's healthy report, as if its
	// rolled-back report had been lost, and judges the rollout on a view
	// whose tags of a say nothing of it (and, with noAddr, give no
	// address to ask either).
	forget := func(noAddr bool) rollout.Status {
		seed.ro.mu.Lock()
		defer seed.ro.mu.Unlock()
		held := seed.ro.book.plans[d]["a"]
		if held == nil || held.healthy == nil || held.latest.State != rollout.StateRolledBack {
			t.Fatalf("the seed holds %+v for a", held)
		}
		seed.ro.book.plans[d]["a"] = &heldReport{latest: held.healthy}
		clear(seed.ro.asked)
		c := seed.ro.cluster()
		c.hints = slices.Clone(c.hints)
		c.http = slices.Clone(c.http)
		for i, m := range c.members {
			if m.Name == "a" {
				c.hints[i] = nil
				if noAddr {
					c.http[i] = ""
				}
			}
		}
		return seed.ro.evaluateIn(seed.ro.recs[d], c)
	}
	judged := func() rollout.Status {
		seed.ro.mu.Lock()
		defer seed.ro.mu.Unlock()
		return seed.ro.status[d]
	}

	// Settled as halted with a host running the patch: judged again by
	// the loop, on the real tags, until it rolled back.
	if s := forget(true); s.State != rollout.Halted || s.RollingBack != 1 {
		t.Fatalf("after losing a's report the seed judges %s (%d rolling back): %s", s.State, s.RollingBack, s.Why)
	}
	eventually(t, 20*time.Second, "the seed's loop sees the rollback again", func() error {
		if s := judged(); s.State != rollout.RolledBack {
			return fmt.Errorf("%s: %s", s.State, s.Why)
		}
		return nil
	})

	// Tags silent on the rollout: a is asked directly.
	if s := forget(false); s.State != rollout.Halted && s.State != rollout.RolledBack {
		t.Fatalf("the seed judges %s: %s", s.State, s.Why)
	}
	eventually(t, 20*time.Second, "the seed fetches a's rolled-back report", func() error {
		seed.ro.mu.Lock()
		defer seed.ro.mu.Unlock()
		if s := seed.ro.book.plans[d]["a"].latest.State; s != rollout.StateRolledBack {
			return fmt.Errorf("a: %s", s)
		}
		return nil
	})
}
