package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/internal/testutil"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// testFleet runs agents in this process on loopback, each with its own
// state directory and simulated kernel, with shrunken gossip timers.
type testFleet struct {
	t        testing.TB
	dir      string
	keyFile  string
	keyring  string
	signer   *signing.Signer
	mu       sync.Mutex
	agents   map[string]*Agent
	stops    map[string]func()
	seedAddr string
	tuning   gossip.Tuning // gossip.LocalFleetTuning unless a benchmark sets another
	// antiEntropy is the agents' pull interval (1 s in tests).
	antiEntropy time.Duration
	// options, when set, adjusts every agent's Options.
	options func(*Options)
	// network, when set, carries the agents' gossip in memory instead of
	// on loopback sockets.
	network *gossip.MemNetwork
}

func newTestFleet(t testing.TB) *testFleet {
	t.Helper()
	f := &testFleet{t: t, dir: t.TempDir(), agents: map[string]*Agent{}, stops: map[string]func(){}}
	f.tuning, f.antiEntropy = gossip.LocalFleetTuning(), time.Second
	t.Cleanup(f.stopAll)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	f.keyFile = filepath.Join(f.dir, "gossip.keys")
	if err := os.WriteFile(f.keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.signer, err = signing.GenerateSigner("Fleet Release <release@example.com>", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	pub, _ := f.signer.Public().Armored()
	f.keyring = filepath.Join(f.dir, "trusted.asc")
	if err := os.WriteFile(f.keyring, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// config is node name's configuration; the first node started is the
// seed the others join.
func (f *testFleet) config(name string) Config {
	d := filepath.Join(f.dir, name)
	cfg := DefaultConfig()
	cfg.NodeName = name
	cfg.Bind = "127.0.0.1:0"
	cfg.HTTP = "127.0.0.1:0"
	// Every agent of a test fleet connects from 127.0.0.1, as many hosts
	// behind one address would: the cap per source would count them all
	// as one (TestFiftyAgentRollouts saw thousands of refusals with 64).
	cfg.HTTPMaxConnectionsPerSource = cfg.HTTPMaxConnections
	cfg.ControlSocket = filepath.Join(d, "ctl.sock")
	cfg.GossipKeyFile = f.keyFile
	cfg.Keyring = f.keyring
	cfg.StateDir = filepath.Join(d, "state")
	cfg.Kernel = "sim:" + filepath.Join(d, "kernel")
	cfg.UnsafeSimulatedKernel = true
	cfg.AntiEntropy = f.antiEntropy
	cfg.LogLevel = "warn"
	if f.seedAddr != "" {
		cfg.Join = []string{f.seedAddr}
	}
	return cfg
}

func (f *testFleet) start(cfg Config) *Agent {
	f.t.Helper()
	opts := Options{Config: cfg, Version: "test", Tuning: f.tuning, Logger: warnLogger(f.t), RolloutTick: 100 * time.Millisecond, network: f.network}
	if f.options != nil {
		f.options(&opts)
	}
	a, err := New(withSimKernel(f.t, opts))
	if err != nil {
		f.t.Fatalf("start %s: %v", cfg.NodeName, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				f.t.Logf("agent %s stopped: %v", cfg.NodeName, err)
			}
		case <-time.After(30 * time.Second):
			f.t.Errorf("agent %s did not stop", cfg.NodeName)
		}
	}
	f.mu.Lock()
	f.agents[cfg.NodeName], f.stops[cfg.NodeName] = a, stop
	if f.seedAddr == "" {
		f.seedAddr = a.GossipAddr()
	}
	f.mu.Unlock()
	return a
}

// withSimKernel opens the simulated kernel a test configuration names
// ("sim:DIR") and passes it in, with its injected health faults, as
// cmd/splicefleet does: the agent does not open it itself.
func withSimKernel(t testing.TB, o Options) Options {
	t.Helper()
	dir, ok := strings.CutPrefix(o.Config.Kernel, "sim:")
	if !ok || o.Kernel != nil {
		return o
	}
	k, err := sim.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	o.Kernel = k
	if o.KernelHealth == nil {
		o.KernelHealth = k.HealthCheck
	}
	return o
}

// testKernel opens the simulated kernel "sim:DIR" names, for a test
// that works on the host's patches beside an agent.
func testKernel(spec string) (*HostKernel, error) {
	dir, ok := strings.CutPrefix(spec, "sim:")
	if !ok {
		return nil, fmt.Errorf("test kernel %q: want sim:DIR", spec)
	}
	k, err := sim.Open(dir)
	if err != nil {
		return nil, err
	}
	return NewHostKernel(k, true), nil
}

// stopAll stops every running agent at once (each leave waits for its
// broadcast, so one after another would take long).
func (f *testFleet) stopAll() {
	f.mu.Lock()
	stops := f.stops
	f.stops = map[string]func(){}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range stops {
		wg.Add(1)
		go func() { defer wg.Done(); s() }()
	}
	wg.Wait()
}

func (f *testFleet) stop(name string) {
	f.mu.Lock()
	s := f.stops[name]
	delete(f.stops, name)
	delete(f.agents, name)
	f.mu.Unlock()
	if s != nil {
		s()
	}
}

func (f *testFleet) startN(n int) []*Agent {
	var out []*Agent
	for i := range n {
		out = append(out, f.start(f.config(fmt.Sprintf("node-%02d", i))))
	}
	return out
}

// bundle makes a signed bundle for the simulated kernel's release.
func (f *testFleet) bundle(id string, version uint64, signer *signing.Signer, padding int) []byte {
	f.t.Helper()
	name := "lp_" + id
	mod := fakemodule.Build(fakemodule.Options{Name: name, Livepatch: true, Functions: []string{"f"}, Padding: padding})
	b, err := splice.New(splice.Manifest{ID: id, Version: version, Target: splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"},
		Module: splice.ModuleRef{Name: name}, Functions: []string{"f"}, Created: time.Now().Add(-time.Minute)}, mod)
	if err != nil {
		f.t.Fatal(err)
	}
	sig, err := signer.Sign(b.Manifest, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := b.AddSignature(sig); err != nil {
		f.t.Fatal(err)
	}
	raw, err := b.Bytes()
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

// eventually retries check until it passes, or fails the test after
// within, stretched by the machine's factor (testutil.Within).
func eventually(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	testutil.Eventually(t, within, what, check)
}

func holdAll(agents []*Agent, digest string) error {
	missing := 0
	for _, a := range agents {
		if !a.store.Has(digest) {
			missing++
		}
	}
	if missing > 0 {
		return fmt.Errorf("%d of %d agents do not hold it", missing, len(agents))
	}
	return nil
}

func waitMembers(t *testing.T, agents []*Agent, n int) {
	t.Helper()
	eventually(t, 90*time.Second, "cluster formed", func() error {
		for _, a := range agents {
			alive := 0
			for _, m := range a.Members() {
				if m.Status == "alive" {
					alive++
				}
			}
			if alive != n {
				return fmt.Errorf("%s sees %d alive members, want %d", a.Name(), alive, n)
			}
		}
		return nil
	})
}

// TestTwentyAgents: a bundle published at one agent reaches all twenty,
// verified, and the fleet status shows every host holding it.
func TestTwentyAgents(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(20)
	start := time.Now()
	waitMembers(t, agents, 20)
	t.Logf("cluster of 20 formed in %s", time.Since(start).Round(time.Millisecond))
	raw := f.bundle("cve-fleet", 1, f.signer, 64<<10)
	start = time.Now()
	v, err := agents[7].Publish(raw)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "all 20 hold the bundle", func() error { return holdAll(agents, v.ManifestDigest) })
	t.Logf("all 20 hold it verified %s after publishing", time.Since(start).Round(time.Millisecond))
	eventually(t, 60*time.Second, "fleet status shows it", func() error {
		// Twenty agents under the race detector on a busy machine may
		// take longer than serf's default to answer; the CLI's
		// --timeout gives the same room.
		st, err := agents[0].FleetStatusQuery(context.Background(), testutil.Within(10*time.Second))
		if err != nil {
			return err
		}
		if len(st) != 20 {
			return fmt.Errorf("%d hosts in the fleet status", len(st))
		}
		for _, s := range st {
			if !s.Answered || s.Held != "1" || len(s.Bundles) != 1 || s.Bundles[0] != "cve-fleet@1" || s.Kernel != "6.1.0-56-cloud-amd64" || s.Status != "alive" {
				return fmt.Errorf("%s: %+v", s.Name, s)
			}
		}
		return nil
	})
	var fromPeers, fromOrigin uint64
	for _, a := range agents {
		st := a.fetcher.Stats()
		fromPeers += st.BytesFetchedFromPeers
		fromOrigin += st.BytesFetchedFromOrigin
	}
	t.Logf("module bytes: %d from peers, %d from the origin; origin served %d", fromPeers, fromOrigin, agents[7].blobs.Stats().BytesServed)
}

// quiet stores a bundle in a's store without announcing it, as if its
// announcement had been lost: only anti-entropy can spread it.
func (f *testFleet) quiet(a *Agent, raw []byte) *splice.Verified {
	f.t.Helper()
	b, err := splice.Decode(bytes.NewReader(raw))
	if err != nil {
		f.t.Fatal(err)
	}
	v, err := splice.Verify(b, a.policy.Load(), time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	if err := a.store.Put(v); err != nil {
		f.t.Fatal(err)
	}
	return v
}

// antiEntropyFetches reads splicefleet_anti_entropy_fetches_total from
// an agent's /metrics.
func antiEntropyFetches(t *testing.T, a *Agent) int {
	t.Helper()
	for line := range strings.Lines(scrape(t, a)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "splicefleet_anti_entropy_fetches_total "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s: %q", a.Name(), line)
			}
			return n
		}
	}
	t.Fatalf("%s exports no splicefleet_anti_entropy_fetches_total", a.Name())
	return 0
}

// fetchedThroughAntiEntropy waits until a's count of bundles fetched
// through anti-entropy is above was (it counts just after storing).
func fetchedThroughAntiEntropy(t *testing.T, a *Agent, was int) {
	t.Helper()
	eventually(t, 10*time.Second, a.Name()+" counts bundles fetched through anti-entropy", func() error {
		if n := antiEntropyFetches(t, a); n <= was {
			return fmt.Errorf("splicefleet_anti_entropy_fetches_total %d, was %d", n, was)
		}
		return nil
	})
}

// holdEvery waits until every agent holds every bundle.
func holdEvery(t *testing.T, what string, agents []*Agent, bundles ...*splice.Verified) {
	t.Helper()
	eventually(t, 60*time.Second, what, func() error {
		for _, v := range bundles {
			if err := holdAll(agents, v.ManifestDigest); err != nil {
				return fmt.Errorf("%s: %w", v.Manifest.ID, err)
			}
		}
		return nil
	})
}

// TestLateJoinerAndRestartCatchUp: anti-entropy brings every current
// bundle to a node that joins after the announcements, and to one that
// was down when they were made, including bundles whose announcement
// never reached anyone (serf replays its recent events to a member that
// joins, so only those prove anti-entropy); each counts what it learned
// that way.
func TestLateJoinerAndRestartCatchUp(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(3)
	waitMembers(t, agents, 3)
	first, err := agents[0].Publish(f.bundle("first", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	lost := f.quiet(agents[1], f.bundle("lost", 1, f.signer, 0))
	holdEvery(t, "three hold both", agents, first, lost)

	late := f.start(f.config("late"))
	holdEvery(t, "the late joiner catches up", []*Agent{late}, first, lost)
	fetchedThroughAntiEntropy(t, late, 0)

	cfg2 := agents[2].cfg
	f.stop(agents[2].Name())
	second, err := agents[0].Publish(f.bundle("second", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	missed := f.quiet(agents[0], f.bundle("missed", 1, f.signer, 0))
	restarted := f.start(cfg2)
	holdEvery(t, "the restarted agent catches up", []*Agent{restarted}, first, lost, second, missed)
	fetchedThroughAntiEntropy(t, restarted, 0)
}

// TestHealedPartitionCatchesUp: two halves of a fleet that hold
// different bundles (each announced on its own side, or not at all) are
// joined, as when a partition heals: every agent ends up holding every
// bundle, and every agent fetched some of them through anti-entropy
// after the heal.
func TestHealedPartitionCatchesUp(t *testing.T) {
	f := newTestFleet(t)
	sideA := f.startN(2)
	cfg := f.config("node-b0")
	cfg.Join = nil // a cluster of its own
	b0 := f.start(cfg)
	cfg = f.config("node-b1")
	cfg.Join = []string{b0.GossipAddr()}
	sideB := []*Agent{b0, f.start(cfg)}
	waitMembers(t, sideA, 2)
	waitMembers(t, sideB, 2)

	onA, err := sideA[0].Publish(f.bundle("side-a", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	onB, err := sideB[1].Publish(f.bundle("side-b", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	lostA := f.quiet(sideA[1], f.bundle("lost-a", 1, f.signer, 0))
	lostB := f.quiet(sideB[0], f.bundle("lost-b", 1, f.signer, 0))
	holdEvery(t, "side A holds its bundles", sideA, onA, lostA)
	holdEvery(t, "side B holds its bundles", sideB, onB, lostB)
	all := append(slices.Clone(sideA), sideB...)
	before := map[string]int{}
	for _, a := range all {
		before[a.Name()] = antiEntropyFetches(t, a)
	}

	if _, err := sideB[0].node.Join(t.Context(), []string{sideA[0].GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, all, 4)
	holdEvery(t, "after healing, every agent holds every bundle", all, onA, onB, lostA, lostB)
	for _, a := range all {
		fetchedThroughAntiEntropy(t, a, before[a.Name()])
	}
}

// TestUntrustedAnnouncementIsNeverDownloaded: an agent that trusts an
// extra key publishes a bundle signed only by it; the others refuse the
// manifest, count it, never download the module, and store nothing.
func TestUntrustedAnnouncementIsNeverDownloaded(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(3)
	stranger, err := signing.GenerateSigner("Stranger <x@example.com>", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.config("rogue")
	pub, _ := stranger.Public().Armored()
	cfg.Keyring = filepath.Join(f.dir, "rogue.asc")
	if err := os.WriteFile(cfg.Keyring, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	rogue := f.start(cfg)
	waitMembers(t, append(agents, rogue), 4)
	v, err := rogue.Publish(f.bundle("rogue", 1, stranger, 0))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the others refuse it", func() error {
		for _, a := range agents {
			if a.fetcher.Stats().VerificationFailures["signature"] == 0 {
				return fmt.Errorf("%s has not refused it yet", a.Name())
			}
		}
		return nil
	})
	for _, a := range agents {
		if a.store.Has(v.ManifestDigest) {
			t.Errorf("%s stored an untrusted bundle", a.Name())
		}
	}
	if got := rogue.blobs.Stats().ModuleBytesServed; got != 0 {
		t.Errorf("the module was downloaded: %d bytes served", got)
	}
}

// warnLogger sends an agent's warnings and errors to t.Log.
func warnLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testutil.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
}
