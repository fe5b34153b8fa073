package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/rollout"
)

// TestAttackNonFiniteGates: a member offers plans signed by a trusted
// key whose gates are not numbers (.nan, .inf) or out of range. Every
// agent refuses them as invalid, counts them, and follows nothing: a
// NaN min_healthy would open every stage with no healthy host, and a NaN
// max_failure_ratio would never halt.
func TestAttackNonFiniteGates(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(3)
	waitMembers(t, agents, 3)
	v, err := agents[0].Publish(f.bundle("nan", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	holdEvery(t, "every agent holds the bundle", agents, v)
	r := f.joinRogue("rogue")
	before := make([]agentState, len(agents))
	for i, a := range agents {
		before[i] = stateOf(t, a)
	}
	plans := []string{
		"gates: {min_healthy: .nan}",
		"gates: {max_failures: -1, max_failure_ratio: .nan}",
		"gates: {max_failure_ratio: .inf}",
		"gates: {min_healthy: -.inf}",
	}
	for i, g := range plans {
		body := strings.ReplaceAll("id: nan-ID\nbundle: BUNDLE\nstages: [{percent: 100}]\n"+g+"\n", "ID", string(rune('a'+i)))
		d := f.signedPlan(v.ManifestDigest, body)
		if _, err := agents[0].StartRollout(d); err == nil || !strings.Contains(err.Error(), "must be a finite number") {
			t.Errorf("%s at the control API: %v", g, err)
		}
		r.offerSigned(d)
	}
	for _, a := range agents {
		waitMetric(t, a, float64(len(plans)), "splicefleet_rollout_documents_refused_total", "kind", "plan", "reason", "invalid")
	}
	for i, a := range agents {
		assertUnchanged(t, a, before[i])
		if sts := a.Rollouts(); len(sts) != 0 {
			t.Errorf("%s follows %d rollouts", a.Name(), len(sts))
		}
	}
}

// TestReplayedForgetKeepsNewerCopy: a signed forget replayed after the
// bundle was stored again (published anew) does not drop the newer copy:
// a forget drops only copies stored before it was issued.
func TestReplayedForgetKeepsNewerCopy(t *testing.T) {
	f := newTestFleet(t)
	a := f.start(f.config("solo"))
	v, err := a.Publish(f.bundle("again", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	old := f.command(f.signer, rollout.Command{Action: rollout.ActionForget, Bundle: v.ManifestDigest, Issued: time.Now().Add(-time.Hour)})
	if _, err := a.Command(old); err != nil {
		t.Fatalf("the old forget: %v", err)
	}
	if !a.store.Has(v.ManifestDigest) {
		t.Error("a forget issued an hour before the copy arrived dropped it")
	}
	fresh := f.command(f.signer, rollout.Command{Action: rollout.ActionForget, Bundle: v.ManifestDigest, Reason: "now"})
	if _, err := a.Command(fresh); err != nil {
		t.Fatal(err)
	}
	if a.store.Has(v.ManifestDigest) {
		t.Error("a current forget kept the bundle")
	}
}
