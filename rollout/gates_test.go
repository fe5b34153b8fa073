package rollout

import (
	"errors"
	"math"
	"slices"
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

// TestNonFiniteGatesRefused: NaN compares false with every bound, so a
// plan whose gate is .nan would pass a range check: stages would open
// with no healthy host and the rollout would never halt. Every
// non-finite or out-of-range gate is refused, with a message that names
// the field, whether the plan comes as YAML or is built in Go.
func TestNonFiniteGatesRefused(t *testing.T) {
	head := "id: gates\nbundle: " + digest + "\n"
	for _, tt := range []struct {
		name, yaml, want string
	}{
		{"min_healthy nan", "stages: [{percent: 100}]\ngates: {min_healthy: .nan}\n", "gates.min_healthy NaN must be a finite number in (0, 1]"},
		{"min_healthy NaN", "stages: [{percent: 100}]\ngates: {min_healthy: .NaN}\n", "gates.min_healthy NaN"},
		{"min_healthy inf", "stages: [{percent: 100}]\ngates: {min_healthy: .inf}\n", "gates.min_healthy +Inf"},
		{"min_healthy -inf", "stages: [{percent: 100}]\ngates: {min_healthy: -.Inf}\n", "gates.min_healthy -Inf"},
		{"min_healthy above 1", "stages: [{percent: 100}]\ngates: {min_healthy: 1.5}\n", "gates.min_healthy 1.5"},
		{"ratio nan", "stages: [{percent: 100}]\ngates: {max_failure_ratio: .nan}\n", "gates.max_failure_ratio NaN must be a finite number in [0, 1)"},
		{"ratio nan, count off", "stages: [{percent: 100}]\ngates: {max_failures: -1, max_failure_ratio: .nan}\n", "gates.max_failure_ratio NaN"},
		{"ratio inf", "stages: [{percent: 100}]\ngates: {max_failure_ratio: +.inf}\n", "gates.max_failure_ratio +Inf"},
		{"ratio -inf", "stages: [{percent: 100}]\ngates: {max_failure_ratio: -.inf}\n", "gates.max_failure_ratio -Inf"},
		{"ratio 1", "stages: [{percent: 100}]\ngates: {max_failure_ratio: 1}\n", "gates.max_failure_ratio 1 "},
		{"max_failures nan", "stages: [{percent: 100}]\ngates: {max_failures: .nan}\n", "line 4: gates.max_failures: cannot unmarshal !!float `.nan` into int"},
		{"max_failures below -1", "stages: [{percent: 100}]\ngates: {max_failures: -2}\n", "gates.max_failures"},
		{"health_window inf", "stages: [{percent: 100}]\ngates: {health_window: .inf}\n", "line 4: gates.health_window: cannot unmarshal"},
		{"health_window too long", "stages: [{percent: 100}]\ngates: {health_window: 25h}\n", "gates.health_window"},
		{"health_window negative", "stages: [{percent: 100}]\ngates: {health_window: -1s}\n", "gates.health_window"},
		{"percent nan", "stages: [{percent: .nan}]\n", "stage 1: percent NaN must be a finite number"},
		{"percent inf", "stages: [{ring: canary}, {percent: .inf}]\n", "stage 2: percent +Inf must be a finite number"},
		{"percent -inf", "stages: [{percent: -.inf}]\n", "stage 1: percent -Inf"},
		{"soak nan", "stages: [{percent: 100, soak: .nan}]\n", "line 3: stages[1].soak: cannot unmarshal"},
		{"soak inf", "stages:\n  - ring: canary\n  - percent: 100\n    soak: .inf\n", "line 6: stages[2].soak: cannot unmarshal"},
		{"soak too long", "stages: [{percent: 50, soak: 721h}, {percent: 100}]\n", "stage 1: soak must be between 0 and 720h"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodePlan([]byte(head + tt.yaml))
			if !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodePlan = %+v, %v; want ErrInvalidPlan naming %q", p, err, tt.want)
			}
		})
	}

	// A plan built in Go goes through the same checks.
	good, err := DecodePlan([]byte(head + "stages: [{ring: canary}, {percent: 100}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		set  func(p *Plan)
		want string
	}{
		{"min_healthy", func(p *Plan) { p.Gates.MinHealthy = math.NaN() }, "gates.min_healthy NaN"},
		{"max_failure_ratio", func(p *Plan) { p.Gates.MaxFailureRatio = math.Inf(1) }, "gates.max_failure_ratio +Inf"},
		{"percent", func(p *Plan) { p.Stages[1].Percent = math.NaN() }, "stage 2: percent NaN"},
	} {
		p := *good
		p.Stages = slices.Clone(good.Stages)
		tt.set(&p)
		if err := p.Validate(); !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want ErrInvalidPlan naming %q", tt.name, err, tt.want)
		}
	}
	if err := good.Validate(); err != nil {
		t.Errorf("the valid plan: %v", err)
	}
}
