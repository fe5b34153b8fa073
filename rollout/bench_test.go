package rollout

import (
	"fmt"
	"testing"
	"time"
)

// benchmarkEvaluate judges one rollout over n members, as every agent
// does on every round: what a judgement costs as fleets grow.
func benchmarkEvaluate(b *testing.B, n int) {
	p, err := DecodePlan([]byte("id: bench\nbundle: " + digest + "\nstages: [{ring: canary, soak: 1m}, {percent: 1, soak: 1m}, {percent: 10, soak: 1m}, {percent: 100}]\n"))
	if err != nil {
		b.Fatal(err)
	}
	r := New(&VerifiedPlan{Plan: p, Digest: digest}, KernelTarget{Release: "6.1.0-56", Arch: "x86_64"}, t0)
	members := make([]Member, n)
	reports := map[string]Evidence{}
	for i := range members {
		st := StateNone
		if i%3 == 0 {
			st = StateHealthy
		}
		members[i] = Member{Name: fmt.Sprintf("host-%05d", i), Status: "alive", Kernel: "6.1.0-56", Arch: "x86_64",
			Tags: map[string]string{"role": "web"}}
		reports[members[i].Name] = Evidence{State: st}
	}
	v := View{Self: members[0].Name, Members: members, Reports: reports}
	now := t0.Add(time.Minute)
	for b.Loop() {
		r.Evaluate(v, now)
	}
}

func BenchmarkEvaluate100(b *testing.B)   { benchmarkEvaluate(b, 100) }
func BenchmarkEvaluate1000(b *testing.B)  { benchmarkEvaluate(b, 1000) }
func BenchmarkEvaluate10000(b *testing.B) { benchmarkEvaluate(b, 10000) }
