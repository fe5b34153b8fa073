package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/splicefleet/splicefleet/distrib"
	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/hostkey"
	"github.com/splicefleet/splicefleet/internal/bounded"
	"github.com/splicefleet/splicefleet/internal/fileperm"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/metrics"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// Tags the agent sets on its gossip member, beside the user's tags. They
// are short because serf allows 512 bytes of tags in all.
const (
	TagKernel  = "sf.kr"   // kernel release
	TagBuildID = "sf.bid"  // first 16 hex digits of the kernel build id
	TagArch    = "sf.arch" // uname -m
	TagVersion = "sf.v"    // agent version
	TagHTTP    = "sf.http" // host:port of the blob service and index
	TagHeld    = "sf.held" // bundles held, verified
	TagSim     = "sf.sim"  // "1" when the kernel is the simulated test double
	TagNoLP    = "sf.nolp" // "1" when the kernel has no livepatch support
	TagApplied = "sf.ap"   // the host's applied patch stack, "id@version,..." (cut to fit, "+N" more)
	TagHostKey = "sf.hk"   // the host key's public half (hostkey.Encode)
)

// seedCopies is how many copies of a module an agent uploads within the
// seeding window before it refers fetchers to the peers it served.
const seedCopies = 3

// Options are what New needs beyond the Config.
type Options struct {
	Config Config
	// Version is the agent's version, gossiped in its tags.
	Version string
	// Revision is the commit the agent was built from; with the Go
	// version, it is in splicefleet_build_info and the agent's answer to
	// fleet status.
	Revision string
	Logger   *slog.Logger
	// Tuning sets gossip timers (zero: serf's LAN defaults); tests shrink
	// them.
	Tuning gossip.Tuning
	// GossipKeys overrides Config.GossipKeyFile.
	GossipKeys [][]byte
	// Now is the clock (default time.Now).
	Now func() time.Time
	// RunHealth runs the configured health command (argv) until ctx ends;
	// cmd supplies it, because only cmd runs programs. Nil: the health
	// command is not run.
	RunHealth func(ctx context.Context, argv []string) error
	// Kernel is the kernel the agent patches. Nil: this machine's, which
	// the configuration must then name ("kernel: linux"). cmd opens the
	// simulated kernel of a "kernel: sim:DIR" configuration and passes
	// it here: the agent does not link the simulator.
	Kernel kmod.Kernel
	// KernelHealth, when set, is one more health check after an apply,
	// beside the agent's own and the health command: it fails the check
	// with its error. cmd feeds the simulated kernel's injected health
	// faults through it, for tests and the demo.
	KernelHealth func() error
	// RolloutTick is how often rollouts are judged beside the gossip
	// events that trigger a judgement (default 1s); tests shrink it.
	RolloutTick time.Duration
	// OnRollout, when set, hears every change of a rollout's state or
	// open stage, as this agent judges it.
	OnRollout func(rollout.Status)
	// decodes, when set (by tests only), makes the agent stand in for an
	// older build that decodes protocol versions up to it.
	decodes uint8
	// kernelRoot, when set (by tests only), is the root the agent reads
	// its own capabilities through (proc/self/status) instead of "/".
	kernelRoot string
	// network, when set (by tests and benchmarks only), puts the gossip
	// member on an in-memory network instead of sockets; the blob
	// service stays on TCP.
	network *gossip.MemNetwork
	// peerClient, when set (by tests only), is the HTTP client the agent
	// asks its peers with, in place of distrib.DefaultFetchClient.
	peerClient *http.Client
}

// Agent is splicefleet's daemon on one host: a gossip member that hears
// announcements, fetches bundles from its peers, verifies and stores them,
// serves them on, and answers the local control API.
type Agent struct {
	cfg               Config
	log               *slog.Logger
	version, revision string
	decodes           uint8
	now               func() time.Time
	level             *slog.LevelVar
	peerClient        *http.Client // nil: distrib.DefaultFetchClient

	policy  atomic.Pointer[signing.Policy]
	hostKey *hostkey.Key  // signs this host's reports
	pins    *hostkey.Pins // the other hosts' keys
	kernel  *HostKernel
	store   *splice.Store
	fetcher *distrib.Fetcher
	blobs   *distrib.BlobServer
	node    *gossip.Node
	metrics *metrics.Metrics

	httpLn, ctlLn *connLimiter
	httpSrv       *http.Server
	ctlSrv        *http.Server

	mu       sync.Mutex
	userTags map[string]string
	wg       sync.WaitGroup

	// bundleQ and docQ admit the background fetches by the member they
	// were learned from (see queue.go); sem holds the running bundle
	// downloads.
	bundleQ, docQ *fetchQueue
	sem           chan struct{}
	// pulling is set while an anti-entropy round runs, bundles and
	// documents: a slow peer delays the next round, never the events.
	pulling, pullingDocs atomic.Bool

	// aeFetches counts bundles fetched because a peer's index listed
	// them (anti-entropy), not an announcement.
	aeFetches atomic.Uint64

	tagsPending atomic.Bool
	tagKick     chan struct{}
	startTags   map[string]string // the tags the member started with

	// forgotten are the bundles dropped from the store (retention.go).
	forgotten *forgotten

	ro        *rollouts
	watches   map[string]bool
	pulled    map[string]time.Time // members asked for their plans, when
	runHealth func(context.Context, []string) error
	// kernelHealth is Options.KernelHealth.
	kernelHealth func() error
	tick         time.Duration
	onRollout    func(rollout.Status)
}

// policyVerifier lets a reload swap the trust policy under the fetcher.
type policyVerifier struct{ a *Agent }

func (p policyVerifier) Verify(message []byte, signatures [][]byte) ([]string, error) {
	return p.a.policy.Load().Verify(message, signatures)
}

// VerifyAsOf judges a stored bundle before the host loads it again
// (splice.StoredVerifier).
func (p policyVerifier) VerifyAsOf(message []byte, signatures [][]byte, verifiedAt time.Time) ([]string, error) {
	return p.a.policy.Load().VerifyAsOf(message, signatures, verifiedAt)
}

// New sets the agent up: trust policy, kernel, store, listeners and the
// gossip member (not yet joined). Run starts it.
func New(opts Options) (*Agent, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, version: opts.Version, revision: opts.Revision, now: opts.Now, level: new(slog.LevelVar),
		bundleQ: newFetchQueue(), docQ: newFetchQueue(), sem: make(chan struct{}, fetchSlots), userTags: cfg.Tags,
		watches: map[string]bool{}, pulled: map[string]time.Time{}, tagKick: make(chan struct{}, 1), runHealth: opts.RunHealth, kernelHealth: opts.KernelHealth, tick: opts.RolloutTick, onRollout: opts.OnRollout, decodes: opts.decodes, peerClient: opts.peerClient}
	if a.tick <= 0 {
		a.tick = time.Second
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.version == "" {
		a.version = "dev"
	}
	a.log = opts.Logger
	if a.log == nil {
		a.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: a.level}))
	}
	a.log = a.log.With("node", cfg.NodeName)
	_ = a.level.UnmarshalText([]byte(cfg.LogLevel))
	p, err := loadPolicy(cfg, a.now)
	if err != nil {
		return nil, err
	}
	a.policy.Store(p)
	if err := checkKernelPrivileges(cfg, opts.kernelRoot); err != nil {
		return nil, err
	}
	if a.kernel, err = kernelFor(cfg, opts.Kernel, a.log); err != nil {
		return nil, err
	}
	if a.kernel.simulated {
		a.log.Warn("UNSAFE: this agent runs the simulated kernel, a test double (unsafe_simulated_kernel is set): it applies nothing to the real kernel, and takes part only in rollouts whose plan says allow_simulated",
			"kernel", cfg.Kernel)
	}
	if err := a.openState(); err != nil {
		return nil, err
	}
	if err := a.listen(); err != nil {
		return nil, err
	}
	a.metrics = a.newMetrics()
	if a.ro, err = openRollouts(a.engineDeps()); err != nil {
		a.closeListeners()
		return nil, err
	}
	if err := a.startGossip(opts); err != nil {
		a.closeListeners()
		return nil, err
	}
	a.node.HandleQuery(statusQuery, a.answerStatus)
	return a, nil
}

// engineDeps are what the rollout engine gets of the agent. The gossip
// member starts after the engine (its tags carry the engine's reports),
// so the engine reaches it through closures.
func (a *Agent) engineDeps() engineDeps {
	return engineDeps{
		nodeName: a.cfg.NodeName, stateDir: a.cfg.StateDir, join: a.cfg.Join,
		now: a.now, log: a.log, metrics: a.metrics, refused: a.metricRefused,
		trust: a.policy.Load, hostKey: a.hostKey, pins: a.pins, bundles: a.store,
		eachMember: func(f func(name, status string, version uint64, tags map[string]string)) { a.node.EachMember(f) },
		broadcast:  func(name string, payload []byte) error { return a.node.Broadcast(name, payload) },
		peers:      a.peers, client: a.fetcher.Client(),
		host: a, retention: a, tagsChanged: a.refreshTags, onRollout: a.onRollout,
		spawn: func(f func()) {
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				f()
			}()
		},
	}
}

// openState opens what the agent keeps in its state directory: the
// bundle store, the forgotten bundles, the host key and the keys pinned
// for other nodes. The rollouts are opened once the listeners are
// (openRollouts).
func (a *Agent) openState() (err error) {
	cfg := a.cfg
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return err
	}
	// Another user who can write the state directory can make root load
	// a module of their choosing: refuse it, as `splicefleet apply` does.
	if err := splice.CheckStateDir(cfg.StateDir); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	if a.store, err = splice.OpenStore(cfg.StateDir, a.log.With("component", "store")); err != nil {
		return err
	}
	if a.forgotten, err = openForgotten(filepath.Join(cfg.StateDir, "forgotten.json")); err != nil {
		return err
	}
	if a.hostKey, err = hostkey.LoadOrCreate(cfg.StateDir); err != nil {
		return err
	}
	if a.pins, err = hostkey.OpenPins(cfg.StateDir, a.now()); err != nil {
		return fmt.Errorf("pinned host keys: %w", err)
	}
	if _, _, err := a.pins.Observe(cfg.NodeName, a.hostKey.Public(), a.now()); err != nil {
		return fmt.Errorf("pin this host's own key: %w (the state directory holds another host key for node %s; was the host key replaced?)", err, cfg.NodeName)
	}
	return a.pins.Flush()
}

// listen opens the TCP listener (health, metrics, blob service) with the
// fetcher and blob server behind it, and the control socket. On failure
// nothing stays open.
func (a *Agent) listen() error {
	cfg := a.cfg
	httpLn, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTP, err)
	}
	tcpCap := tcpConnCap(cfg.HTTPMaxConnections, fdLimit())
	a.httpLn = newConnLimiter(httpLn, tcpCap, min(cfg.HTTPMaxConnectionsPerSource, tcpCap), a.log)
	// Fetches retry quickly: a refusal usually names peers that have the
	// bundle by the next try. Each agent uploads a module SeedCopies times
	// before it points fetchers at the peers it served.
	// Only members' advertised blob services are fetched from, and only
	// they take seed copies and are referred to.
	if a.fetcher, err = distrib.NewFetcher(distrib.FetcherOptions{Store: a.store, Verifier: policyVerifier{a}, Now: a.now, Logger: a.log,
		Self: a.advertisedHTTP(), Retries: 30, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		OnFetch: a.fetchObserved, Member: a.isMemberHTTP, Client: a.peerClient}); err != nil {
		_ = a.httpLn.Close()
		return err
	}
	a.blobs = distrib.NewBlobServer(a.store, distrib.BlobServerOptions{Logger: a.log, SeedCopies: seedCopies, Member: a.isMemberHTTP})
	ctlLn, err := listenControl(cfg.ControlSocket)
	if err != nil {
		_ = a.httpLn.Close()
		return err
	}
	a.ctlLn = newConnLimiter(ctlLn, controlConns, 0, a.log)
	return nil
}

// startGossip reads the gossip keys and starts the gossip member with
// the agent's tags.
func (a *Agent) startGossip(opts Options) error {
	cfg := a.cfg
	keys := opts.GossipKeys
	if keys == nil && !cfg.UnsafeNoGossipEncryption {
		var err error
		if keys, err = ReadGossipKeys(cfg.GossipKeyFile); err != nil {
			return fmt.Errorf("gossip keys: %w (make them with `splicefleet gossip-key generate > %s` on one host and copy the file to every host, mode 0600)", err, cfg.GossipKeyFile)
		}
	}
	host, port, _ := net.SplitHostPort(cfg.Bind)
	portN, _ := strconv.Atoi(port)
	gcfg := gossip.Config{NodeName: cfg.NodeName, BindAddr: host, BindPort: portN, Keys: keys,
		UnsafeNoEncryption: cfg.UnsafeNoGossipEncryption, Tuning: opts.Tuning, Logger: a.log.With("component", "gossip"),
		UserEvents: []string{rollout.ReportEvent, rollout.FailureEvent, rollout.DocEvent},
		Protocol:   min(uint8(cfg.Protocol), cmp.Or(opts.decodes, gossip.ProtocolMax)), Decodes: opts.decodes,
		SnapshotPath: filepath.Join(cfg.StateDir, "serf.snapshot"), Network: opts.network}
	if cfg.Advertise != "" {
		ah, ap, _ := net.SplitHostPort(cfg.Advertise)
		gcfg.AdvertiseAddr = ah
		gcfg.AdvertisePort, _ = strconv.Atoi(ap)
	}
	tags, err := a.tags()
	if err != nil {
		return err
	}
	gcfg.Tags, a.startTags = tags, tags
	a.node, err = gossip.Start(gcfg)
	return err
}

// loadPolicy reads the keyring and makes the trust policy. A keyring that
// another user may change (owned by neither root nor the agent's user, or
// writable by group or others, or in a folder that is) is refused: whoever
// can write it decides what code runs on this kernel.
func loadPolicy(cfg Config, now func() time.Time) (*signing.Policy, error) {
	if err := fileperm.CheckOwnedAndPrivate(cfg.Keyring, os.Geteuid()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("keyring of trusted publishers: %w: whoever can write it decides what code runs on this kernel", err)
	}
	raw, err := bounded.ReadFile(cfg.Keyring, signing.MaxKeyringSize)
	if err != nil {
		return nil, fmt.Errorf("keyring of trusted publishers: %w (put their public keys there: `gpg --export --armor KEYID`, or the .pub.asc of `splicefleet signing-key generate`)", err)
	}
	kr, err := signing.ReadKeyring(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Keyring, err)
	}
	return signing.NewPolicy(kr, cfg.Threshold, signing.WithClock(now))
}

func (a *Agent) closeListeners() {
	if a.httpLn != nil {
		_ = a.httpLn.Close()
	}
	if a.ctlLn != nil {
		_ = a.ctlLn.Close()
	}
}

// HTTPAddr is where the blob service, index and health check listen.
func (a *Agent) HTTPAddr() string { return a.httpLn.Addr().String() }

// GossipAddr is where the gossip member listens.
func (a *Agent) GossipAddr() string { return a.node.Addr() }

// Name is the node's name.
func (a *Agent) Name() string { return a.cfg.NodeName }

// tags builds the node's gossip tags: the user's, then splicefleet's.
func (a *Agent) tags() (map[string]string, error) {
	t := map[string]string{}
	a.mu.Lock()
	for k, v := range a.userTags {
		t[k] = v
	}
	a.mu.Unlock()
	if info, err := a.kernel.Info(); err == nil {
		t[TagKernel], t[TagArch] = info.Release, info.Arch
		t[TagBuildID] = info.BuildID[:min(16, len(info.BuildID))]
	}
	if info, err := a.kernel.Info(); err == nil && !info.Livepatch {
		t[TagNoLP] = "1"
	}
	if a.kernel.simulated {
		// Said even when the simulated kernel cannot say what it is: a
		// plan without allow_simulated leaves this host out.
		t[TagSim] = "1"
	}
	t[TagVersion] = a.version
	// The gossip member adds this tag itself; set here, it counts when
	// the applied stack is cut to fit.
	t[gossip.TagProtocol] = gossip.ProtocolRange(a.decodes)
	t[TagHTTP] = a.advertisedHTTP()
	t[TagHostKey] = hostkey.Encode(a.hostKey.Public())
	entries, _ := a.store.List()
	t[TagHeld] = strconv.Itoa(len(entries))
	if rep := a.ro.reports(); rep != "" {
		t[rollout.ReportsTag] = rep
	}
	if live, err := splice.LiveSummary(a.cfg.StateDir); err == nil && len(live) > 0 {
		// The stack in compact form, cut from the oldest end to fit
		// serf's 512 bytes of tags.
		for cut := 0; cut <= len(live); cut++ {
			v := strings.Join(live[cut:], ",")
			if cut > 0 {
				v = "+" + strconv.Itoa(cut) + "," + v
			}
			t[TagApplied] = v
			if gossip.CheckTags(t) == nil {
				break
			}
		}
	}
	return t, gossip.CheckTags(t)
}

// advertisedHTTP is the blob service address peers should dial.
func (a *Agent) advertisedHTTP() string {
	host, port, _ := net.SplitHostPort(a.httpLn.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if a.cfg.Advertise != "" {
			host, _, _ = net.SplitHostPort(a.cfg.Advertise)
		} else if h, _, err := net.SplitHostPort(a.cfg.Bind); err == nil && h != "0.0.0.0" && h != "" {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// tagDelay batches tag updates: while a bundle spreads, every agent's
// holdings change at once, and one gossiped update per agent is enough.
const tagDelay = time.Second

// refreshTagsSoon updates the tags after tagDelay, once however many
// times it is called in between.
func (a *Agent) refreshTagsSoon() {
	if !a.tagsPending.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(tagDelay, func() {
		a.tagsPending.Store(false)
		a.refreshTags()
	})
}

// refreshTags asks the tag updater to gossip the current tags. Updates
// are coalesced: however many are asked for while one is being gossiped,
// one more follows, computed fresh, so a stale set never overwrites a
// newer one.
func (a *Agent) refreshTags() {
	select {
	case a.tagKick <- struct{}{}:
	default:
	}
}

// updateTags is the tag updater; it runs until ctx ends. Besides the
// updates asked for, it looks at the host every five rollout ticks and
// gossips the tags when they changed without the agent: a patch applied
// or undone with the CLI on this host, or a kernel that changed under it.
func (a *Agent) updateTags(ctx context.Context) {
	check := time.NewTicker(5 * a.tick)
	defer check.Stop()
	last := a.startTags // as last gossiped
	for {
		var t map[string]string
		var err error
		select {
		case <-ctx.Done():
			return
		case <-a.tagKick:
			t, err = a.tags()
		case <-check.C:
			if t, err = a.tags(); err != nil || maps.Equal(t, last) {
				continue
			}
			a.log.Info("host state changed outside the agent; gossiping it", "applied", t[TagApplied])
		}
		if err == nil {
			err = a.node.SetTags(t)
		}
		switch {
		case err != nil && strings.Contains(err.Error(), "timeout waiting for update broadcast"):
			// The tags are set; gossip carries them on its next rounds.
			a.log.Debug("update gossip tags: broadcast still queued", "err", err)
			last = t
		case err != nil:
			a.log.Warn("update gossip tags", "err", err)
		default:
			last = t
		}
	}
}

// Run serves, joins the cluster and handles events until ctx ends, then
// leaves the cluster gracefully.
func (a *Agent) Run(ctx context.Context) error {
	a.httpSrv = &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: httpReadTimeout,
		WriteTimeout: httpWriteTimeout, IdleTimeout: a.cfg.HTTPIdleTimeout, ConnState: a.httpLn.connState,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	// The control socket answers requests that take minutes (a fleet
	// query, a key rotation across the cluster): no write timeout there.
	a.ctlSrv = &http.Server{Handler: a.controlHandler(), ReadHeaderTimeout: httpReadHeaderTimeout, IdleTimeout: a.cfg.HTTPIdleTimeout,
		ConnState: a.ctlLn.connState}
	go func() { _ = a.httpSrv.Serve(a.httpLn) }()
	go func() { _ = a.ctlSrv.Serve(a.ctlLn) }()
	if why := a.livepatchMissing(); why != "" {
		a.log.Warn(why)
	}
	if len(a.cfg.Join) > 0 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			n, err := a.node.Join(ctx, a.cfg.Join)
			if err != nil && ctx.Err() == nil {
				a.log.Warn("join", "err", err)
			} else if err == nil {
				a.log.Info("joined", "contacted", n)
				a.ro.joined()
			}
		}()
	}
	tick := time.NewTicker(a.cfg.AntiEntropy)
	defer tick.Stop()
	// The background loops end with Run, however it ends.
	loops, cancel := context.WithCancel(ctx)
	defer cancel()
	a.wg.Add(3)
	go func() {
		defer a.wg.Done()
		a.ro.takeGuardVerdicts(loops)
	}()
	go func() {
		defer a.wg.Done()
		a.ro.loop(loops, a.tick)
	}()
	// The tag updater ends before the node leaves: serf must not be
	// asked to gossip tags once it left (memberlist may have dropped the
	// local node by then and fails on it).
	tagsDone := make(chan struct{})
	go func() {
		defer a.wg.Done()
		defer close(tagsDone)
		a.updateTags(loops)
	}()
	a.log.Info("agent running", "gossip", a.GossipAddr(), "http", a.HTTPAddr(), "control", a.cfg.ControlSocket,
		"http_max_connections", a.httpLn.max, "http_max_connections_per_source", a.httpLn.perSource)
	for {
		select {
		case <-ctx.Done():
			cancel()
			<-tagsDone
			return a.shutdown()
		case ev, ok := <-a.node.Events():
			if !ok {
				cancel()
				<-tagsDone
				return a.shutdown()
			}
			a.handleEvent(ctx, ev)
		case <-tick.C:
			a.background(ctx, &a.pulling, a.antiEntropy)
			a.background(ctx, &a.pullingDocs, a.docAntiEntropy)
			a.collectBundles()
		}
	}
}

func (a *Agent) shutdown() error {
	a.log.Info("leaving the cluster")
	err := a.node.Leave()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.httpSrv.Shutdown(sctx)
	_ = a.ctlSrv.Shutdown(sctx)
	a.wg.Wait()
	return errors.Join(err, a.node.Shutdown())
}

// peers lists the blob services of the other alive members, shuffled.
func (a *Agent) peers() []string {
	var out []string
	a.node.EachMember(func(name, status string, _ uint64, tags map[string]string) {
		if name != a.cfg.NodeName && status == "alive" && tags[TagHTTP] != "" {
			out = append(out, tags[TagHTTP])
		}
	})
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// background runs f in its own goroutine unless the last run has not
// ended: the event loop never waits on a peer.
func (a *Agent) background(ctx context.Context, running *atomic.Bool, f func(context.Context)) {
	if !running.CompareAndSwap(false, true) {
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer running.Store(false)
		f(ctx)
	}()
}

// memberAt returns the name of the alive member whose advertised blob
// service is addr.
func (a *Agent) memberAt(addr string) (string, bool) {
	if addr == "" {
		return "", false
	}
	name := ""
	a.node.EachMember(func(n, status string, _ uint64, tags map[string]string) {
		if name == "" && status == "alive" && tags[TagHTTP] == addr {
			name = n
		}
	})
	return name, name != ""
}

// isMemberHTTP says whether addr is an alive member's blob service.
func (a *Agent) isMemberHTTP(addr string) bool {
	_, ok := a.memberAt(addr)
	return ok
}

// fetchAsync fetches an announced bundle unless it is held or already
// being fetched. The fetch is charged to the member whose blob service
// ann.Origin is (see queue.go) and dropped, counted, when that member's
// budget or the pool is used up or when no member advertises the origin.
// fromIndex says that anti-entropy found it in a peer's index, not an
// announcement. At most fetchSlots downloads run at once, at most
// maxRunningPerMember of them charged to one member.
func (a *Agent) fetchAsync(ctx context.Context, ann gossip.Announcement, fromIndex bool) {
	if a.store.Has(ann.ManifestDigest) || (fromIndex && a.forgotten.has(ann.ManifestDigest)) {
		// Held; or dropped here (retention, forget) and only listed by
		// a peer that still holds it.
		return
	}
	member, ok := a.memberAt(ann.Origin)
	if !ok {
		a.bundleQ.drop(dropNotAMember)
		a.log.Warn("ignored a bundle announcement whose origin no member advertises", "id", ann.ID, "digest", ann.ManifestDigest[:12], "origin", ann.Origin)
		return
	}
	admitted, reason := a.bundleQ.admit(ann.ManifestDigest, member, ann.Origin, fromIndex)
	if !admitted {
		if reason != "" {
			a.log.Debug("bundle fetch not queued; anti-entropy brings it later", "digest", ann.ManifestDigest[:12], "member", member, "reason", reason)
		}
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer a.bundleQ.done(ann.ManifestDigest)
		release, ok := a.bundleQ.runSlot(ctx, member)
		if !ok {
			return
		}
		defer release()
		select {
		case a.sem <- struct{}{}:
			defer func() { <-a.sem }()
		case <-ctx.Done():
			return
		}
		peers := slices.DeleteFunc(a.peers(), func(p string) bool { return p == ann.Origin })
		want := distrib.Want{ManifestDigest: ann.ManifestDigest, Size: ann.Size}
		if fromIndex {
			want.Store = a.storeUnlessForgotten(ann.ManifestDigest)
		}
		v, err := a.fetcher.Fetch(ctx, want, peers, ann.Origin)
		if errors.Is(err, errForgottenMeanwhile) {
			a.log.Debug("fetch bundle", "id", ann.ID, "digest", ann.ManifestDigest[:12], "err", err)
			return
		}
		if err != nil {
			a.log.Warn("fetch bundle", "id", ann.ID, "version", ann.Version, "digest", ann.ManifestDigest[:12], "err", err)
			return
		}
		if fromIndex {
			a.aeFetches.Add(1)
		}
		a.log.Info("bundle verified and stored", "id", v.Manifest.ID, "version", v.Manifest.Version, "digest", v.ManifestDigest[:12], "signers", len(v.Signers), "anti_entropy", fromIndex)
		a.refreshTagsSoon()
	}()
}

// errForgottenMeanwhile: retention or a forget dropped a bundle here
// while anti-entropy fetched it back.
var errForgottenMeanwhile = errors.New("dropped here while it was fetched; not stored back")

// storeUnlessForgotten stores a bundle anti-entropy fetched unless it was
// dropped here meanwhile. Drops are made inside rollouts.holdingDrops, so
// the check and the store write are one step for them.
func (a *Agent) storeUnlessForgotten(digest string) func(put func() error) error {
	return func(put func() error) error {
		err := errForgottenMeanwhile
		a.ro.holdingDrops(func(bundleUse) {
			if !a.forgotten.has(digest) {
				err = put()
			}
		})
		return err
	}
}

// IndexEntry is one bundle in a peer's index, as anti-entropy reads it.
type IndexEntry struct {
	ID             string `json:"id"`
	Version        uint64 `json:"version"`
	ManifestDigest string `json:"manifest_digest"`
	Size           int64  `json:"size"`
}

const maxIndexEntries = 4096

// antiEntropy asks one random peer what it holds and fetches what is
// missing here: serf does not guarantee delivery, so a late joiner, a
// restarted agent or a healed partition learns every bundle this way.
func (a *Agent) antiEntropy(ctx context.Context) {
	peers := a.peers()
	if len(peers) == 0 {
		return
	}
	peer := peers[0]
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+peer+"/v1/index", nil)
	if err != nil {
		return
	}
	// The one peer client: no redirects, bounded connections.
	resp, err := a.fetcher.Client().Do(req)
	if err != nil {
		a.log.Debug("anti-entropy", "peer", peer, "err", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	var idx []IndexEntry
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&idx); err != nil || len(idx) > maxIndexEntries {
		a.log.Warn("anti-entropy: bad index", "peer", peer, "err", err)
		return
	}
	for _, e := range idx {
		if !splice.ValidDigest(e.ManifestDigest) || a.store.Has(e.ManifestDigest) {
			continue
		}
		a.fetchAsync(ctx, gossip.Announcement{ID: e.ID, Version: e.Version, ManifestDigest: e.ManifestDigest, Size: e.Size, Origin: peer}, true)
	}
}

// Publish verifies a bundle, stores it and announces it to the cluster.
func (a *Agent) Publish(raw []byte) (*splice.Verified, error) {
	b, err := splice.Decode(strings.NewReader(string(raw)))
	if err != nil {
		return nil, err
	}
	v, err := splice.Verify(b, a.policy.Load(), a.now())
	if err != nil {
		return nil, err
	}
	if err := a.store.Put(v); err != nil {
		return nil, err
	}
	a.blobs.Seed(v.Manifest.Module.SHA256)
	ann := gossip.Announcement{ID: v.Manifest.ID, Version: v.Manifest.Version, ManifestDigest: v.ManifestDigest,
		Size: int64(len(raw)), Origin: a.advertisedHTTP()}
	if v.Manifest.Expires != nil {
		ann.Expires = *v.Manifest.Expires
	}
	if err := a.node.Announce(ann); err != nil {
		return v, fmt.Errorf("announce: %w", err)
	}
	a.refreshTags()
	a.log.Info("published", "id", v.Manifest.ID, "version", v.Manifest.Version, "digest", v.ManifestDigest[:12])
	return v, nil
}

// Reload applies what may change while running: log level, user tags and
// the trust policy. A configuration it refuses (one that does not
// validate, a keyring that does not parse, or one that another user may
// change, see loadPolicy) changes nothing: the refusal is logged at WARN
// and counted (splicefleet_config_reloads_total{result="refused"}), and
// the agent keeps the policy it had.
func (a *Agent) Reload(cfg Config) error {
	if err := a.reload(cfg); err != nil {
		a.ReloadRefused(err)
		return err
	}
	a.metrics.ObserveReload(metrics.ReloadApplied)
	return nil
}

// ReloadRefused records a reload refused before it reached Reload (a
// configuration file that does not decode): logged at WARN and counted.
func (a *Agent) ReloadRefused(err error) {
	a.log.Warn("reload refused; keeping the running configuration and trust policy", "err", err)
	a.metrics.ObserveReload(metrics.ReloadRefused)
}

func (a *Agent) reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	p, err := loadPolicy(cfg, a.now)
	if err != nil {
		return err
	}
	a.policy.Store(p)
	a.ro.forgetRefusals() // judged under the old policy
	_ = a.level.UnmarshalText([]byte(cfg.LogLevel))
	a.mu.Lock()
	a.userTags = cfg.Tags
	a.mu.Unlock()
	a.refreshTags()
	a.log.Info("reloaded", "threshold", cfg.Threshold, "keys", p.Keyring().Len())
	return nil
}

// Members lists the cluster as this agent sees it.
func (a *Agent) Members() []gossip.Member { return a.node.Members() }

// livepatchMissing says why this host cannot apply patches when its
// kernel has no livepatch support, and is empty otherwise. The agent
// still gossips, fetches and serves bundles for its peers.
func (a *Agent) livepatchMissing() string {
	info, err := a.kernel.Info()
	if err != nil || info.Livepatch {
		return ""
	}
	return fmt.Sprintf("kernel %s has no livepatch support (no /sys/kernel/livepatch; it needs CONFIG_LIVEPATCH): this host applies no patch, and refuses every rollout's apply; it still relays bundles for its peers", info.Release)
}
