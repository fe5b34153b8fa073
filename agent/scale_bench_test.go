package agent

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
)

// BenchmarkScaleRollout runs a fleet of SPLICEFLEET_SCALE_AGENTS agents
// (default 500) in this process on loopback, with serf's LAN timers and
// the production rollout tick, and measures one staged rollout to every
// host and one halt:
//
//   - form-s: until every agent sees every other alive;
//   - done-s: from publishing a bundle with a plan (canary ring, 10%,
//     100%) until every agent judges it done and every kernel runs it;
//   - halt-s: from publishing a bundle whose canary fails its health
//     check until every agent judges the rollout halted;
//   - heap-MB and MB/agent: the Go heap in use with the fleet running.
//
// Run it with `make bench-scale`.
func BenchmarkScaleRollout(b *testing.B) {
	n := 500
	if s := os.Getenv("SPLICEFLEET_SCALE_AGENTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 10 {
			b.Fatalf("SPLICEFLEET_SCALE_AGENTS=%q: want a number of at least 10", s)
		}
	}
	for b.Loop() {
		b.StopTimer()
		f := newTestFleet(b)
		f.tuning, f.antiEntropy = gossip.DefaultTuning(), DefaultConfig().AntiEntropy
		var mu sync.Mutex
		learned := map[string]time.Time{} // node -> first judgement of a rollout
		f.options = func(o *Options) {
			o.RolloutTick = time.Second
			name := o.Config.NodeName
			o.OnRollout = func(st rollout.Status) {
				if st.ID != "scale-good" {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if _, ok := learned[name]; !ok {
					learned[name] = time.Now()
				}
			}
		}
		var agents []*Agent
		start := time.Now()
		for i := range n {
			cfg := f.config(fmt.Sprintf("node-%03d", i))
			if i == 1 || i == 2 {
				cfg.Tags = map[string]string{"ring": "canary"}
				dir := strings.TrimPrefix(cfg.Kernel, "sim:")
				if err := sim.Init(dir, sim.Config{}); err != nil {
					b.Fatal(err)
				}
				if err := sim.SetFaults(dir, sim.Faults{"lp_scale-bad": {HealthFail: true}}); err != nil {
					b.Fatal(err)
				}
			}
			if len(agents) > 0 {
				// Join a random member already in, not all the seed: a
				// fleet joins over time, and one seed answering 500
				// push/pulls at once drops them.
				cfg.Join = []string{agents[rand.IntN(len(agents))].GossipAddr()}
			}
			agents = append(agents, f.start(cfg))
		}
		waitB(b, 15*time.Minute, func() bool { return allAlive(agents, n) })
		form := time.Since(start)
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		heap := float64(ms.HeapInuse) / (1 << 20)

		plan := `id: ID
bundle: BUNDLE
stages:
  - ring: canary
    soak: 2s
  - percent: 10
    soak: 2s
  - percent: 100
gates:
  health_window: 2s
`
		b.StartTimer()
		start = time.Now()
		_, good := f.publishWithPlan(agents[0], "scale-good", 1, plan)
		waitB(b, 20*time.Minute, func() bool { return allJudged(agents, good.Digest, rollout.Done) })
		done := time.Since(start)
		mu.Lock()
		var lags []time.Duration
		for _, t := range learned {
			lags = append(lags, t.Sub(start))
		}
		mu.Unlock()
		slices.Sort(lags)
		if len(lags) > 0 {
			b.Logf("agents following the rollout after: median %s, 90th %s, last %s",
				lags[len(lags)/2].Round(time.Millisecond), lags[len(lags)*9/10].Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))
		}
		start = time.Now()
		_, bad := f.publishWithPlan(agents[0], "scale-bad", 1, plan)
		waitB(b, 20*time.Minute, func() bool { return allJudged(agents, bad.Digest, rollout.Halted) })
		halt := time.Since(start)
		b.StopTimer()
		patched := 0
		for _, a := range agents {
			if got := kernelState(b, a); len(got) == 1 && got[0] == "lp_scale-good" {
				patched++
			}
		}
		if patched != n {
			b.Fatalf("%d of %d kernels run the good patch alone", patched, n)
		}
		b.ReportMetric(form.Seconds(), "form-s")
		b.ReportMetric(done.Seconds(), "done-s")
		b.ReportMetric(halt.Seconds(), "halt-s")
		b.ReportMetric(heap, "heap-MB")
		b.ReportMetric(heap/float64(n), "MB/agent")
		b.Logf("%d agents: formed in %s, rollout done in %s, halt in %s, heap %.0f MB", n, form.Round(time.Second), done.Round(time.Second), halt.Round(time.Second), heap)
		f.stopAll()
		b.StartTimer()
	}
}

// allAlive reports whether every agent sees n members alive.
func allAlive(agents []*Agent, n int) bool {
	for _, a := range agents {
		alive := 0
		for _, m := range a.Members() {
			if m.Status == "alive" {
				alive++
			}
		}
		if alive != n {
			return false
		}
	}
	return true
}

// allJudged reports whether every agent's last judgement of the rollout
// is state, without judging again (a status request would).
func allJudged(agents []*Agent, digest, state string) bool {
	for _, a := range agents {
		a.ro.mu.Lock()
		st, ok := a.ro.status[digest]
		a.ro.mu.Unlock()
		if !ok || st.State != state {
			return false
		}
	}
	return true
}
