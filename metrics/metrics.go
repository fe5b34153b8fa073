package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/splicefleet/splicefleet/splice"
)

// Namespace prefixes every metric name.
const Namespace = "splicefleet"

// Result is the outcome of an apply or an undo: a closed set of label
// values.
type Result string

// Results.
const (
	ResultSuccess  Result = "success"  // the kernel runs (or no longer runs) the patch
	ResultNoop     Result = "noop"     // nothing to do: already applied
	ResultRejected Result = "rejected" // refused before the kernel was touched: verification, target, stack
	ResultFailed   Result = "failed"   // the kernel refused, the transition stalled, or an I/O error
)

// Results lists every Result, in exposition order.
var Results = []Result{ResultSuccess, ResultNoop, ResultRejected, ResultFailed}

// ResultOf classifies the error of splice's Host.Apply or Host.Undo.
func ResultOf(err error) Result {
	switch {
	case err == nil:
		return ResultSuccess
	case errors.Is(err, splice.ErrAlreadyApplied):
		return ResultNoop
	case splice.IsReject(err), errors.Is(err, splice.ErrNotApplied), errors.Is(err, splice.ErrNoLivepatch):
		return ResultRejected
	}
	return ResultFailed
}

// RollbackReason says why a patch was taken back off a host: a closed set
// of label values.
type RollbackReason string

// Rollback reasons.
const (
	// RollbackCanaryHalt: a rollout was halted on its canaries' evidence
	// and the plan says to roll back.
	RollbackCanaryHalt RollbackReason = "canary_halt"
	// RollbackHealthCheck: a health check failed within the health window.
	RollbackHealthCheck RollbackReason = "health_check"
	// RollbackOperator: a signed operator command revoked the patch.
	RollbackOperator RollbackReason = "operator"
	// RollbackTransitionTimeout: an enabling transition stalled and was
	// reversed.
	RollbackTransitionTimeout RollbackReason = "transition_timeout"
	// RollbackCrashLoopGuard: the host went down while the patch was
	// being applied or watched, and the crash-loop guard stopped it.
	RollbackCrashLoopGuard RollbackReason = "crash_loop_guard"
)

// RollbackReasons lists every RollbackReason, in exposition order.
var RollbackReasons = []RollbackReason{RollbackCanaryHalt, RollbackHealthCheck, RollbackOperator,
	RollbackTransitionTimeout, RollbackCrashLoopGuard}

// FetchFailure says why a bundle download did not end with a verified
// bundle: a closed set of label values.
type FetchFailure string

// Fetch failures.
const (
	FetchOK          FetchFailure = ""            // not a failure
	FetchUnavailable FetchFailure = "unavailable" // no peer nor the origin served good bytes
	FetchRefused     FetchFailure = "refused"     // the bundle failed verification
	FetchCanceled    FetchFailure = "canceled"    // the agent stopped first
	FetchError       FetchFailure = "error"       // anything else (the store, a malformed request)
)

var fetchFailures = []FetchFailure{FetchUnavailable, FetchRefused, FetchCanceled, FetchError}

// DurationBuckets are the histogram buckets of every duration, in
// seconds: from a few milliseconds (an in-memory fetch, a quick
// transition) to five minutes (a stalled transition signalled and
// waited for).
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Options configure New.
type Options struct {
	// Version is the agent's version, exported in splicefleet_agent_info
	// and splicefleet_build_info.
	Version string
	// Revision is the commit it was built from and GoVersion the Go
	// version that built it (default: this binary's, runtime.Version),
	// exported in splicefleet_build_info as node_exporter does.
	Revision, GoVersion string
	// Sources are read at scrape time; a nil source's metrics are left out.
	Sources Sources
	// Logger receives a line when a source cannot be read. Default: none.
	Logger *slog.Logger
}

// Metrics is one agent's metrics: its registry, the counters and
// histograms of events, and the collector that reads state at scrape
// time. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	applies, undos, rollbacks, fetchFailures   *prometheus.CounterVec
	refusedDocs, badEvents                     *prometheus.CounterVec
	bundlesDropped, reloads                    *prometheus.CounterVec
	storedVerdicts                             *prometheus.CounterVec
	applyDur, undoDur, transitionDur, fetchDur prometheus.Histogram
}

// New makes an agent's metrics on a registry of their own.
func New(opts Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), log: opts.Logger}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	counter := func(name, help, label string, values []string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, []string{label})
		for _, v := range values {
			c.WithLabelValues(v)
		}
		return c
	}
	histogram := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: DurationBuckets})
	}
	results := make([]string, 0, len(Results))
	for _, r := range Results {
		results = append(results, string(r))
	}
	reasons := make([]string, 0, len(RollbackReasons))
	for _, r := range RollbackReasons {
		reasons = append(reasons, string(r))
	}
	m.applies = counter("applies_total", "Patch applies on this host by result.", "result", results)
	m.undos = counter("undos_total", "Patch undos on this host by result.", "result", results)
	m.rollbacks = counter("rollbacks_total",
		"Patches taken back off this host, by reason: canary_halt, health_check, operator, transition_timeout, crash_loop_guard.",
		"reason", reasons)
	failures := make([]string, 0, len(fetchFailures))
	for _, f := range fetchFailures {
		failures = append(failures, string(f))
	}
	m.fetchFailures = counter("fetch_failures_total",
		"Bundle downloads that did not end with a verified bundle, by reason: unavailable, refused, canceled, error.",
		"reason", failures)
	m.applyDur = histogram("apply_duration_seconds", "Time from the start of an apply until the patch is applied or refused, health window excluded.")
	m.undoDur = histogram("undo_duration_seconds", "Time an undo took, transition and unload included.")
	m.transitionDur = histogram("transition_duration_seconds", "Time a livepatch transition took to complete or to be reversed.")
	m.fetchDur = histogram("bundle_fetch_duration_seconds", "Time a bundle download from peers or the origin took, verification included.")
	m.refusedDocs, m.badEvents = newRolloutCounters()
	m.bundlesDropped = counter("bundles_dropped_total",
		"Bundles dropped from the agent's store for distribution, by reason: retention (no live rollout needed them for bundle_retention), forget (splicefleet forget, on this host or by signed command). Patches applied stay applied.",
		"reason", []string{string(DropRetention), string(DropForget)})
	m.reloads = counter("config_reloads_total",
		"Configuration reloads (SIGHUP) by result: applied, refused (a file that does not decode or validate, or a keyring that fails its checks: the agent keeps the configuration it had).",
		"result", []string{string(ReloadApplied), string(ReloadRefused)})
	m.reg.MustRegister(m.bundlesDropped, m.reloads)
	m.storedVerdicts = counter("stored_bundle_verdicts_total",
		"Stored bundles judged again before a re-apply at boot or an undo's put-back that did not simply pass, by verdict: refused (a signer's key revoked or no longer trusted, the threshold not met, the stored copy unsafe; the patch is not loaded) or kept_expired (expired after it was applied; loaded, with a warning).",
		"verdict", []string{splice.VerdictRefused, splice.VerdictKeptExpired})
	m.reg.MustRegister(m.storedVerdicts)
	m.reg.MustRegister(m.applies, m.undos, m.rollbacks, m.fetchFailures, m.applyDur, m.undoDur, m.transitionDur, m.fetchDur,
		m.refusedDocs, m.badEvents)
	m.reg.MustRegister(newStateCollector(opts.Version, opts.Sources, m.log))
	if opts.GoVersion == "" {
		opts.GoVersion = runtime.Version()
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info",
		Help:        "The build of the agent: version, the commit it was built from (revision) and the Go version; always 1.",
		ConstLabels: prometheus.Labels{"version": opts.Version, "revision": opts.Revision, "goversion": opts.GoVersion}})
	build.Set(1)
	m.reg.MustRegister(build)
	return m
}

// Register adds collectors of other parts of the agent to its registry:
// the extension point for metrics this package does not define (see the
// package documentation). A collector whose metrics clash with those
// already registered is refused.
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// Gatherer returns the registry, for tests and for exposition elsewhere.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the registry in the Prometheus exposition formats. A
// source that cannot be read never fails the scrape: its metrics are left
// out and splicefleet_scrape_source_success says so.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// ReloadResult is how a configuration reload ended.
type ReloadResult string

// How a reload ends.
const (
	ReloadApplied ReloadResult = "applied"
	ReloadRefused ReloadResult = "refused"
)

// ObserveReload counts a configuration reload by its result.
func (m *Metrics) ObserveReload(r ReloadResult) {
	if r != ReloadApplied {
		r = ReloadRefused
	}
	m.reloads.WithLabelValues(string(r)).Inc()
}

// ObserveApply counts an apply by its result and records how long it took
// (from its start until the patch was applied or refused, without the
// health window). Callers get r from [ResultOf].
func (m *Metrics) ObserveApply(r Result, d time.Duration) {
	m.applies.WithLabelValues(string(m.result(r))).Inc()
	m.applyDur.Observe(d.Seconds())
}

// ObserveUndo counts an undo by its result and records how long it took.
func (m *Metrics) ObserveUndo(r Result, d time.Duration) {
	m.undos.WithLabelValues(string(m.result(r))).Inc()
	m.undoDur.Observe(d.Seconds())
}

// ObserveTransition records how long a livepatch transition took, whether
// it completed or was reversed.
func (m *Metrics) ObserveTransition(d time.Duration) {
	m.transitionDur.Observe(d.Seconds())
}

// ObserveFetch records a bundle download: its duration, and unless f is
// FetchOK, a failure by reason (an unknown reason counts as FetchError).
func (m *Metrics) ObserveFetch(d time.Duration, f FetchFailure) {
	m.fetchDur.Observe(d.Seconds())
	if f == FetchOK {
		return
	}
	if !slices.Contains(fetchFailures, f) {
		f = FetchError
	}
	m.fetchFailures.WithLabelValues(string(f)).Inc()
}

// Rollback counts a patch taken back off this host. reason must be one of
// RollbackReasons; another value is logged and not counted, so that the
// label set stays closed.
func (m *Metrics) Rollback(reason RollbackReason) {
	if !slices.Contains(RollbackReasons, reason) {
		m.log.Error("rollback with an unknown reason is not counted", "reason", string(reason))
		return
	}
	m.rollbacks.WithLabelValues(string(reason)).Inc()
}

// StoredBundleVerdict counts a trust verdict on a stored bundle
// (splice.VerdictRefused or splice.VerdictKeptExpired); another value is
// logged and not counted.
func (m *Metrics) StoredBundleVerdict(verdict string) {
	if verdict != splice.VerdictRefused && verdict != splice.VerdictKeptExpired {
		m.log.Error("stored bundle verdict with an unknown value is not counted", "verdict", verdict)
		return
	}
	m.storedVerdicts.WithLabelValues(verdict).Inc()
}

func (m *Metrics) result(r Result) Result {
	if !slices.Contains(Results, r) {
		m.log.Error("unknown result counted as failed", "result", string(r))
		return ResultFailed
	}
	return r
}
