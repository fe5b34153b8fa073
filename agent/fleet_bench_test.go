package agent

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/gossip"
)

// BenchmarkFleet50 runs 50 agents in this process on loopback with the
// default (LAN) gossip configuration and measures, per iteration:
//
//   - serf-ms: raw propagation of a user event (an announcement that names
//     a bundle nobody holds) until all 50 delivered it, the baseline;
//   - verified-ms: from publishing a bundle with a 1 MiB module until all
//     50 hold it verified;
//   - origin-copies: full module copies the publishing agent uploaded;
//   - ratio: verified-ms over serf-ms.
//
// Each is the median over the iterations (a fresh fleet each); besides,
// origin-copies-max is the most copies the origin uploaded in any
// iteration, which the median would hide.
func BenchmarkFleet50(b *testing.B) {
	var serfs, verifieds, copiesAll []float64
	defer func() {
		med := func(v []float64) float64 {
			slices.Sort(v)
			return v[len(v)/2]
		}
		if len(serfs) > 0 {
			b.ReportMetric(med(serfs), "serf-ms")
			b.ReportMetric(med(verifieds), "verified-ms")
			b.ReportMetric(med(copiesAll), "origin-copies")
			b.ReportMetric(slices.Max(copiesAll), "origin-copies-max")
			b.ReportMetric(med(verifieds)/med(serfs), "ratio")
		}
	}()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		f := newTestFleet(b)
		// What hosts run: LAN timers, and anti-entropy at its default, so
		// that announcements alone carry the bundle.
		f.tuning, f.antiEntropy = gossip.DefaultTuning(), DefaultConfig().AntiEntropy
		agents := f.startN(50)
		waitMembersB(b, agents, 50)

		// Baseline: a raw user event to all 50.
		marker := gossip.Announcement{ID: fmt.Sprintf("marker-%d", i), Version: 1,
			ManifestDigest: fmt.Sprintf("%064x", i+1), Size: 1, Origin: "127.0.0.1:1"}
		before := make([]uint64, len(agents))
		for j, a := range agents {
			before[j] = a.node.Stats().AnnouncementsReceived
		}
		start := time.Now()
		if err := agents[0].node.Announce(marker); err != nil {
			b.Fatal(err)
		}
		waitB(b, 60*time.Second, func() bool {
			for j, a := range agents {
				if a.node.Stats().AnnouncementsReceived == before[j] {
					return false
				}
			}
			return true
		})
		serf := time.Since(start)

		raw := f.bundle(fmt.Sprintf("bench-%d", i), 1, f.signer, 1<<20)
		b.StartTimer()
		start = time.Now()
		v, err := agents[0].Publish(raw)
		if err != nil {
			b.Fatal(err)
		}
		done := make([]time.Duration, len(agents))
		waitB(b, 60*time.Second, func() bool {
			all := true
			for j, a := range agents {
				if done[j] == 0 {
					if a.store.Has(v.ManifestDigest) {
						done[j] = time.Since(start)
					} else {
						all = false
					}
				}
			}
			return all
		})
		verified := time.Since(start)
		slices.Sort(done)
		b.Logf("holders over time: first %s, 10th %s, 25th %s, 40th %s, last %s", done[1], done[10], done[25], done[40], done[len(done)-1])
		b.StopTimer()
		copies := float64(agents[0].blobs.Stats().ModuleBytesServed) / float64(len(v.Module))
		serfs = append(serfs, float64(serf.Microseconds())/1000)
		verifieds = append(verifieds, float64(verified.Microseconds())/1000)
		copiesAll = append(copiesAll, copies)
		b.Logf("serf %s, verified %s, origin copies %.1f", serf.Round(time.Millisecond), verified.Round(time.Millisecond), copies)
		f.stopAll()
		b.StartTimer()
	}
}

func waitMembersB(b *testing.B, agents []*Agent, n int) {
	waitB(b, 120*time.Second, func() bool { return allAlive(agents, n) })
}

func waitB(b *testing.B, within time.Duration, ok func() bool) {
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			b.Fatalf("not within %s", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
