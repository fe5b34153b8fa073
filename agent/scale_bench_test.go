package agent

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
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
// (default 500) in this process and measures one staged rollout to every
// host and one halt:
//
//   - form-s: until every agent sees every other alive (polled every
//     second);
//   - done-s: from publishing a bundle with a plan (canary ring, 10%,
//     100%) until the last agent judges it done (the time the agent
//     judged, not the poll's); every kernel must then run it;
//   - halt-s: from publishing a bundle whose canary fails its health
//     check until the last agent judges the rollout halted;
//   - heap-MB and MB/agent: the Go heap in use with the fleet formed;
//     rss-MB and peak-MB: the process's resident set at the end and its
//     high-water mark (VmRSS, VmHWM).
//
// The agents gossip over a gossip.MemNetwork: every serf and memberlist
// message goes through the protocol, encrypted, as on the wire, but in
// memory rather than through a thousand loopback sockets; bundles, plans
// and anti-entropy travel over loopback TCP as in production. The gossip
// timers are serf's LAN timers with the failure detector slowed as on a
// WAN (scaleTuning): hundreds of agents share the machine's cores, so
// each runs at a fraction of a core no real host is held to. Gossip
// fan-out and interval, retransmissions and the rollout tick (1 s) are
// the production ones, so propagation is not flattered.
//
// The agents send their gossip uncompressed (gossip.Tuning.Uncompressed):
// memberlist's LZW compressor allocates about 64 KB per packet, and with
// hundreds of agents in one process its garbage was most of the CPU time
// (a profile at 200 agents: 70% of all bytes allocated, and the garbage
// collector 60% of the CPU). The messages, their packing into packets
// and their timers are the same; the bytes on the network are reported
// (KB/agent) so the cost of sending them uncompressed shows.
//
// For comparison, SPLICEFLEET_SCALE_SOCKETS=1 puts the gossip on
// loopback UDP and TCP sockets, SPLICEFLEET_SCALE_LAN=1 restores the
// LAN failure detector and SPLICEFLEET_SCALE_COMPRESSED=1 compression.
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
		f.tuning, f.antiEntropy = scaleTuning(), DefaultConfig().AntiEntropy
		f.network = gossip.NewMemNetwork()
		if os.Getenv("SPLICEFLEET_SCALE_LAN") != "" {
			f.tuning = gossip.DefaultTuning()
		}
		if os.Getenv("SPLICEFLEET_SCALE_SOCKETS") != "" {
			f.network = nil
		}
		if os.Getenv("SPLICEFLEET_SCALE_COMPRESSED") != "" {
			f.tuning.Uncompressed = false
		}
		warns := &countingHandler{counts: map[string]int{}}
		var mu sync.Mutex
		learned := map[string]time.Time{} // node -> first judgement of a rollout
		// judged is when each agent first judged a rollout in a state, by
		// "ID/state": the times come from the agents, so a slow poll on a
		// starved machine does not stretch them.
		judged := map[string]map[string]time.Time{}
		f.options = func(o *Options) {
			o.RolloutTick = time.Second
			o.Logger = slog.New(warns)
			name := o.Config.NodeName
			o.OnRollout = func(st rollout.Status) {
				now := time.Now()
				mu.Lock()
				defer mu.Unlock()
				if _, ok := learned[name]; !ok && st.ID == "scale-good" {
					learned[name] = now
				}
				state := st.State
				if rollout.Ended(state) {
					state = rollout.Halted // halted, rolled back or revoked
				}
				key := st.ID + "/" + state
				if judged[key] == nil {
					judged[key] = map[string]time.Time{}
				}
				if _, ok := judged[key][name]; !ok {
					judged[key][name] = now
				}
			}
		}
		// last is when the last agent first judged rollout id in state.
		last := func(id, state string) time.Time {
			mu.Lock()
			defer mu.Unlock()
			var t time.Time
			for _, at := range judged[id+"/"+state] {
				if at.After(t) {
					t = at
				}
			}
			return t
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
			if (i+1)%100 == 0 {
				progressf("%d agents started after %s", i+1, time.Since(start).Round(time.Second))
			}
		}
		progressf("%d agents started in %s", n, time.Since(start).Round(time.Second))
		lastLog := time.Now()
		waitEvery(b, 30*time.Minute, time.Second, func() bool {
			low := fewestAlive(agents, n)
			if time.Since(lastLog) >= 30*time.Second {
				lastLog = time.Now()
				dropped, sent := drops(f)
				progressf("after %s: the agent seeing fewest alive sees %d; packets dropped %d of %d; %s",
					time.Since(start).Round(time.Second), low, dropped, sent, notAlive(agents))
			}
			return low == n
		})
		form := time.Since(start)
		_, sentForm := drops(f)
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
		lastLog = time.Now()
		waitEvery(b, 20*time.Minute, 100*time.Millisecond, func() bool {
			if time.Since(lastLog) >= 15*time.Second {
				lastLog = time.Now()
				progressf("after %s: %s", time.Since(start).Round(time.Second), progress(agents, good.Digest))
			}
			return allJudged(agents, good.Digest, rollout.Done)
		})
		done := last("scale-good", rollout.Done).Sub(start)
		_, sentDone := drops(f)
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
		waitEvery(b, 20*time.Minute, 100*time.Millisecond, func() bool { return allJudged(agents, bad.Digest, rollout.Halted) })
		halt := last("scale-bad", rollout.Halted).Sub(start)
		_, sentHalt := drops(f)
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
		rss, peak := procStatusMB(b, "VmRSS"), procStatusMB(b, "VmHWM")
		dropped, sent := drops(f)
		b.ReportMetric(form.Seconds(), "form-s")
		b.ReportMetric(done.Seconds(), "done-s")
		b.ReportMetric(halt.Seconds(), "halt-s")
		b.ReportMetric(heap, "heap-MB")
		b.ReportMetric(heap/float64(n), "MB/agent")
		b.ReportMetric(rss, "rss-MB")
		b.ReportMetric(peak, "peak-MB")
		b.Logf("%d agents: formed in %s, rollout done in %s, halt in %s, heap %.0f MB, RSS %.0f MB (peak %.0f MB); gossip packets dropped %d of %d",
			n, form.Round(time.Second), done.Round(time.Second), halt.Round(100*time.Millisecond), heap, rss, peak, dropped, sent)
		if f.network != nil {
			b.Logf("gossip packets per agent: %.0f to form, %.0f for the rollout, %.0f for the halt; %.0f KB per agent in all (compressed: %v)",
				float64(sentForm)/float64(n), float64(sentDone-sentForm)/float64(n), float64(sentHalt-sentDone)/float64(n),
				float64(f.network.Bytes())/1024/float64(n), !f.tuning.Uncompressed)
			b.ReportMetric(float64(f.network.Bytes())/1024/float64(n), "KB/agent")
		}
		b.Logf("warnings and errors logged: %s", warns.summary())
		f.stopAll()
		b.StartTimer()
	}
}

// progressf reports progress on stderr at once: a benchmark's own log
// appears only when it ends.
func progressf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// drops is the memory network's count of dropped and sent packets.
func drops(f *testFleet) (uint64, uint64) {
	if f.network == nil {
		return 0, 0
	}
	return f.network.Dropped()
}

// notAlive names, for the first agent that does not see every other
// alive, the members it sees otherwise.
func notAlive(agents []*Agent) string {
	for _, a := range agents {
		var out []string
		listed := 0
		a.node.EachMember(func(name, status string, _ uint64, _ map[string]string) {
			listed++
			if status != "alive" {
				out = append(out, name+" "+status)
			}
		})
		if len(out) > 0 || listed != len(agents) {
			return fmt.Sprintf("%s lists %d, not alive: %v", a.Name(), listed, out)
		}
	}
	return "every agent lists every other alive"
}

// scaleTuning is serf's LAN timers with memberlist's WAN failure
// detector (probe every 5 s, 3 s to answer, suspicion multiplier 6):
// what an operator sets for hosts that answer slowly, here because each
// of hundreds of agents gets a sliver of a shared core. Gossip interval
// and fan-out, retransmissions and push/pull stay the LAN ones. Packets
// go uncompressed (see BenchmarkScaleRollout).
func scaleTuning() gossip.Tuning {
	t := gossip.DefaultTuning()
	t.ProbeInterval, t.ProbeTimeout, t.SuspicionMult = 5*time.Second, 3*time.Second, 6
	t.Uncompressed = true
	return t
}

// allAlive reports whether every agent sees n members alive.
func allAlive(agents []*Agent, n int) bool { return fewestAlive(agents, n) == n }

// fewestAlive returns the fewest alive members any agent sees.
func fewestAlive(agents []*Agent, n int) int {
	low := n
	for _, a := range agents {
		alive := 0
		a.node.EachMember(func(_, status string, _ uint64, _ map[string]string) {
			if status == "alive" {
				alive++
			}
		})
		low = min(low, alive)
	}
	return low
}

// waitEvery calls ok every interval until it holds; the fleet benchmarks'
// waitB polls every 10 ms, which at hundreds of agents would take a core
// of its own.
func waitEvery(b *testing.B, within, interval time.Duration, ok func() bool) {
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			b.Fatalf("not within %s", within)
		}
		time.Sleep(interval)
	}
}

// procStatusMB reads a size field of /proc/self/status in MB.
func procStatusMB(b *testing.B, field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatalf("/proc/self/status %s: %v", field, err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("/proc/self/status has no %s", field)
	return 0
}

// countingHandler counts the warnings and errors hundreds of agents log,
// by the start of their message, instead of printing them all.
type countingHandler struct {
	mu     sync.Mutex
	counts map[string]int
}

func (h *countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *countingHandler) WithGroup(string) slog.Handler                { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	if len(msg) > 48 {
		msg = msg[:48]
	}
	h.mu.Lock()
	h.counts[r.Level.String()+" "+msg]++
	h.mu.Unlock()
	return nil
}

// summary lists the ten most frequent messages with their counts.
func (h *countingHandler) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.counts) == 0 {
		return "none"
	}
	keys := slices.Collect(maps.Keys(h.counts))
	slices.SortFunc(keys, func(a, b string) int { return h.counts[b] - h.counts[a] })
	var out []string
	for _, k := range keys[:min(25, len(keys))] {
		out = append(out, fmt.Sprintf("%q × %d", k, h.counts[k]))
	}
	return strings.Join(out, "; ")
}

// progress says how many agents judge a rollout in each state, and why
// one of those not done judges so.
func progress(agents []*Agent, digest string) string {
	states := map[string]int{}
	why := ""
	for _, a := range agents {
		a.ro.mu.Lock()
		st, ok := a.ro.status[digest]
		a.ro.mu.Unlock()
		states[st.State]++
		if ok && st.State != rollout.Done && why == "" {
			why = fmt.Sprintf("%s: stage %d: %s", a.Name(), st.Open+1, st.Why)
			for _, sg := range st.Stages {
				if len(sg.WaitingFor) > 0 {
					why += fmt.Sprintf(" (%s waits for %v)", sg.Name, sg.WaitingFor)
				}
			}
		}
	}
	return fmt.Sprintf("%v; %s", states, why)
}

// allJudged reports whether every agent's last judgement of the rollout
// is state, without judging again (a status request would).
func allJudged(agents []*Agent, digest, state string) bool {
	for _, a := range agents {
		a.ro.mu.Lock()
		st, ok := a.ro.status[digest]
		a.ro.mu.Unlock()
		if !ok || !rollout.Is(st.State, state) {
			return false
		}
	}
	return true
}
