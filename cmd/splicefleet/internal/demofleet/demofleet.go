// Package demofleet runs a fleet of splicefleet agents inside one
// process, on loopback, each host with its own state folder and a
// SIMULATED kernel (package kmod/sim, a test double): what `splicefleet
// demo` shows, built from the same parts as a real fleet.
//
// [Start] makes a publisher's signing key and a gossip key in a folder,
// then starts the agents with agent.New and Run on 127.0.0.1 with ports
// the system picks, the first as the seed the others join, over real serf
// gossip with encryption and gossip timers shrunk for loopback
// ([Tuning]). Everything a host has lives under DIR/HOST: its state, its
// kernel and its control socket. [Fleet.Build] makes a real signed bundle
// whose module (built by internal/fakemodule) the simulated kernel loads;
// [Fleet.SignPlan] signs a rollout plan with the same key. A [Host] reads
// its simulated kernel and injects faults into it. [Fleet.Stop] ends every
// agent at once, each leaving the cluster.
//
// Nothing here changes the machine's kernel. Only cmd parses flags; this
// package takes [Options].
package demofleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// Options configure a local fleet.
type Options struct {
	// Dir holds the keys and one folder per host; it must exist.
	Dir string
	// Hosts is how many agents run (at least 1).
	Hosts int
	// Canaries is how many hosts, after the seed, carry the tag
	// ring=canary.
	Canaries int
	// Logger receives every agent's log (default: discarded).
	Logger *slog.Logger
	// Version is the agents' version string.
	Version string
	// Tuning sets the gossip timers (zero: gossip.LocalFleetTuning()).
	Tuning gossip.Tuning
	// RolloutTick is how often each agent judges its rollouts (default
	// 200ms).
	RolloutTick time.Duration
	// AntiEntropy is each agent's pull interval (default 2s).
	AntiEntropy time.Duration
}

// Files of a fleet's folder.
const (
	// SecretKeyFile is the publisher's secret signing key, unprotected,
	// so operator commands can be signed from another terminal.
	SecretKeyFile = "publisher.sec.asc"
	// KeyringFile is the publisher's public key: every agent's keyring.
	KeyringFile = "publisher.pub.asc"
	// GossipKeyFile is the cluster's gossip encryption key.
	GossipKeyFile = "gossip.keys"
)

// Fleet is a running local fleet.
type Fleet struct {
	dir    string
	signer *signing.Signer
	log    *slog.Logger
	// Hosts in start order; Hosts[0] is the seed.
	Hosts []*Host

	stopOnce sync.Once
	stopErr  error
}

// Host is one agent of the fleet and its simulated kernel.
type Host struct {
	Name string
	// Ring is the host's ring tag ("" for none).
	Ring  string
	Agent *agent.Agent
	// Dir is the host's folder; ControlSocket is its control API.
	Dir           string
	ControlSocket string

	kernel *sim.Kernel
	cancel context.CancelFunc
	exited chan struct{} // closed when Run returned
	err    error         // what Run returned
}

// Start makes the keys and starts the agents; the first is the seed the
// others join. It returns once every agent runs; see WaitFormed for the
// cluster.
func Start(o Options) (*Fleet, error) {
	if o.Hosts < 1 || o.Canaries < 0 || o.Canaries >= o.Hosts {
		return nil, fmt.Errorf("local fleet: %d hosts with %d canaries: want at least one host and fewer canaries than hosts", o.Hosts, o.Canaries)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tuning == (gossip.Tuning{}) {
		o.Tuning = gossip.LocalFleetTuning()
	}
	if o.RolloutTick <= 0 {
		o.RolloutTick = 200 * time.Millisecond
	}
	if o.AntiEntropy <= 0 {
		o.AntiEntropy = 2 * time.Second
	}
	f := &Fleet{dir: o.Dir, log: o.Logger}
	if err := f.makeKeys(); err != nil {
		return nil, err
	}
	width := max(2, len(strconv.Itoa(o.Hosts)))
	for i := range o.Hosts {
		name := fmt.Sprintf("host-%0*d", width, i+1)
		ring := ""
		if i >= 1 && i <= o.Canaries {
			ring = "canary"
		}
		h, err := f.start(o, name, ring)
		if err != nil {
			return nil, errors.Join(err, f.Stop())
		}
		f.Hosts = append(f.Hosts, h)
	}
	return f, nil
}

// makeKeys writes the publisher's key pair and the gossip key.
func (f *Fleet) makeKeys() error {
	s, err := signing.GenerateSigner("splicefleet demo publisher <publisher@demo.invalid>", time.Now().Add(-time.Minute))
	if err != nil {
		return err
	}
	pub, err := s.Public().Armored()
	if err != nil {
		return err
	}
	sec, err := s.ArmoredSecret(nil)
	if err != nil {
		return err
	}
	gk, err := gossip.GenerateKey()
	if err != nil {
		return err
	}
	for _, w := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{KeyringFile, pub, 0o644}, {SecretKeyFile, sec, 0o600}, {GossipKeyFile, []byte(gk + "\n"), 0o600}} {
		if err := os.WriteFile(filepath.Join(f.dir, w.name), w.data, w.mode); err != nil {
			return fmt.Errorf("local fleet: %w", err)
		}
	}
	f.signer = s
	return nil
}

func (f *Fleet) start(o Options, name, ring string) (*Host, error) {
	dir := filepath.Join(f.dir, name)
	cfg := agent.DefaultConfig()
	cfg.NodeName = name
	cfg.Bind = "127.0.0.1:0"
	cfg.HTTP = "127.0.0.1:0"
	// Every host of the fleet connects from 127.0.0.1: the cap per
	// source would count them all as one.
	cfg.HTTPMaxConnectionsPerSource = cfg.HTTPMaxConnections
	cfg.ControlSocket = filepath.Join(dir, "control.sock")
	cfg.GossipKeyFile = filepath.Join(f.dir, GossipKeyFile)
	cfg.Keyring = filepath.Join(f.dir, KeyringFile)
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Kernel = "sim:" + filepath.Join(dir, "kernel")
	// The demo fleet runs the simulated kernel, and its plans say
	// allow_simulated.
	cfg.UnsafeSimulatedKernel = true
	cfg.AntiEntropy = o.AntiEntropy
	if ring != "" {
		cfg.Tags = map[string]string{rollout.RingTag: ring}
	}
	if len(f.Hosts) > 0 {
		cfg.Join = []string{f.Hosts[0].Agent.GossipAddr()}
	}
	k, err := sim.Open(filepath.Join(dir, "kernel"))
	if err != nil {
		return nil, err
	}
	a, err := agent.New(agent.Options{Config: cfg, Version: o.Version, Logger: o.Logger, Tuning: o.Tuning, RolloutTick: o.RolloutTick,
		Kernel: k, KernelHealth: k.HealthCheck})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Host{Name: name, Ring: ring, Agent: a, Dir: dir, ControlSocket: cfg.ControlSocket, kernel: k, cancel: cancel, exited: make(chan struct{})}
	go func() {
		h.err = a.Run(ctx)
		close(h.exited)
	}()
	return h, nil
}

// Publisher is the public key that signs the fleet's bundles and plans.
func (f *Fleet) Publisher() *signing.Key { return f.signer.Public() }

// Seed is the host the others joined.
func (f *Fleet) Seed() *Host { return f.Hosts[0] }

// Dir is the fleet's folder.
func (f *Fleet) Dir() string { return f.dir }

// Canaries are the hosts of the canary ring.
func (f *Fleet) Canaries() []*Host {
	var out []*Host
	for _, h := range f.Hosts {
		if h.Ring == "canary" {
			out = append(out, h)
		}
	}
	return out
}

// WaitFormed waits until every agent sees every host alive.
func (f *Fleet) WaitFormed(ctx context.Context) error {
	for {
		var behind []string
		for _, h := range f.Hosts {
			alive := 0
			for _, m := range h.Agent.Members() {
				if m.Status == "alive" {
					alive++
				}
			}
			if alive != len(f.Hosts) {
				behind = append(behind, fmt.Sprintf("%s sees %d", h.Name, alive))
			}
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster of %d not formed: %s: %w", len(f.Hosts), strings.Join(behind[:min(3, len(behind))], ", "), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends every agent at once (one after another, each leave would
// wait for its own broadcast) and waits for each to leave the cluster and
// close its listeners. It is safe to call more than once.
func (f *Fleet) Stop() error {
	f.stopOnce.Do(func() {
		var mu sync.Mutex
		var errs []error
		var wg sync.WaitGroup
		for _, h := range f.Hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.cancel()
				select {
				case <-h.exited:
					// A leave that timed out (everyone was leaving at
					// once) still stopped the agent.
					if h.err != nil {
						f.log.Warn("agent stopped", "node", h.Name, "err", h.err)
					}
				case <-time.After(20 * time.Second):
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s did not stop within 20s", h.Name))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		f.stopErr = errors.Join(errs...)
	})
	return f.stopErr
}

// Patch describes a bundle to build for the simulated kernel.
type Patch struct {
	ID          string
	Version     uint64
	Module      string   // the livepatch module's name
	Functions   []string // the kernel functions it replaces
	Description string
}

// Build makes a bundle signed by the fleet's publisher: a livepatch
// module for the simulated kernel's release, wrapped and signed as
// `splicefleet create` and `sign` would.
func (f *Fleet) Build(p Patch) ([]byte, error) {
	mod := fakemodule.Build(fakemodule.Options{Name: p.Module, Livepatch: true, Functions: p.Functions})
	now := time.Now()
	b, err := splice.New(splice.Manifest{ID: p.ID, Version: p.Version, Description: p.Description,
		Target: splice.Target{Release: sim.DefaultRelease, Arch: sim.DefaultArch}, Module: splice.ModuleRef{Name: p.Module},
		Functions: p.Functions, Created: now.Add(-time.Minute)}, mod)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", p.ID, err)
	}
	sig, err := f.signer.Sign(b.Manifest, now)
	if err != nil {
		return nil, err
	}
	if _, err := b.AddSignature(sig); err != nil {
		return nil, err
	}
	return b.Bytes()
}

// SignPlan signs a rollout plan with the fleet's publisher key.
func (f *Fleet) SignPlan(p *rollout.Plan) (*rollout.Document, error) {
	body, err := p.Encode()
	if err != nil {
		return nil, err
	}
	sig, err := f.signer.Sign(body, time.Now())
	if err != nil {
		return nil, err
	}
	return rollout.SignPlan(body, [][]byte{sig}), nil
}

// Running reports whether the host's simulated kernel runs the livepatch
// module (enabled, in /sys/kernel/livepatch).
func (h *Host) Running(module string) (bool, error) {
	lps, err := h.kernel.Livepatches()
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(lps, func(lp kmod.Livepatch) bool { return lp.Name == module && lp.Enabled }), nil
}

// EverLoaded reports whether the host's simulated kernel ever started
// enabling the module, by its log ("livepatch: enabling patch ..."), as
// one would read dmesg. The log is bounded; a short run keeps it all.
func (h *Host) EverLoaded(module string) (bool, error) {
	recs, _, err := h.kernel.Log(0)
	if err != nil {
		return false, err
	}
	want := "livepatch: enabling patch '" + module + "'"
	return slices.ContainsFunc(recs, func(r kmod.LogRecord) bool { return strings.Contains(r.Message, want) }), nil
}

// SetFaults injects faults into the host's simulated kernel; a module
// with HealthFail fails the host's health check while it is loaded,
// which is what a failing health command looks like to the agent.
func (h *Host) SetFaults(f sim.Faults) error { return sim.SetFaults(h.kernel.Dir(), f) }
