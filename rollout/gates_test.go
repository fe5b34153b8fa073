package rollout

import (
	"strings"
	"testing"
	"time"
)

// TestMinHealthyShare: with min_healthy below 1, a stage passes once that
// share of its hosts reports healthy, while the rest are still inside
// their health window; below the share it waits and says so.
func TestMinHealthyShare(t *testing.T) {
	plan := "id: share\nbundle: " + digest + "\nstages: [{ring: canary}, {percent: 100}]\ngates: {min_healthy: 0.75}\n"
	f := newFleet(t, plan, 10, map[int]string{0: "canary", 1: "canary", 2: "canary", 3: "canary"})
	if did := f.step(t0, StateApplying); strings.Join(did, ",") != "host-00,host-01,host-02,host-03" {
		t.Fatalf("the canary ring applied on %v", did)
	}
	f.states[f.members[0].Name] = StateHealthy
	f.states[f.members[1].Name] = StateHealthy
	st := f.eval("host-09", t0)
	if st.Open != 0 || st.Stages[0].Passed || st.Self.Apply {
		t.Fatalf("2 of 4 healthy (below 0.75) opened the next stage: %+v", st)
	}
	if !strings.Contains(st.Why, "applying") {
		t.Errorf("why %q does not name the hosts it waits for", st.Why)
	}
	f.states[f.members[2].Name] = StateHealthy
	st = f.eval("host-09", t0.Add(time.Second))
	if st.Open != 1 || !st.Stages[0].Passed || !st.Self.Apply {
		t.Fatalf("3 of 4 healthy (0.75) did not open the next stage: open %d, why %q", st.Open, st.Why)
	}
}

// TestExpiryDuringRollout: a plan whose expiry passes while it runs stops
// there: hosts that applied keep the patch, no other host applies it, and
// the status says when it expired.
func TestExpiryDuringRollout(t *testing.T) {
	plan := stagedPlan + "expires: " + t0.Add(10*time.Minute).Format(time.RFC3339) + "\n"
	f := newFleet(t, plan, 10, map[int]string{0: "canary"})
	if did := f.step(t0, StateHealthy); strings.Join(did, ",") != "host-00" {
		t.Fatalf("first stage applied on %v", did)
	}
	// Before the expiry, the canary's soak (1m) ends and the 50% stage
	// opens.
	later := t0.Add(2 * time.Minute)
	did := f.step(later, StateHealthy)
	if len(did) == 0 {
		t.Fatal("the 50% stage did not open before the expiry")
	}
	expired := t0.Add(11 * time.Minute)
	for _, m := range f.members {
		st := f.eval(m.Name, expired)
		if st.State != Expired || !strings.Contains(st.Why, "expired at "+t0.Add(10*time.Minute).Format(time.RFC3339)) {
			t.Fatalf("%s after the expiry: state %s, why %q", m.Name, st.State, st.Why)
		}
		if st.Self.Apply {
			t.Errorf("%s applies an expired plan", m.Name)
		}
		if st.Self.RollBack {
			t.Errorf("%s rolls back on expiry", m.Name)
		}
	}
}
