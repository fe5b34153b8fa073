package rollout

import (
	"fmt"
	"math"
	"testing"
)

func TestBucketIsStable(t *testing.T) {
	// Pinned: every agent of every version must compute the same buckets,
	// or hosts would disagree about who is in a stage.
	// The values were computed outside Go from the documented formula:
	// int.from_bytes(sha256(b"r1\x00host-1").digest()[:8], "big") % 10000.
	for _, tt := range []struct {
		plan, node string
		want       int
	}{
		{"r1", "host-1", 8204},
	} {
		if got := Bucket(tt.plan, tt.node); got != tt.want {
			t.Errorf("Bucket(%q, %q) = %d, want %d (the hash must never change between releases)", tt.plan, tt.node, got, tt.want)
		}
	}
	if Bucket("r1", "host-1") == Bucket("r2", "host-1") && Bucket("r1", "host-2") == Bucket("r2", "host-2") {
		t.Error("a new rollout ID does not reshuffle buckets")
	}
}

// A p% stage over 10,000 names selects p% within statistical bounds
// (five standard deviations of the binomial), and stages nest.
func TestBucketSharesAreFairAndNested(t *testing.T) {
	const n = 10000
	plan := &Plan{ID: "fairness", Stages: []Stage{{Percent: 1}, {Percent: 10}, {Percent: 50}, {Percent: 100}}}
	r := &Rollout{Plan: plan}
	counts := make([]int, len(plan.Stages))
	for i := range n {
		m := Member{Name: fmt.Sprintf("node-%05d", i)}
		s := r.StageOf(m)
		if s < 0 {
			t.Fatalf("%s is in no stage of a plan ending at 100%%", m.Name)
		}
		for k := s; k < len(counts); k++ {
			counts[k]++ // nested: in stage s means in every later stage
		}
		b := Bucket(plan.ID, m.Name)
		for k, st := range plan.Stages {
			if in := b < st.Share(); in != (k >= s) {
				t.Fatalf("%s (bucket %d): in stage %d = %t, but its first stage is %d", m.Name, b, k, in, s)
			}
		}
	}
	for k, st := range plan.Stages {
		p := st.Percent / 100
		sd := math.Sqrt(n * p * (1 - p))
		if got, want := float64(counts[k]), n*p; math.Abs(got-want) > 5*sd+0.5 {
			t.Errorf("stage %s selected %v of %d names, want %v ± %.0f", st.Name(), got, n, want, 5*sd)
		}
	}
}

func TestRingsGoFirst(t *testing.T) {
	plan := &Plan{ID: "rings", Stages: []Stage{{Ring: "canary"}, {Ring: "early"}, {Percent: 0.01}, {Percent: 100}}}
	r := &Rollout{Plan: plan}
	for _, tt := range []struct {
		ring string
		want int
	}{{"canary", 0}, {"early", 1}, {"", -2}, {"other", -2}} {
		m := Member{Name: "h", Tags: map[string]string{RingTag: tt.ring}}
		got := r.StageOf(m)
		if tt.want == -2 {
			if got < 2 {
				t.Errorf("ring %q: stage %d, want a percentage stage", tt.ring, got)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("ring %q: stage %d, want %d", tt.ring, got, tt.want)
		}
	}
}
