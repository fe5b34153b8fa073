package agent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/internal/testmod"
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
	cfg.ControlSocket = filepath.Join(d, "ctl.sock")
	cfg.GossipKeyFile = f.keyFile
	cfg.Keyring = f.keyring
	cfg.StateDir = filepath.Join(d, "state")
	cfg.Kernel = "sim:" + filepath.Join(d, "kernel")
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
	a, err := New(opts)
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
	mod := testmod.Build(testmod.Options{Name: name, Livepatch: true, Functions: []string{"f"}, Padding: padding})
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

// eventually retries check until it passes or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
		st, err := agents[0].FleetStatusQuery(context.Background(), 2*time.Second)
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

// TestLateJoinerAndRestartCatchUp: anti-entropy brings a node that joins
// after the announcement, and one that was down when it was made, up to
// date.
func TestLateJoinerAndRestartCatchUp(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(3)
	waitMembers(t, agents, 3)
	first, err := agents[0].Publish(f.bundle("first", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "three hold it", func() error { return holdAll(agents, first.ManifestDigest) })

	late := f.start(f.config("late"))
	eventually(t, 60*time.Second, "the late joiner catches up", func() error { return holdAll([]*Agent{late}, first.ManifestDigest) })

	cfg2 := agents[2].cfg
	f.stop(agents[2].Name())
	second, err := agents[0].Publish(f.bundle("second", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	restarted := f.start(cfg2)
	eventually(t, 60*time.Second, "the restarted agent catches up", func() error {
		return holdAll([]*Agent{restarted}, second.ManifestDigest)
	})
	if !restarted.store.Has(first.ManifestDigest) {
		t.Fatal("the restarted agent lost what it held")
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
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
