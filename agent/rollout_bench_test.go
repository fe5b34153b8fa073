package agent

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/rollout"
)

// BenchmarkHalt100 runs 100 agents in this process on loopback with the
// default (LAN) gossip configuration. Each iteration starts a rollout
// whose first stage waits for an operator (a ring nobody is in, soaking
// for an hour), waits until every agent holds the bundle and follows the
// rollout, then at the same
// moment gossips a raw user event and a canary's failure report, and
// measures:
//
//   - serf-ms: the raw user event reaching all 100 agents, the baseline;
//   - halt-ms: the failure report until all 100 agents judged the rollout
//     halted;
//   - ratio: halt-ms over serf-ms.
//
// Each is the median over the iterations, all in one fleet.
func BenchmarkHalt100(b *testing.B) {
	const n = 100
	f := newTestFleet(b)
	f.tuning, f.antiEntropy = gossip.DefaultTuning(), DefaultConfig().AntiEntropy
	var mu sync.Mutex
	halted := map[string]map[string]time.Time{} // plan -> node -> when
	f.options = func(o *Options) {
		name := o.Config.NodeName
		o.OnRollout = func(st rollout.Status) {
			if !rollout.Ended(st.State) {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if halted[st.Digest] == nil {
				halted[st.Digest] = map[string]time.Time{}
			}
			if _, ok := halted[st.Digest][name]; !ok {
				halted[st.Digest][name] = time.Now()
			}
		}
	}
	agents := f.startN(n)
	waitMembersB(b, agents, n)

	var serfs, halts []float64
	defer func() {
		if len(serfs) == 0 {
			return
		}
		med := func(v []float64) float64 {
			v = slices.Clone(v)
			slices.Sort(v)
			return v[len(v)/2]
		}
		b.ReportMetric(med(serfs), "serf-ms")
		b.ReportMetric(med(halts), "halt-ms")
		b.ReportMetric(med(halts)/med(serfs), "ratio")
	}()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		id := fmt.Sprintf("halt-%d", i)
		v, err := agents[0].Publish(f.bundle(id, 1, f.signer, 0))
		if err != nil {
			b.Fatal(err)
		}
		st, err := agents[0].StartRollout(f.signedPlan(v.ManifestDigest, "id: "+id+`
bundle: BUNDLE
stages:
  - percent: 100
gates:
  health_window: 1h
`))
		if err != nil {
			b.Fatal(err)
		}
		waitB(b, 120*time.Second, func() bool {
			for _, a := range agents {
				if _, err := a.Rollout(st.Digest); err != nil || !a.store.Has(v.ManifestDigest) {
					return false
				}
			}
			return true
		})
		before := make([]uint64, n)
		for j, a := range agents {
			before[j] = a.node.Stats().AnnouncementsReceived
		}
		canary := agents[1+i%(n-1)]
		b.StartTimer()
		start := time.Now()
		// The baseline: a raw user event, counted on arrival: an
		// announcement of the bundle every agent already holds, so
		// nobody acts on it.
		marker := gossip.Announcement{ID: id, Version: 1, ManifestDigest: v.ManifestDigest, Size: 1, Origin: canary.advertisedHTTP()}
		if err := canary.node.Announce(marker); err != nil {
			b.Fatal(err)
		}
		rec, err := canary.ro.find(st.Digest)
		if err != nil {
			b.Fatal(err)
		}
		canary.ro.set(rec, rollout.StateFailed, "benchmark: the canary failed")
		var serf time.Duration
		waitFast(b, 120*time.Second, func() bool {
			if serf == 0 {
				all := true
				for j, a := range agents {
					if a.node.Stats().AnnouncementsReceived == before[j] {
						all = false
						break
					}
				}
				if all {
					serf = time.Since(start)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			return serf != 0 && len(halted[st.Digest]) == n
		})
		b.StopTimer()
		mu.Lock()
		var last time.Time
		for _, t := range halted[st.Digest] {
			if t.After(last) {
				last = t
			}
		}
		mu.Unlock()
		halt := last.Sub(start)
		serfs = append(serfs, float64(serf.Microseconds())/1000)
		halts = append(halts, float64(halt.Microseconds())/1000)
		b.Logf("iteration %d: serf %s, all halted %s", i, serf.Round(time.Millisecond), halt.Round(time.Millisecond))
		b.StartTimer()
	}
}

// waitFast polls every millisecond: what it waits for is measured.
func waitFast(b *testing.B, within time.Duration, ok func() bool) {
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			b.Fatalf("not within %s", within)
		}
		time.Sleep(time.Millisecond)
	}
}
