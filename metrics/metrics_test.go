package metrics_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/internal/testutil"
	"github.com/splicefleet/splicefleet/metrics"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

var update = flag.Bool("update", false, "rewrite testdata/exposition.golden")

// goldenPath is the golden exposition, relative to this package; the
// dashboards' tests check the metrics they name against it.
const goldenPath = "testdata/exposition.golden"

type fakeKernel struct{ err error }

func (k fakeKernel) Info() (splice.KernelInfo, error) {
	return splice.KernelInfo{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64", BuildID: "1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e",
		Livepatch: true, Simulated: true}, k.err
}

func (k fakeKernel) Patches() ([]splice.KernelPatch, error) {
	return []splice.KernelPatch{{Name: "lp_nft_verdict_2", Enabled: true}, {Name: "lp_foreign", Enabled: true, Transition: true}}, k.err
}

func (k fakeKernel) TaintFlags() (map[string]bool, error) {
	return map[string]bool{"proprietary_module": false, "oot_module": true, "livepatch": true, "warn": false}, k.err
}

var march = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func fakeSources(stateDir string) metrics.Sources {
	target := splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"}
	return metrics.Sources{
		StateDir: stateDir,
		Kernel:   fakeKernel{},
		Bundles: func() ([]metrics.Bundle, error) {
			return []metrics.Bundle{
				{ID: "cve-2024-1086", Version: 2, Target: target, Stored: march, Wanted: true},
				{ID: "cve-2024-1086", Version: 3, Target: target, Stored: march.Add(48 * time.Hour), Wanted: true},
				{ID: "cmdline", Version: 1, Target: target, Stored: march.Add(24 * time.Hour), Wanted: true},
				{ID: "elsewhere", Version: 1, Target: splice.Target{Release: "6.12.0-1-cloud-amd64", Arch: "x86_64"}, Stored: march, Wanted: true},
				// For this kernel, but no live rollout targets this host
				// with it (published only, or its rollout ended).
				{ID: "halted", Version: 1, Target: target, Stored: march},
			}, nil
		},
		Gossip: func() gossip.Stats {
			return gossip.Stats{EventsReceived: 120, AnnouncementsReceived: 7, BadAnnouncements: 2, UnknownProtocol: 1, OutsiderMessages: 4,
				EventsDropped: 3, QueriesAnswered: 9, QueryErrors: 1, QueriesDropped: 0, QueueDepth: 4,
				IntentQueue: 1, EventQueue: 2, QueryQueue: 0, HealthScore: 0, Protocol: 2,
				Members: map[string]int{"alive": 4, "failed": 1}}
		},
		Distribution: func() metrics.Distribution {
			return metrics.Distribution{HeadsServed: 6, ModulesServed: 3, HeadBytesServed: 6000, ModuleBytesServed: 3 << 20,
				Busy: 2, NotFound: 1, BadRequests: 1, HeadsFetched: 2, ModulesFetched: 2, BytesFromPeers: 1 << 20,
				BytesFromOrigin: 2048, BadPeerResponses: 1, NegativeCacheHits: 5, AntiEntropyFetches: 4,
				VerificationFailures: map[string]uint64{"signature": 2, "module_digest": 1, "something-new": 1},
				FetchesDropped:       map[string]map[string]uint64{"document": {"member_budget": 124, "not_a_member": 1}},
				SourcesDemoted:       3, SourcesRefused: 2, HolderClaimsRefused: 3}
		},
		Rollouts: func() []rollout.Status { return fakeRollouts },
		Listeners: func() []metrics.Listener {
			return []metrics.Listener{
				{Name: "http", Open: 12, Refused: map[string]uint64{"limit": 3, "source_limit": 40}},
				{Name: "control", Open: 1},
			}
		},
	}
}

// fakeRollouts are three rollouts in acceptance order: one done, one
// halted by its canary (this host's own apply failed), one running in its
// second stage.
var fakeRollouts = []rollout.Status{
	{ID: "cmdline-fix", State: rollout.Done, Open: 1, Self: rollout.SelfStatus{State: rollout.StateHealthy},
		Stages: []rollout.StageStatus{
			{Name: "canary", Cohort: 1, Applied: 1, Healthy: 1, Passed: true},
			{Name: "100%", Cohort: 5, Applied: 5, Healthy: 5, Passed: true},
		}},
	{ID: "nft-verdict", State: rollout.Halted, EndedAt: time.Unix(1780000000, 0), Open: 0, Self: rollout.SelfStatus{State: rollout.StateFailed},
		Stages: []rollout.StageStatus{
			{Name: "canary", Cohort: 2, Applied: 1, Healthy: 1, Failed: 1},
			{Name: "10%", Cohort: 6},
			{Name: "100%", Cohort: 40},
		}},
	{ID: "cve-2024-1086.wave-2", State: rollout.Running, Open: 1, Self: rollout.SelfStatus{State: rollout.StateApplying},
		Stages: []rollout.StageStatus{
			{Name: "canary", Cohort: 2, Applied: 2, Healthy: 2, Passed: true},
			// 4 healthy, 2 applying, 4 without a report
			{Name: "25%", Cohort: 10, Applied: 6, Healthy: 4, Waiting: 6},
			{Name: "100%", Cohort: 40, Applied: 6, Healthy: 4, Waiting: 36},
		}},
}

// goldenMetrics is an agent's metrics over fixed sources, after a fixed
// series of events.
func goldenMetrics(t *testing.T) *metrics.Metrics {
	t.Helper()
	m := metrics.New(metrics.Options{Version: "1.2.3", Revision: "0123456789ab", GoVersion: "go1.27.3", Sources: fakeSources("testdata/state"), Logger: testLogger(t)})
	m.ObserveApply(metrics.ResultSuccess, 1200*time.Millisecond)
	m.ObserveApply(metrics.ResultRejected, 30*time.Millisecond)
	m.ObserveUndo(metrics.ResultSuccess, 400*time.Millisecond)
	m.ObserveTransition(800 * time.Millisecond)
	m.ObserveFetch(120*time.Millisecond, metrics.FetchOK)
	m.ObserveFetch(2*time.Second, metrics.FetchUnavailable)
	m.Rollback(metrics.RollbackTransitionTimeout)
	m.RolloutRefused("plan", "signature")
	m.RolloutRefused("command", "replayed")
	m.RolloutRefused("command", "replayed")
	m.RolloutBadEvent("sf-doc")
	return m
}

func exposition(t *testing.T, g prometheus.Gatherer) []byte {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestExpositionGolden pins every metric name, help text, type, label and
// value; regenerate with go test ./metrics -update after a deliberate
// change, and review the diff.
func TestExpositionGolden(t *testing.T) {
	got := exposition(t, goldenMetrics(t).Gatherer())
	if *update {
		if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run go test ./metrics -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Fatalf("exposition differs from %s (-want +got); if intended, rerun with -update:\n%s", goldenPath, diff)
	}
}

// TestExpositionPassesPromtool runs Prometheus's own linter on the
// exposition.
func TestExpositionPassesPromtool(t *testing.T) {
	testutil.PromtoolCheckMetrics(t, exposition(t, goldenMetrics(t).Gatherer()))
}

// TestStateFollowsTheJournal: a patch applied by another process (the
// command line) shows at the next scrape, and the bundle it applies is no
// longer outstanding.
func TestStateFollowsTheJournal(t *testing.T) {
	dir := t.TempDir()
	raw, err := os.ReadFile("testdata/state/journal.json")
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{Version: "x", Sources: fakeSources(dir), Logger: testLogger(t)})
	before := string(exposition(t, m.Gatherer()))
	for _, want := range []string{
		`splicefleet_bundle_outstanding{patch="cve-2024-1086",version="2"} 1`,
		`splicefleet_scrape_source_success{source="journal"} 1`,
	} {
		if !strings.Contains(before, want+"\n") {
			t.Errorf("without a journal: no %s", want)
		}
	}
	if strings.Contains(before, "splicefleet_patch_state{") {
		t.Errorf("patch states without a journal:\n%s", before)
	}
	if err := os.WriteFile(filepath.Join(dir, "journal.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	after := string(exposition(t, m.Gatherer()))
	for _, want := range []string{
		`splicefleet_patch_state{module="lp_nft_verdict_2",patch="cve-2024-1086",state="applied",version="2"} 1`,
		`splicefleet_bundle_outstanding{patch="cve-2024-1086",version="2"} 0`,
		`splicefleet_bundle_outstanding{patch="cve-2024-1086",version="3"} 1`,
		`splicefleet_bundle_outstanding{patch="elsewhere",version="1"} 0`,
		`splicefleet_bundle_outstanding{patch="halted",version="1"} 0`,
	} {
		if !strings.Contains(after, want+"\n") {
			t.Errorf("with the journal: no %s", want)
		}
	}
	// The journal is replaced by a rename, as the host lifecycle writes
	// it: the next scrape reads the new one.
	changed := strings.Replace(string(raw), `"state": "applied"`, `"state": "reverted"`, 1)
	tmp := filepath.Join(dir, "journal.json.tmp")
	if err := os.WriteFile(tmp, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "journal.json")); err != nil {
		t.Fatal(err)
	}
	again := string(exposition(t, m.Gatherer()))
	for _, want := range []string{
		`splicefleet_patch_state{module="lp_nft_verdict_2",patch="cve-2024-1086",state="reverted",version="2"} 1`,
		`splicefleet_bundle_outstanding{patch="cve-2024-1086",version="2"} 1`,
	} {
		if !strings.Contains(again, want+"\n") {
			t.Errorf("after the journal changed: no %s", want)
		}
	}
}

// TestUnreadableSourceKeepsTheScrape: a damaged journal and a failing
// kernel are reported in splicefleet_scrape_source_success; the rest is
// still served.
func TestUnreadableSourceKeepsTheScrape(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "journal.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := fakeSources(dir)
	src.Kernel = fakeKernel{err: errors.New("sysfs is gone")}
	m := metrics.New(metrics.Options{Version: "x", Sources: src, Logger: testLogger(t)})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, body)
	}
	for _, want := range []string{
		`splicefleet_scrape_source_success{source="journal"} 0`,
		`splicefleet_scrape_source_success{source="kernel"} 0`,
		`splicefleet_scrape_source_success{source="bundles"} 1`,
		`splicefleet_gossip_members{status="alive"} 4`,
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("no %s in\n%s", want, body)
		}
	}
}

// TestPatchSeriesAreBounded: a journal with more patches than MaxPatches
// exports the live ones and the newest others, and counts the rest.
func TestPatchSeriesAreBounded(t *testing.T) {
	dir := t.TempDir()
	type patch struct {
		ID        string    `json:"id"`
		Version   uint64    `json:"version"`
		Module    string    `json:"module"`
		Functions []string  `json:"functions"`
		State     string    `json:"state"`
		Stack     int       `json:"stack"`
		Updated   time.Time `json:"updated"`
	}
	var patches []patch
	extra := 50
	for i := range metrics.MaxPatches + extra {
		state := "reverted"
		if i == 0 {
			state = "applied" // the oldest, but live: always exported
		}
		patches = append(patches, patch{ID: fmt.Sprintf("p%03d", i), Version: 1, Module: fmt.Sprintf("lp_%03d", i),
			Functions: []string{"f"}, State: state, Stack: i + 1, Updated: march.Add(time.Duration(i) * time.Minute)})
	}
	raw, _ := json.Marshal(map[string]any{"format": 1, "patches": patches, "next_stack": len(patches) + 1})
	if err := os.WriteFile(filepath.Join(dir, "journal.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{Sources: metrics.Sources{StateDir: dir}, Logger: testLogger(t)})
	text := string(exposition(t, m.Gatherer()))
	if n := strings.Count(text, "splicefleet_patch_state{"); n != metrics.MaxPatches {
		t.Errorf("%d patch series, want %d", n, metrics.MaxPatches)
	}
	for _, want := range []string{
		fmt.Sprintf(`splicefleet_scrape_items_omitted{kind="patch"} %d`, extra),
		`splicefleet_patch_state{module="lp_000",patch="p000",state="applied",version="1"} 1`,
		`splicefleet_patch_state{module="lp_249",patch="p249",state="reverted",version="1"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("no %s", want)
		}
	}
	if strings.Contains(text, `patch="p001"`) {
		t.Error("the oldest reverted patch is exported")
	}
}

// TestRolloutSeriesAreBounded: an agent following more rollouts than
// MaxRollouts exports the most recently accepted ones and counts the
// rest; a rollout's cohort statuses add up to its open stage's cohort.
func TestRolloutSeriesAreBounded(t *testing.T) {
	var statuses []rollout.Status
	extra := 5
	for i := range metrics.MaxRollouts + extra {
		statuses = append(statuses, rollout.Status{ID: fmt.Sprintf("r%02d", i), State: rollout.Running,
			Stages: []rollout.StageStatus{{Name: "canary", Cohort: 3, Applied: 2, Healthy: 1, Waiting: 2}}})
	}
	m := metrics.New(metrics.Options{Sources: metrics.Sources{Rollouts: func() []rollout.Status { return statuses }}, Logger: testLogger(t)})
	text := string(exposition(t, m.Gatherer()))
	if n := strings.Count(text, "splicefleet_rollout_stage{"); n != metrics.MaxRollouts {
		t.Errorf("%d rollouts exported, want %d", n, metrics.MaxRollouts)
	}
	last := metrics.MaxRollouts + extra - 1
	for _, want := range []string{
		fmt.Sprintf(`splicefleet_scrape_items_omitted{kind="rollout"} %d`, extra),
		fmt.Sprintf(`splicefleet_rollout_state{rollout="r%02d",state="running"} 1`, extra),
		fmt.Sprintf(`splicefleet_rollout_stage{rollout="r%02d"} 1`, last),
		fmt.Sprintf(`splicefleet_rollout_hosts{rollout="r%02d",status="healthy"} 1`, last),
		fmt.Sprintf(`splicefleet_rollout_hosts{rollout="r%02d",status="applying"} 1`, last),
		fmt.Sprintf(`splicefleet_rollout_hosts{rollout="r%02d",status="waiting"} 1`, last),
		fmt.Sprintf(`splicefleet_rollout_host_state{rollout="r%02d",state="none"} 1`, last),
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("no %s", want)
		}
	}
	if strings.Contains(text, fmt.Sprintf(`rollout="r%02d"`, extra-1)) {
		t.Error("an older rollout is exported")
	}
}

// TestLabelSetsStayClosed: an unknown rollback reason, result, refusal
// reason, document kind or event name does not add a label value.
func TestLabelSetsStayClosed(t *testing.T) {
	m := metrics.New(metrics.Options{Logger: testLogger(t)})
	m.Rollback("because")
	m.ObserveApply("weird", time.Second)
	m.ObserveFetch(time.Second, "strange")
	m.RolloutRefused("plan", "odd")
	m.RolloutRefused("plan", "")
	m.RolloutRefused("memo", "signature")
	m.RolloutBadEvent("sf-other")
	text := string(exposition(t, m.Gatherer()))
	for _, bad := range []string{"because", "weird", "strange", "odd", "memo", "sf-other"} {
		if strings.Contains(text, bad) {
			t.Errorf("label value %q exported", bad)
		}
	}
	for _, want := range []string{
		`splicefleet_applies_total{result="failed"} 1`,
		`splicefleet_fetch_failures_total{reason="error"} 1`,
		`splicefleet_rollbacks_total{reason="operator"} 0`,
		`splicefleet_rollout_documents_refused_total{kind="plan",reason="refused"} 2`,
		`splicefleet_rollout_documents_refused_total{kind="command",reason="signature"} 0`,
		`splicefleet_rollout_bad_events_total{event="sf-doc"} 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("no %s", want)
		}
	}
}

func TestResultOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want metrics.Result
	}{
		{nil, metrics.ResultSuccess},
		{fmt.Errorf("x: %w", splice.ErrAlreadyApplied), metrics.ResultNoop},
		{&splice.RejectError{Reason: splice.ErrSignature}, metrics.ResultRejected},
		{fmt.Errorf("undo: %w", splice.ErrNotApplied), metrics.ResultRejected},
		{splice.ErrNoLivepatch, metrics.ResultRejected},
		{errors.New("load lp_x: EKEYREJECTED"), metrics.ResultFailed},
	} {
		if got := metrics.ResultOf(c.err); got != c.want {
			t.Errorf("ResultOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// TestRegisterExtends: another part of the agent adds its collectors; a
// clash is refused.
func TestRegisterExtends(t *testing.T) {
	m := metrics.New(metrics.Options{Logger: testLogger(t)})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "splicefleet_extension_stage", Help: "The stage."})
	g.Set(2)
	if err := m.Register(g); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(exposition(t, m.Gatherer())), "splicefleet_extension_stage 2\n") {
		t.Fatal("registered gauge not exported")
	}
	for _, clash := range []prometheus.Collector{
		prometheus.NewCounter(prometheus.CounterOpts{Name: "splicefleet_applies_total", Help: "Again."}),
		prometheus.NewGauge(prometheus.GaugeOpts{Name: "splicefleet_rollout_stage", Help: "Again."}),
	} {
		if err := m.Register(clash); err == nil {
			t.Fatal("a clashing collector was registered")
		}
	}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}
