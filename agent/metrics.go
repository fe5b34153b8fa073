package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/splicefleet/splicefleet/distrib"
	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/metrics"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// newMetrics wires the agent's parts to its metrics: the journal in the
// state directory, the kernel, the store, gossip and distribution counters
// and the rollout engine's last judgements are read at scrape time;
// transitions and fetches are observed as they end. The Go runtime's and
// the process's own metrics come along.
func (a *Agent) newMetrics() *metrics.Metrics {
	held := &heldBundles{store: a.store, known: map[string]metrics.Bundle{}, wanted: func() map[string]bool { return a.ro.wanted() }}
	m := metrics.New(metrics.Options{
		Version:  a.version,
		Revision: a.revision,
		Logger:   a.log.With("component", "metrics"),
		Sources: metrics.Sources{
			StateDir:     a.cfg.StateDir,
			Kernel:       a.kernel,
			Bundles:      held.list,
			Gossip:       func() gossip.Stats { return a.node.Stats() },
			Distribution: a.distribution,
			Rollouts:     func() []rollout.Status { return a.ro.judged() },
			Listeners:    a.listenerStats,
		},
	})
	if err := m.Register(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		a.log.Warn("runtime metrics", "err", err)
	}
	a.kernel.OnTransition = func(d time.Duration, err error) { a.transitionObserved(m, d, err) }
	return m
}

// Metrics returns the agent's metrics: the rollout engine and whatever
// else applies or undoes patches on the agent's behalf reports there
// (ObserveApply, ObserveUndo, Rollback), and registers its own
// collectors (Register). Transitions through the agent's kernel and bundle
// fetches are observed already.
func (a *Agent) Metrics() *metrics.Metrics { return a.metrics }

// transitionObserved records a transition; one that stalled while
// enabling a patch and was reversed took the patch back off the host.
func (a *Agent) transitionObserved(m *metrics.Metrics, d time.Duration, err error) {
	m.ObserveTransition(d)
	var te *kmod.TransitionError
	if errors.As(err, &te) && te.Enabling && te.Reverted {
		m.Rollback(metrics.RollbackTransitionTimeout)
	}
}

// fetchObserved records a bundle download.
func (a *Agent) fetchObserved(d time.Duration, err error) {
	if a.metrics == nil {
		return
	}
	a.metrics.ObserveFetch(d, fetchFailure(err))
}

func fetchFailure(err error) metrics.FetchFailure {
	switch {
	case err == nil:
		return metrics.FetchOK
	case splice.IsReject(err):
		return metrics.FetchRefused
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return metrics.FetchCanceled
	case errors.Is(err, distrib.ErrUnavailable):
		return metrics.FetchUnavailable
	}
	return metrics.FetchError
}

// judged lists the rollouts as the engine last judged them, in acceptance
// order, with this host's current state in each: what a scrape exports.
// It does not judge them again; a rollout not judged since the agent
// started is left out until its first evaluation (a tick away).
func (r *rollouts) judged() []rollout.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]rollout.Status, 0, len(r.order))
	for _, d := range r.order {
		st, ok := r.status[d]
		if !ok {
			continue
		}
		st.Self.State = r.recs[d].Local.State
		out = append(out, st)
	}
	return out
}

// distribution copies the blob server's and the fetcher's counters.
func (a *Agent) distribution() metrics.Distribution {
	b, f := a.blobs.Stats(), a.fetcher.Stats()
	return metrics.Distribution{
		HeadsServed: b.HeadsServed, ModulesServed: b.ModulesServed,
		HeadBytesServed: b.BytesServed - b.ModuleBytesServed, ModuleBytesServed: b.ModuleBytesServed,
		Busy: b.Busy, NotFound: b.NotFound, BadRequests: b.BadRequests, TooSlow: b.TooSlow,
		HeadsFetched: f.HeadsFetched, ModulesFetched: f.ModulesFetched,
		BytesFromPeers: f.BytesFetchedFromPeers, BytesFromOrigin: f.BytesFetchedFromOrigin,
		BadPeerResponses: f.BadPeerResponses, NegativeCacheHits: f.NegativeCacheHits,
		VerificationFailures: f.VerificationFailures,
		AntiEntropyFetches:   a.aeFetches.Load(),
		FetchesDropped:       map[string]map[string]uint64{"bundle": a.bundleQ.drops(), "document": a.docQ.drops()},
		SourcesDemoted:       f.SourcesDemoted,
		SourcesRefused:       f.SourcesRefused,
		HolderClaimsRefused:  b.HolderClaimsRefused,
	}
}

// listenerStats counts the connections of the TCP listener and the
// control socket.
func (a *Agent) listenerStats() []metrics.Listener {
	return []metrics.Listener{
		{Name: "http", Open: a.httpLn.Open(), Refused: a.httpLn.refused()},
		{Name: "control", Open: a.ctlLn.Open(), Refused: a.ctlLn.refused()},
	}
}

// TaintFlags returns every taint flag the kernel names, set or not, and
// any set bit without a name, for metrics.
func (a *HostKernel) TaintFlags() (map[string]bool, error) {
	t, err := a.k.Taint()
	if err != nil {
		return nil, err
	}
	flags := map[string]bool{}
	for bit := range 64 {
		names := kmod.Taint(1 << bit).Names()
		set := t&(1<<bit) != 0
		if len(names) == 1 && (set || !strings.HasPrefix(names[0], "bit")) {
			flags[names[0]] = set
		}
	}
	return flags, nil
}

// heldBundles lists the store's bundles for metrics. A head is
// content-addressed, so what it says never changes: each is read once and
// remembered; a scrape only lists the folder.
type heldBundles struct {
	store *splice.Store
	mu    sync.Mutex
	known map[string]metrics.Bundle // by manifest digest
	// wanted lists the bundles a live rollout targets this host with;
	// read at every scrape, since it changes as rollouts move.
	wanted func() map[string]bool
}

func (h *heldBundles) list() ([]metrics.Bundle, error) {
	entries, err := h.store.Digests()
	if err != nil {
		return nil, err
	}
	var wanted map[string]bool // before h.mu: it takes the rollouts' lock
	if h.wanted != nil {
		wanted = h.wanted()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]metrics.Bundle, 0, len(entries))
	seen := make(map[string]bool, len(entries))

	for _, e := range entries {
		digest := e.Digest
		seen[digest] = true
		b, ok := h.known[digest]
		if !ok {
			head, err := h.store.Head(digest)
			if err != nil {
				return nil, err
			}
			m, err := splice.ParseManifest(head.Manifest)
			if err != nil {
				return nil, fmt.Errorf("list store: head %s: %w: %v", digest, splice.ErrCorruptStore, err)
			}
			b = metrics.Bundle{ID: m.ID, Version: m.Version, Target: m.Target, Stored: e.At}
			h.known[digest] = b
		}
		b.Wanted = wanted[digest]
		out = append(out, b)
	}
	for d := range h.known {
		if !seen[d] {
			delete(h.known, d)
		}
	}
	return out, nil
}

// metricRefused logs and counts a refused plan or command, by the reason
// the control API reports (refusalReason).
func (a *Agent) metricRefused(kind string, err error) {
	a.log.Warn("refused "+kind, "err", err)
	if a.metrics != nil {
		a.metrics.RolloutRefused(kind, refusalReason(err))
	}
}

// metricBadEvent counts a rollout event that did not decode.
func (a *Agent) metricBadEvent(name string) {
	if a.metrics != nil {
		a.metrics.RolloutBadEvent(name)
	}
}
