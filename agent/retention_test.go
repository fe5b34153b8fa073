package agent

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// testClock is an agent clock the test moves forward.
type testClock struct{ off atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// held lists the bundle IDs an agent's store holds, sorted.
func held(t testing.TB, a *Agent) []string {
	t.Helper()
	entries, err := a.store.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	return ids
}

// forgetDoc signs a forget command for a bundle.
func (f *testFleet) forgetDoc(bundle, reason string) *rollout.Document {
	f.t.Helper()
	return f.command(f.signer, rollout.Command{Action: rollout.ActionForget, Bundle: bundle, Reason: reason})
}

// outstanding reads splicefleet_bundle_outstanding for one bundle.
func outstanding(t testing.TB, a *Agent, id string) float64 {
	t.Helper()
	return metricValue(t, a, "splicefleet_bundle_outstanding", "patch", id)
}

// TestBundleRetention: after bundle_retention, each agent drops exactly
// the bundles no live rollout needs: one published without a plan, one
// whose rollout halted, one whose manifest expired. It keeps the bundle
// of a paused rollout and of a done one (hosts that join later apply
// it). The host that applied the halted rollout's patch keeps it applied
// and keeps its own copy for re-apply at boot; the drops are counted.
// (That anti-entropy does not fetch a dropped bundle back from a peer
// is TestForgetLocalAndFleetWide's.)
func TestBundleRetention(t *testing.T) {
	f := newTestFleet(t)
	clock := &testClock{}
	f.options = func(o *Options) { o.Now = clock.now }
	canary := f.config("node-00")
	canary.Tags = map[string]string{rollout.RingTag: "canary"}
	agents := []*Agent{f.start(canary), f.start(f.config("node-01")), f.start(f.config("node-02"))}
	waitMembers(t, agents, 3)
	for _, a := range agents {
		if rollout.Bucket("paused", a.Name()) < 1 {
			t.Fatalf("%s is in the first stage of rollout paused; pick another id", a.Name())
		}
	}

	// Published only.
	only, err := agents[0].Publish(f.bundle("only", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	// Its manifest expires in an hour.
	exp := time.Now().Add(time.Hour)
	b := signedBundle(t, splice.Manifest{ID: "expiring", Version: 1, Expires: &exp}, 0, f.signer)
	raw, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	expiring, err := agents[1].Publish(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Paused in its first stage, which holds no host.
	_, paused := f.publishWithPlan(agents[0], "paused", 1, planFor("ID", "BUNDLE"))
	if _, err := agents[0].Command(f.command(f.signer, rollout.Command{Plan: paused.Digest, Seq: 1, Action: rollout.ActionPause})); err != nil {
		t.Fatal(err)
	}
	// Done on every host.
	_, done := f.publishWithPlan(agents[1], "done", 1, "id: ID\nbundle: BUNDLE\nstages: [{percent: 100}]\ngates: {health_window: 100ms}\n")
	// Applied on the canary, then halted by an operator: the canary keeps
	// the patch (halt, not revoke).
	haltedV, halted := f.publishWithPlan(agents[2], "halted", 1, "id: ID\nbundle: BUNDLE\nstages: [{ring: canary, soak: 1h}, {percent: 100}]\n"+
		"gates: {health_window: 100ms}\n")
	eventually(t, 60*time.Second, "the canary healthy in rollout halted", func() error {
		if s := localState(agents[0], halted.Digest); s != rollout.StateHealthy {
			return fmt.Errorf("canary %s", s)
		}
		return nil
	})
	if _, err := agents[2].Command(f.command(f.signer, rollout.Command{Plan: halted.Digest, Seq: 1, Action: rollout.ActionHalt})); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, agents, halted.Digest, rollout.Halted, 30*time.Second)
	waitRollout(t, agents, done.Digest, rollout.Done, 60*time.Second)
	waitRollout(t, agents, paused.Digest, rollout.Paused, 30*time.Second)
	all := []string{"done", "expiring", "halted", "only", "paused"}
	eventually(t, 60*time.Second, "every agent holds every bundle", func() error {
		for _, a := range agents {
			if got := held(t, a); !slices.Equal(got, all) {
				return fmt.Errorf("%s holds %v", a.Name(), got)
			}
		}
		return nil
	})
	// One copy on the canary: the store's, which its host lifecycle
	// reads at boot too.
	splicedCopy := filepath.Join(agents[0].cfg.StateDir, splice.StoreDir, "modules", haltedV.Manifest.Module.SHA256)
	if _, err := os.Stat(splicedCopy); err != nil {
		t.Fatalf("the canary's own copy of the applied patch: %v", err)
	}
	kernelBefore := kernelState(t, agents[0])
	if !slices.Contains(kernelBefore, "lp_halted") || !slices.Contains(kernelBefore, "lp_done") {
		t.Fatalf("the canary runs %v", kernelBefore)
	}

	// Six days later: within the retention (a week), nothing goes.
	clock.advance(6 * 24 * time.Hour)
	for _, a := range agents {
		if dropped := a.collectBundles(); len(dropped) != 0 {
			t.Errorf("%s dropped %v within the retention", a.Name(), dropped)
		}
		if got := held(t, a); !slices.Equal(got, all) {
			t.Errorf("%s holds %v within the retention", a.Name(), got)
		}
	}

	// Eight days later: the three go on every agent, the two others stay.
	clock.advance(2 * 24 * time.Hour)
	keep := []string{"done", "paused"}
	eventually(t, 30*time.Second, "retention drops what no live rollout needs", func() error {
		for _, a := range agents {
			if got := held(t, a); !slices.Equal(got, keep) {
				return fmt.Errorf("%s holds %v", a.Name(), got)
			}
		}
		return nil
	})
	for _, a := range agents {
		// Counted just after the store's copy goes.
		waitMetric(t, a, 3, "splicefleet_bundles_dropped_total", "reason", "retention")
		if n := metricValue(t, a, "splicefleet_bundles_dropped_total", "reason", "retention"); n != 3 {
			t.Errorf("%s counted %g drops by retention, want 3", a.Name(), n)
		}
		// Remembered, so that anti-entropy does not fetch them back.
		for _, v := range []*splice.Verified{only, expiring, haltedV} {
			if !a.forgotten.has(v.ManifestDigest) {
				t.Errorf("%s does not remember dropping %s", a.Name(), v.Manifest.ID)
			}
		}
	}
	// The canary still runs the halted rollout's patch, and keeps its copy
	// to re-apply it at boot.
	if got := kernelState(t, agents[0]); !slices.Equal(got, kernelBefore) {
		t.Errorf("the canary ran %v, now %v", kernelBefore, got)
	}
	if _, err := os.Stat(splicedCopy); err != nil {
		t.Errorf("the canary's own copy of the applied patch went: %v", err)
	}
	if _, err := os.Stat(filepath.Join(agents[0].cfg.StateDir, splice.StoreDir, "heads", haltedV.ManifestDigest+".json")); err != nil {
		t.Errorf("the canary's own copy of the applied patch's head went: %v", err)
	}
	// Where no patch needs them, the bytes went with the copy for
	// distribution.
	for i, a := range agents {
		for _, v := range []*splice.Verified{only, expiring, haltedV} {
			if i == 0 && v == haltedV {
				continue
			}
			mod := filepath.Join(a.cfg.StateDir, splice.StoreDir, "modules", v.Manifest.Module.SHA256)
			if _, err := os.Stat(mod); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s still stores the module of %s: %v", a.Name(), v.Manifest.ID, err)
			}
		}
	}
}

// TestForgetLocalAndFleetWide: forget drops a bundle's copy for
// distribution now, on one host through its control API or on every
// host by a signed command; an agent that was down gets the command from
// its peers when it comes back. A forget of a bundle a running rollout
// uses, an unsigned one and one signed by an untrusted key are refused
// by every agent and counted, and change nothing.
func TestForgetLocalAndFleetWide(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(3)
	waitMembers(t, agents, 3)
	x, err := agents[0].Publish(f.bundle("x", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	running, runningSt := heldOutOfStageOne(t, f, agents[1], "running")
	holdEvery(t, "every agent holds both", agents, x, running)
	waitRollout(t, agents, runningSt.Digest, rollout.Running, 30*time.Second)

	// Locally, through the control API.
	ctl := NewControlClient(agents[0].cfg.ControlSocket)
	var refused *RefusedError
	err = ctl.Do("POST", "/v1/bundles/"+running.ManifestDigest+"/forget", nil, nil)
	if !errors.As(err, &refused) || refused.Reason != "in_use" || !strings.Contains(err.Error(), "rollout running is running; halt or revoke it first") {
		t.Errorf("local forget of a running rollout's bundle: %v", err)
	}
	var ent splice.Entry
	if err := ctl.Do("POST", "/v1/bundles/"+x.ManifestDigest+"/forget", nil, &ent); err != nil || ent.ID != "x" {
		t.Fatalf("local forget: %+v, %v", ent, err)
	}
	if agents[0].store.Has(x.ManifestDigest) || !agents[1].store.Has(x.ManifestDigest) || !agents[2].store.Has(x.ManifestDigest) {
		t.Fatalf("after a local forget on node-00: held %v %v %v", held(t, agents[0]), held(t, agents[1]), held(t, agents[2]))
	}
	// Anti-entropy reads the peers' indexes, which list x, and does not
	// fetch it back: it fetches a bundle only the peers hold instead.
	was := antiEntropyFetches(t, agents[0])
	y := f.bundle("y", 1, f.signer, 0)
	f.quiet(agents[1], y)
	f.quiet(agents[2], y)
	fetchedThroughAntiEntropy(t, agents[0], was)
	if agents[0].store.Has(x.ManifestDigest) {
		t.Error("anti-entropy fetched the forgotten bundle back")
	}
	if err := ctl.Do("POST", "/v1/bundles/"+x.ManifestDigest+"/forget", nil, nil); !errors.As(err, &refused) || refused.Reason != "not_held" {
		t.Errorf("a second local forget: %v", err)
	}

	// Refused everywhere: unsigned, signed by a stranger, and the bundle
	// of a running rollout.
	r := f.joinRogue("rogue")
	before := make([]agentState, len(agents))
	for i, a := range agents {
		before[i] = stateOf(t, a)
	}
	good := f.forgetDoc(x.ManifestDigest, "superseded")
	unsigned := fmt.Sprintf(`{"kind":"command","body":%q,"signatures":[]}`, base64.StdEncoding.EncodeToString(good.Body))
	r.offerDoc(rollout.KindCommand, good.Digest(), []byte(unsigned))
	for _, a := range agents {
		waitMetric(t, a, 1, "splicefleet_rollout_documents_refused_total", "kind", "command", "reason", "invalid")
	}
	stranger := newSigner(t, "Stranger")
	r.offerSigned(f.command(stranger, rollout.Command{Action: rollout.ActionForget, Bundle: x.ManifestDigest, Reason: "mine"}))
	for _, a := range agents {
		waitMetric(t, a, 1, "splicefleet_rollout_documents_refused_total", "kind", "command", "reason", "signature")
	}
	inUse := f.forgetDoc(running.ManifestDigest, "")
	if _, err := agents[1].Command(inUse); !errors.Is(err, ErrBundleInUse) || !errors.Is(err, ErrRolloutRefused) {
		t.Errorf("forget of a running rollout's bundle: %v", err)
	}
	r.offerSigned(inUse)
	for _, a := range agents {
		waitMetric(t, a, 1, "splicefleet_rollout_documents_refused_total", "kind", "command", "reason", "refused")
	}
	for i, a := range agents {
		assertUnchanged(t, a, before[i])
		if n := metricValue(t, a, "splicefleet_bundles_dropped_total", "reason", "forget"); n != b2f(i == 0) {
			t.Errorf("%s counted %g forgets", a.Name(), n)
		}
	}

	// Signed, fleet-wide, while node-02 is down: it drops its copy when
	// it is back, from its peers' documents.
	down := agents[2].cfg
	f.stop(down.NodeName)
	if _, err := agents[1].Command(good); err != nil {
		t.Fatal(err)
	}
	if agents[1].store.Has(x.ManifestDigest) {
		t.Error("node-01 still holds x after the forget it accepted")
	}
	back := f.start(down)
	agents[2] = back
	eventually(t, 60*time.Second, "the agent that was down drops x", func() error {
		if back.store.Has(x.ManifestDigest) {
			return fmt.Errorf("%s holds %v", back.Name(), held(t, back))
		}
		return nil
	})
	for _, a := range agents {
		if a.store.Has(x.ManifestDigest) || !a.store.Has(running.ManifestDigest) {
			t.Errorf("%s holds %v", a.Name(), held(t, a))
		}
	}
	for _, a := range agents[1:] {
		waitMetric(t, a, 1, "splicefleet_bundles_dropped_total", "reason", "forget")
	}
	if _, err := agents[1].Command(good); !errors.Is(err, rollout.ErrReplayed) {
		t.Errorf("the same forget again: %v", err)
	}
}

// TestEndedRolloutRefusesCommands: halt of a done rollout and resume of
// a revoked one are refused with an explanation at the agent they are
// sent to and at every agent they reach by gossip, counted, and change
// nothing: the done rollout stays done with its patch on every host.
func TestEndedRolloutRefusesCommands(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(3)
	waitMembers(t, agents, 3)
	_, st := f.publishWithPlan(agents[0], "ends", 1, "id: ID\nbundle: BUNDLE\nstages: [{percent: 100}]\ngates: {health_window: 100ms}\n")
	waitRollout(t, agents, st.Digest, rollout.Done, 60*time.Second)
	eventually(t, 30*time.Second, "every host patched", func() error {
		for _, a := range agents {
			if got := kernelState(t, a); !slices.Contains(got, "lp_ends") {
				return fmt.Errorf("%s runs %v", a.Name(), got)
			}
		}
		return nil
	})
	r := f.joinRogue("rogue")
	before := make([]agentState, len(agents))
	for i, a := range agents {
		before[i] = stateOf(t, a)
	}

	halt := f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 1, Action: rollout.ActionHalt, Reason: "too late"})
	_, err := agents[1].Command(halt)
	if !errors.Is(err, rollout.ErrEnded) || !errors.Is(err, ErrRolloutRefused) ||
		!strings.Contains(err.Error(), "rollout ends is done") || !strings.Contains(err.Error(), "revoke it") {
		t.Errorf("halt of a done rollout: %v", err)
	}
	waitMetric(t, agents[1], 1, "splicefleet_rollout_documents_refused_total", "kind", "command", "reason", "refused")
	// The same signed halt, gossiped by a member: refused everywhere.
	r.offerSigned(halt)
	for _, a := range agents {
		waitMetric(t, a, 1+b2f(a == agents[1]), "splicefleet_rollout_documents_refused_total", "kind", "command", "reason", "refused")
	}
	for i, a := range agents {
		assertUnchanged(t, a, before[i])
	}
	waitRollout(t, agents, st.Digest, rollout.Done, time.Second)

	// Revoked: every host rolls back; then resume is refused.
	if _, err := agents[0].Command(f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 2, Action: rollout.ActionRevoke, Reason: "regression"})); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, agents, st.Digest, rollout.Halted, 30*time.Second)
	eventually(t, 30*time.Second, "every host rolled back", func() error {
		for _, a := range agents {
			if got := kernelState(t, a); slices.Contains(got, "lp_ends") {
				return fmt.Errorf("%s runs %v", a.Name(), got)
			}
			if s := localState(a, st.Digest); s != rollout.StateRolledBack {
				return fmt.Errorf("%s: %s", a.Name(), s)
			}
			if live, err := splice.LiveSummary(a.cfg.StateDir); err != nil || len(live) != 0 {
				return fmt.Errorf("%s's journal: %v %v", a.Name(), live, err)
			}
		}
		return nil
	})
	for i, a := range agents {
		before[i] = stateOf(t, a)
	}
	resume := f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 3, Action: rollout.ActionResume})
	_, err = agents[2].Command(resume)
	if !errors.Is(err, rollout.ErrEnded) || !strings.Contains(err.Error(), "revoke by operator (seq 2): regression") ||
		!strings.Contains(err.Error(), "a halt is final and resume only undoes a pause") {
		t.Errorf("resume of a revoked rollout: %v", err)
	}
	r.offerSigned(resume)
	for _, a := range agents {
		waitMetric(t, a, 2+b2f(a == agents[1])+b2f(a == agents[2]), "splicefleet_rollout_documents_refused_total", "kind", "command", "reason", "refused")
	}
	for i, a := range agents {
		assertUnchanged(t, a, before[i])
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// TestOutstandingOnlyWhileLive: a bundle published without a plan is
// never outstanding; one a running rollout targets the host with is,
// until the rollout halts: then it is 0 on every host, so
// SplicefleetPatchOutstanding clears.
func TestOutstandingOnlyWhileLive(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(3)
	waitMembers(t, agents, 3)
	idle, err := agents[0].Publish(f.bundle("idle", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	_, st := heldOutOfStageOne(t, f, agents[0], "pending")
	waitRollout(t, agents, st.Digest, rollout.Running, 30*time.Second)
	holdEvery(t, "every agent holds the idle bundle", agents, idle)
	eventually(t, 30*time.Second, "outstanding while the rollout runs", func() error {
		for _, a := range agents {
			if o, i := outstanding(t, a, "pending"), outstanding(t, a, "idle"); o != 1 || i != 0 {
				return fmt.Errorf("%s: pending %g, idle %g", a.Name(), o, i)
			}
		}
		return nil
	})
	if _, err := agents[1].Command(f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 1, Action: rollout.ActionHalt})); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "not outstanding once halted", func() error {
		for _, a := range agents {
			if o := outstanding(t, a, "pending"); o != 0 {
				return fmt.Errorf("%s: pending %g", a.Name(), o)
			}
		}
		return nil
	})
}
