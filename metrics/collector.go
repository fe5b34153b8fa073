package metrics

import (
	"cmp"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// Bounds on the series one scrape exports per patch and bundle.
const (
	MaxPatches = 200 // journal patches: live ones first, then the most recently changed
	MaxBundles = 200 // held bundles, newest first
)

// Sources are what the collector reads at every scrape. A zero field
// leaves its metrics out.
type Sources struct {
	// StateDir is the host's state directory, whose journal lists every
	// patch (read with splice.ReadPatches, without the lock).
	StateDir string
	// Kernel is the running kernel.
	Kernel KernelReader
	// Bundles lists the verified bundles the agent holds.
	Bundles func() ([]Bundle, error)
	// Gossip returns the gossip member's counters.
	Gossip func() gossip.Stats
	// Distribution returns the blob server's and the fetcher's counters.
	Distribution func() Distribution
	// Rollouts returns the rollouts the agent follows as it last judged
	// them, in the order it accepted them (oldest first). It is called at
	// every scrape and must not evaluate them again.
	Rollouts func() []rollout.Status
	// Listeners returns the agent's listeners' connection counts.
	Listeners func() []Listener
}

// Listener is what one of the agent's listeners ("http", the TCP port;
// "control", the unix socket) counted since the agent started.
type Listener struct {
	Name string
	// Open is how many connections it holds open now.
	Open int
	// Refused counts connections closed at once by reason: limit (the
	// listener's cap was reached), source_limit (the source's cap was
	// reached), failed accepts: no_fds (the process was out of file
	// descriptors), and idle keep-alive connections closed to make room
	// for a new one at a cap: evicted.
	Refused map[string]uint64
}

// listenerRefusals are the reasons of Listener.Refused, in exposition
// order.
var listenerRefusals = []string{"limit", "source_limit", "no_fds", "evicted"}

// KernelReader is what the collector reads of the running kernel.
type KernelReader interface {
	Info() (splice.KernelInfo, error)
	// Patches lists the kernel's livepatches with their flags.
	Patches() ([]splice.KernelPatch, error)
	// TaintFlags returns every taint flag the kernel names, set or not,
	// and any set bit without a name ("bitN").
	TaintFlags() (map[string]bool, error)
}

// Bundle is a verified bundle the agent holds.
type Bundle struct {
	ID      string
	Version uint64
	Target  splice.Target
	Stored  time.Time
	// Wanted says a live (running or paused) rollout targets this host
	// with the bundle. Only a wanted bundle can be outstanding: one whose
	// rollout halted, was revoked, expired or is done, and one published
	// without a plan, is held for distribution, not owed to this host.
	Wanted bool
}

// Distribution is what the agent's blob server and fetcher counted since
// the agent started.
type Distribution struct {
	HeadsServed, ModulesServed         uint64
	HeadBytesServed, ModuleBytesServed uint64
	Busy, NotFound, BadRequests        uint64
	TooSlow                            uint64 // module uploads cut off: the fetcher read too slowly
	HeadsFetched, ModulesFetched       uint64
	BytesFromPeers, BytesFromOrigin    uint64
	BadPeerResponses                   uint64
	NegativeCacheHits                  uint64
	// AntiEntropyFetches counts bundles fetched because a peer's index
	// listed them (anti-entropy), not an announcement.
	AntiEntropyFetches uint64
	// FetchesDropped counts background fetches not queued, by kind
	// (FetchDropKinds) and reason (FetchDropReasons).
	FetchesDropped map[string]map[string]uint64
	// SourcesDemoted counts sources that timed out or could not be
	// reached, asked last for a while after.
	SourcesDemoted uint64
	// SourcesRefused counts origins and referral hints left out
	// because no member advertises them.
	SourcesRefused uint64
	// HolderClaimsRefused counts module requests whose holder header
	// named no member's blob service (or not the requester's address).
	HolderClaimsRefused uint64
	// VerificationFailures by splice.Reason label.
	VerificationFailures map[string]uint64
}

// The label values of splicefleet_fetch_dropped_total: what was not
// fetched, and why: its pool was full, the member it was learned from
// had used its budget, or no member advertises its origin.
var (
	FetchDropKinds   = []string{"bundle", "document"}
	FetchDropReasons = []string{"queue_full", "member_budget", "not_a_member"}
)

// The states of a patch, in exposition order.
var patchStates = []splice.State{splice.StateApplying, splice.StateApplied, splice.StateReverting, splice.StateReverted,
	splice.StateReplaced, splice.StateFailed, splice.StateNotApplicable}

// serf's member statuses.
var memberStatuses = []string{"alive", "leaving", "left", "failed"}

type stateCollector struct {
	version string
	src     Sources
	log     *slog.Logger

	// The kernel's identity cannot change while the agent runs, and the
	// journal only changes by an atomic rename: both are read again only
	// when they may have changed, which keeps a scrape cheap.
	mu      sync.Mutex
	kinfo   *splice.KernelInfo
	kinfoAt time.Time
	journal struct {
		file    fs.FileInfo
		patches []splice.Patch
	}

	agentInfo, sourceOK, omitted                                                          *prometheus.Desc
	kernelInfo, taint, lpEnabled, lpTransition                                            *prometheus.Desc
	patchState, patchCVE, patchApplied                                                    *prometheus.Desc
	bundleStored, bundleOutstanding                                                       *prometheus.Desc
	members, events, dropped, announcements, badAnn, outsiders, queries, queue, hs, proto *prometheus.Desc
	served, uploads, refused, fetched, downloads, badPeers, negHits, aeFetches, ver       *prometheus.Desc
	fetchDropped, demoted, sourcesRefused, claimsRefused, connsOpen, connsRefused         *prometheus.Desc
	ro                                                                                    rolloutDescs
}

func newStateCollector(version string, src Sources, log *slog.Logger) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
	}
	return &stateCollector{version: version, src: src, log: log,
		agentInfo: d("agent_info", "The agent's version; always 1.", "version"),
		sourceOK:  d("scrape_source_success", "Whether the last scrape could read a source of state: journal, kernel, bundles (1 yes, 0 no).", "source"),
		omitted:   d("scrape_items_omitted", "Patches, bundles or rollouts left out of this scrape to bound its size.", "kind"),

		kernelInfo:   d("kernel_info", "The running kernel; always 1. simulated is true for the test double.", "release", "arch", "build_id", "livepatch", "simulated"),
		taint:        d("kernel_taint", "The kernel's taint flags by name (1 set, 0 not).", "flag"),
		lpEnabled:    d("livepatch_enabled", "Whether the kernel has the livepatch enabled (1) or not (0), for every livepatch it lists.", "livepatch"),
		lpTransition: d("livepatch_transition", "Whether the livepatch is in a transition (1) or settled (0).", "livepatch"),

		patchState:   d("patch_state", "Every patch in this host's journal with its state; always 1.", "patch", "version", "module", "state"),
		patchCVE:     d("patch_cve_info", "The CVEs each live patch fixes; always 1.", "patch", "version", "cve"),
		patchApplied: d("patch_applied_timestamp_seconds", "When each live patch was applied, in seconds since the epoch.", "patch", "version"),

		bundleStored:      d("bundle_stored_timestamp_seconds", "When the agent stored each verified bundle it holds, in seconds since the epoch.", "patch", "version"),
		bundleOutstanding: d("bundle_outstanding", "1 when a running or paused rollout targets this host with a held bundle and the host runs neither it nor a newer version of its patch; else 0.", "patch", "version"),

		members:       d("gossip_members", "Cluster members this agent knows, by status.", "status"),
		events:        d("gossip_events_received_total", "Events serf handed to the agent's gossip member."),
		dropped:       d("gossip_events_dropped_total", "Events dropped because the agent did not keep up."),
		announcements: d("gossip_announcements_received_total", "Valid bundle announcements received."),
		badAnn:        d("gossip_bad_announcements_total", "Announcements refused: malformed, or of a protocol version this agent does not speak.", "reason"),
		outsiders:     d("gossip_outsider_messages_total", "Gossip packets and streams refused because they were not encrypted with a key of the keyring: hosts without the gossip key."),
		queries:       d("gossip_queries_total", "Gossip queries this agent was asked, by result: answered, error, dropped.", "result"),
		queue:         d("gossip_queue_depth", "Items waiting in a gossip queue: events (to the agent), serf_intents, serf_events and serf_queries (to be gossiped).", "queue"),
		hs:            d("gossip_health_score", "memberlist's awareness of its own health: 0 is healthy, higher is worse."),
		proto:         d("gossip_protocol_version", "The protocol version this agent announces in: below its newest while it is told to speak older or a member decodes only older."),

		served:    d("blob_served_bytes_total", "Bytes the blob service sent to peers, by kind: head, module.", "kind"),
		uploads:   d("blob_uploads_total", "Complete responses of the blob service, by kind: head, module.", "kind"),
		refused:   d("blob_refused_total", "Requests the blob service refused, by reason: busy, not_found, bad_request; and module uploads it cut off because the fetcher read too slowly: too_slow.", "reason"),
		fetched:   d("fetched_bytes_total", "Bundle bytes downloaded, by source: peer, origin.", "source"),
		downloads: d("fetch_downloads_total", "Heads and modules downloaded and checked against their digest, by kind.", "kind"),
		badPeers:  d("fetch_bad_peer_responses_total", "Responses from peers or the origin that were not what was asked for (wrong digest, too large, malformed)."),
		negHits:   d("fetch_negative_cache_hits_total", "Announcements of a bundle refused earlier, refused again without a download."),
		aeFetches: d("anti_entropy_fetches_total", "Bundles fetched and verified because a peer's index listed them (anti-entropy), not an announcement."),
		ver:       d("verification_failures_total", "Bundles refused on verification, by reason; these may be attacks.", "reason"),

		fetchDropped:   d("fetch_dropped_total", "Bundle and document fetches not queued, by kind and reason: queue_full (its pool was full), member_budget (the member it was learned from used its budget), not_a_member (no member advertises its origin; nothing was requested).", "kind", "reason"),
		demoted:        d("fetch_sources_demoted_total", "Sources that timed out or could not be reached: not asked again in that fetch, and asked last for a while after."),
		sourcesRefused: d("fetch_sources_refused_total", "Origins and referral hints left out of fetches because no member advertises them."),
		claimsRefused:  d("blob_holder_claims_refused_total", "Module requests whose holder header named no member's blob service, or not the address the request came from: served, but taking no seed copy and never named in a referral."),
		connsOpen:      d("connections_open", "Connections open to the agent's listeners: http (the TCP port of /healthz, /metrics and the blob service), control (the unix socket).", "listener"),
		connsRefused:   d("connections_refused_total", "Connections a listener closed as soon as it accepted them, by reason: limit (its cap of open connections), source_limit (the cap per source address); accepts that failed because the process was out of file descriptors: no_fds; and idle keep-alive connections closed to make room for a new one: evicted.", "listener", "reason"),

		ro: newRolloutDescs(d),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.agentInfo, c.sourceOK, c.omitted, c.kernelInfo, c.taint, c.lpEnabled, c.lpTransition,
		c.patchState, c.patchCVE, c.patchApplied, c.bundleStored, c.bundleOutstanding,
		c.members, c.events, c.dropped, c.announcements, c.badAnn, c.outsiders, c.queries, c.queue, c.hs, c.proto,
		c.served, c.uploads, c.refused, c.fetched, c.downloads, c.badPeers, c.negHits, c.aeFetches, c.ver,
		c.fetchDropped, c.demoted, c.sourcesRefused, c.claimsRefused, c.connsOpen, c.connsRefused} {
		ch <- d
	}
	for _, d := range c.ro.all() {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads every source, one
// phase a source. A source that cannot be read is logged and exported as
// splicefleet_scrape_source_success 0; the others are exported as usual.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := scrape{c: c, ch: ch}
	s.gauge(c.agentInfo, 1, c.version)
	c.mu.Lock() // one scrape at a time reads the sources
	defer c.mu.Unlock()
	var kernel *splice.KernelInfo
	if k := c.src.Kernel; k != nil {
		kernel = c.collectKernel(s, k)
	}
	var live map[string]uint64 // patch id -> highest live version
	if c.src.StateDir != "" {
		patches, err := c.patches()
		if s.ok("journal", err) {
			live = c.collectPatches(s.gauge, patches)
		}
	}
	if c.src.Bundles != nil {
		bundles, err := c.src.Bundles()
		if s.ok("bundles", err) {
			c.collectBundles(s, bundles, kernel, live)
		}
	}
	if c.src.Gossip != nil {
		c.collectGossip(s, c.src.Gossip())
	}
	if c.src.Distribution != nil {
		c.collectDistribution(s, c.src.Distribution())
	}
	if c.src.Listeners != nil {
		c.collectListeners(s, c.src.Listeners())
	}
	if c.src.Rollouts != nil {
		c.collectRollouts(s.gauge, c.src.Rollouts())
	}
}

// scrape sends one Collect's metrics.
type scrape struct {
	c  *stateCollector
	ch chan<- prometheus.Metric
}

func (s scrape) gauge(d *prometheus.Desc, v float64, labels ...string) {
	s.ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (s scrape) counter(d *prometheus.Desc, v uint64, labels ...string) {
	s.ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

// ok exports whether a source could be read, and logs why not.
func (s scrape) ok(source string, err error) bool {
	if err != nil {
		s.c.log.Warn("metrics: cannot read "+source, "err", err)
		s.gauge(s.c.sourceOK, 0, source)
		return false
	}
	s.gauge(s.c.sourceOK, 1, source)
	return true
}

// collectKernel exports the kernel's identity, its livepatches and its
// taint flags; it returns the identity, nil when it could not be read.
func (c *stateCollector) collectKernel(s scrape, k KernelReader) *splice.KernelInfo {
	var kernel *splice.KernelInfo
	info, err := c.kernelIdentity(k)
	lps, err2 := k.Patches()
	flags, err3 := k.TaintFlags()
	if err == nil {
		kernel = &info
		s.gauge(c.kernelInfo, 1, info.Release, info.Arch, info.BuildID, strconv.FormatBool(info.Livepatch), strconv.FormatBool(info.Simulated))
	}
	if err2 == nil {
		for _, lp := range lps {
			s.gauge(c.lpEnabled, b2f(lp.Enabled), lp.Name)
			s.gauge(c.lpTransition, b2f(lp.Transition), lp.Name)
		}
	}
	if err3 == nil {
		for name, set := range flags {
			s.gauge(c.taint, b2f(set), name)
		}
	}
	s.ok("kernel", cmp.Or(err, err2, err3))
	return kernel
}

// collectBundles exports the newest MaxBundles held bundles and, when the
// kernel and the journal could be read, whether each is outstanding here.
func (c *stateCollector) collectBundles(s scrape, bundles []Bundle, kernel *splice.KernelInfo, live map[string]uint64) {
	slices.SortFunc(bundles, func(a, b Bundle) int { return b.Stored.Compare(a.Stored) })
	s.gauge(c.omitted, float64(max(0, len(bundles)-MaxBundles)), "bundle")
	for _, b := range bundles[:min(len(bundles), MaxBundles)] {
		v := strconv.FormatUint(b.Version, 10)
		s.gauge(c.bundleStored, float64(b.Stored.UnixMilli())/1000, b.ID, v)
		if kernel != nil && live != nil {
			out := b.Wanted && targets(b.Target, *kernel) && live[b.ID] < b.Version
			s.gauge(c.bundleOutstanding, b2f(out), b.ID, v)
		}
	}
}

// collectGossip exports the gossip member's counters and queues.
func (c *stateCollector) collectGossip(s scrape, st gossip.Stats) {
	for _, m := range memberStatuses {
		s.gauge(c.members, float64(st.Members[m]), m)
	}
	s.counter(c.events, st.EventsReceived)
	s.counter(c.dropped, st.EventsDropped)
	s.counter(c.announcements, st.AnnouncementsReceived)
	s.counter(c.badAnn, st.BadAnnouncements, "malformed")
	s.counter(c.badAnn, st.UnknownProtocol, "unknown_protocol")
	s.counter(c.outsiders, st.OutsiderMessages)
	s.counter(c.queries, st.QueriesAnswered, "answered")
	s.counter(c.queries, st.QueryErrors, "error")
	s.counter(c.queries, st.QueriesDropped, "dropped")
	s.gauge(c.queue, float64(st.QueueDepth), "events")
	s.gauge(c.queue, float64(st.IntentQueue), "serf_intents")
	s.gauge(c.queue, float64(st.EventQueue), "serf_events")
	s.gauge(c.queue, float64(st.QueryQueue), "serf_queries")
	s.gauge(c.hs, float64(st.HealthScore))
	s.gauge(c.proto, float64(st.Protocol))
}

// collectDistribution exports what the blob service served and refused,
// what the fetcher fetched, and why bundles failed verification.
func (c *stateCollector) collectDistribution(s scrape, d Distribution) {
	s.counter(c.served, d.HeadBytesServed, "head")
	s.counter(c.served, d.ModuleBytesServed, "module")
	s.counter(c.uploads, d.HeadsServed, "head")
	s.counter(c.uploads, d.ModulesServed, "module")
	s.counter(c.refused, d.Busy, "busy")
	s.counter(c.refused, d.NotFound, "not_found")
	s.counter(c.refused, d.BadRequests, "bad_request")
	s.counter(c.refused, d.TooSlow, "too_slow")
	s.counter(c.fetched, d.BytesFromPeers, "peer")
	s.counter(c.fetched, d.BytesFromOrigin, "origin")
	s.counter(c.downloads, d.HeadsFetched, "head")
	s.counter(c.downloads, d.ModulesFetched, "module")
	s.counter(c.badPeers, d.BadPeerResponses)
	s.counter(c.negHits, d.NegativeCacheHits)
	s.counter(c.aeFetches, d.AntiEntropyFetches)
	for _, kind := range FetchDropKinds {
		for _, reason := range FetchDropReasons {
			s.counter(c.fetchDropped, d.FetchesDropped[kind][reason], kind, reason)
		}
	}
	s.counter(c.demoted, d.SourcesDemoted)
	s.counter(c.sourcesRefused, d.SourcesRefused)
	s.counter(c.claimsRefused, d.HolderClaimsRefused)
	labels := splice.ReasonLabels()
	byLabel := make(map[string]uint64, len(labels))
	for reason, n := range d.VerificationFailures {
		if !slices.Contains(labels, reason) {
			reason = "other"
		}
		byLabel[reason] += n
	}
	for _, l := range labels {
		s.counter(c.ver, byLabel[l], l)
	}
}

// collectListeners exports each listener's open and refused connections.
func (c *stateCollector) collectListeners(s scrape, listeners []Listener) {
	for _, l := range listeners {
		s.gauge(c.connsOpen, float64(l.Open), l.Name)
		for _, r := range listenerRefusals {
			s.counter(c.connsRefused, l.Refused[r], l.Name, r)
		}
	}
}

// kernelIdentityTTL is how long the kernel's identity is remembered.
const kernelIdentityTTL = time.Minute

func (c *stateCollector) kernelIdentity(k KernelReader) (splice.KernelInfo, error) {
	if c.kinfo != nil && time.Since(c.kinfoAt) < kernelIdentityTTL {
		return *c.kinfo, nil
	}
	info, err := k.Info()
	if err != nil {
		c.kinfo = nil
		return info, err
	}
	c.kinfo, c.kinfoAt = &info, time.Now()
	return info, nil
}

// patches reads the journal's patches, again only when the journal file
// changed: it is replaced by a rename, so a new one is another file.
func (c *stateCollector) patches() ([]splice.Patch, error) {
	st, err := os.Stat(filepath.Join(c.src.StateDir, splice.JournalFile))
	if errors.Is(err, fs.ErrNotExist) {
		c.journal.file, c.journal.patches = nil, nil
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if old := c.journal.file; old != nil && os.SameFile(old, st) && st.ModTime().Equal(old.ModTime()) && st.Size() == old.Size() {
		return slices.Clone(c.journal.patches), nil
	}
	patches, err := splice.ReadPatches(c.src.StateDir)
	if err != nil {
		return nil, err
	}
	c.journal.file, c.journal.patches = st, patches
	return slices.Clone(patches), nil
}

// collectPatches exports the journal's patches, live ones first, at most
// MaxPatches, and returns the highest live version of each patch id.
func (c *stateCollector) collectPatches(gauge func(*prometheus.Desc, float64, ...string), patches []splice.Patch) map[string]uint64 {
	live := map[string]uint64{}
	slices.SortStableFunc(patches, func(a, b splice.Patch) int {
		if a.Live() != b.Live() {
			if a.Live() {
				return -1
			}
			return 1
		}
		return b.Updated.Compare(a.Updated)
	})
	for _, p := range patches {
		if p.Live() {
			live[p.ID] = max(live[p.ID], p.Version)
		}
	}
	gauge(c.omitted, float64(max(0, len(patches)-MaxPatches)), "patch")
	for _, p := range patches[:min(len(patches), MaxPatches)] {
		v := strconv.FormatUint(p.Version, 10)
		state := p.State
		if !slices.Contains(patchStates, state) {
			state = "unknown" // a journal from a newer splicefleet
		}
		gauge(c.patchState, 1, p.ID, v, p.Module, string(state))
		if !p.Live() {
			continue
		}
		for _, cve := range p.CVEs {
			gauge(c.patchCVE, 1, p.ID, v, cve)
		}
		if !p.AppliedAt.IsZero() {
			gauge(c.patchApplied, float64(p.AppliedAt.UnixMilli())/1000, p.ID, v)
		}
	}
	return live
}

// targets reports whether a bundle's target is the running kernel.
func targets(t splice.Target, k splice.KernelInfo) bool {
	return t.Release == k.Release && t.Arch == k.Arch && (t.BuildID == "" || t.BuildID == k.BuildID)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
