package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/dashboards"
	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/metrics"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// TestDashboardQueriesAgainstPrometheus starts a real Prometheus on
// loopback scraping five agents, then makes happen what the panels show (a
// patch applied from the command line, one applied and undone by the
// agent, a stalled transition reversed, a transition hanging, bundles a
// host still lacks, a bundle and a rollout plan from an untrusted signer
// refused, a rollout halted by its failing canary), and requires every
// panel query of every dashboard to return data that is not all NaN. The
// panels of events (rate, increase, quantiles of a histogram's rate) must
// show them: Prometheus scraped the counters at zero before the events,
// so each of those panels has a value above zero, but for the two no
// event here can move (see eventless). The canary's failed health check
// shows where an operator looks: Patches failed counts it on the canary,
// the cohort panel shows the rollout as halted, and the annotation
// queries mark the halt (at a time within the test), the applies and the
// health-check rollback. It loads the alert rules into that Prometheus:
// the halted rollout's alert fires, and so does the verification
// failures alert, for the bundle and for the plan. Last, an operator
// revokes a rollout every trusting host runs: its rollbacks show
// (reason operator, marked on the dashboards), the halted-rollout alert
// names it, and the rollback alert does not page for it, though its
// expression without the operator exclusion would.
func TestDashboardQueriesAgainstPrometheus(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is missing (Debian package prometheus): run make test-deps")
	}
	testStart := time.Now().Truncate(time.Second)
	f := newTestFleet(t)
	agents := f.startN(3)

	// The canary: the patch "bad" fails its health check there.
	cfg := f.config("node-03")
	cfg.Tags = map[string]string{"ring": "canary"}
	kernel := strings.TrimPrefix(cfg.Kernel, "sim:")
	if err := sim.Init(kernel, sim.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetFaults(kernel, sim.Faults{"lp_bad": {HealthFail: true}}); err != nil {
		t.Fatal(err)
	}
	canary := f.start(cfg)
	trusting := append(agents[:3:3], canary)

	// A rogue agent trusts a key the others do not, and publishes with it;
	// it refuses the fleet's rollout plan.
	stranger, err := signing.GenerateSigner("Stranger <x@example.com>", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cfg = f.config("rogue")
	pub, _ := stranger.Public().Armored()
	cfg.Keyring = filepath.Join(f.dir, "rogue.asc")
	if err := os.WriteFile(cfg.Keyring, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	rogue := f.start(cfg)
	all := append(trusting[:4:4], rogue)
	waitMembers(t, all, 5)

	// Prometheus scrapes every counter at zero before anything happens,
	// as it would in a fleet, so that the events below are increases.
	prom := startPrometheus(t, promBin, all)
	prom.waitScrapes(t, len(all), 2)

	// A rollout of "bad": its canary fails, and the rollout halts.
	_, bad := f.publishWithPlan(agents[0], "bad", 1, canaryPlan)

	// A published patch reaches every trusting agent.
	raw := f.bundleFixing(t, "cve-e2e", 1, "CVE-2024-1086")
	v, err := agents[0].Publish(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rogue.Publish(f.bundle("rogue", 1, stranger, 0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the trusting agents hold the patch", func() error { return holdAll(trusting, v.ManifestDigest) })
	// It is rolled out, and waits in a first stage that holds no host:
	// the hosts that do not run it lack it (a bundle only published is
	// not outstanding).
	if _, err := agents[0].StartRollout(f.signedPlan(v.ManifestDigest, planFor("cve-e2e", "BUNDLE"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the untrusted bundle is refused", func() error {
		if agents[1].fetcher.Stats().VerificationFailures["signature"] == 0 {
			return fmt.Errorf("not refused yet")
		}
		return nil
	})

	// node-01: applied from the command line.
	cliApply(t, f, agents[1], raw)

	// node-00: the agent applies and undoes a patch, as the rollout
	// engine will, then a patch hangs in its transition.
	a0 := agents[0]
	tmp := f.bundleFixing(t, "tmp", 1)
	start := time.Now()
	_, err = applyWith(t, f, a0, a0.kernel, tmp)
	a0.Metrics().ObserveApply(metrics.ResultOf(err), time.Since(start))
	if err != nil {
		t.Fatalf("agent apply: %v", err)
	}
	undoWith(t, a0, "tmp")

	// A revoke: an operator takes a patch off every host that runs it, on
	// purpose (checked in Prometheus below).
	_, revoked := f.publishWithPlan(agents[0], "revoked", 1, `id: revoked
bundle: BUNDLE
stages:
  - percent: 100
gates:
  health_window: 300ms
`)
	eventually(t, 60*time.Second, "every trusting host runs the patch to be revoked", func() error {
		for _, a := range trusting {
			if !slices.Contains(kernelState(t, a), "lp_revoked") {
				return fmt.Errorf("%s runs %v", a.Name(), kernelState(t, a))
			}
		}
		return nil
	})
	if _, err := agents[0].Command(f.command(f.signer, rollout.Command{Plan: revoked.Digest, Seq: 1, Action: rollout.ActionRevoke, Reason: "operator test"})); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, trusting, revoked.Digest, rollout.Halted, 60*time.Second)
	eventually(t, 60*time.Second, "the revoke rolled back every trusting host", func() error {
		for _, a := range trusting {
			if slices.Contains(kernelState(t, a), "lp_revoked") {
				return fmt.Errorf("%s still runs lp_revoked", a.Name())
			}
		}
		return nil
	})
	hang(t, a0, "lp_hang")

	// node-02: the agent's apply stalls and is reversed.
	a2 := agents[2]
	// Short timeouts on a copy of its kernel: the agent's own engine
	// may be waiting on a transition of the same kernel right now.
	stalling := *a2.kernel
	stalling.Timeouts = kmod.Timeouts{Stall: 50 * time.Millisecond, AfterSignal: 50 * time.Millisecond, Poll: 5 * time.Millisecond}
	setFaults(t, a2, sim.Faults{sim.AnyModule: {Never: true}})
	start = time.Now()
	_, err = applyWith(t, f, a2, &stalling, f.bundleFixing(t, "stalls", 1))
	a2.Metrics().ObserveApply(metrics.ResultOf(err), time.Since(start))
	if err == nil {
		t.Fatal("the stalled apply succeeded")
	}
	setFaults(t, a2, nil)

	waitRollout(t, trusting, bad.Digest, rollout.Halted, 60*time.Second)
	// It refuses the plan again whenever a peer offers it.
	eventually(t, 30*time.Second, "the rogue refuses the plan", func() error {
		return atLeast(scrape(t, rogue), `splicefleet_rollout_documents_refused_total{kind="plan",reason="signature"}`, 1)
	})

	queries, err := dashboards.Queries()
	if err != nil {
		t.Fatal(err)
	}
	// Every panel query returns data, and the panels of events show them;
	// retried while scrapes come in. The range covers the whole test, as
	// a dashboard's time range would.
	deadline := time.Now().Add(30 * time.Second)
	for _, q := range queries {
		expr := dashboards.Expand(q.Expr, "splicefleet", ".*", "10m")
		_, quiet := eventless[q.Panel+"/"+q.RefID]
		for {
			values, err := prom.query(expr)
			if err == nil {
				err = panelShows(values, eventPanel(q.Expr) && !quiet)
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s, panel %q, query %s: %v\n%s", q.Dashboard, q.Panel, q.RefID, err, expr)
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	// The canary failed its health check: the agent undid the patch (its
	// journal says reverted) and the host failed the rollout. Patches
	// failed counts it, on the canary alone; and the cohort panel shows
	// the rollout as halted, and only as halted.
	const haltedID = "bad" // the plan ID of the rollout that halts
	panel := func(title string) []dashboards.Query {
		var out []dashboards.Query
		for _, q := range queries {
			if q.Dashboard == "fleet-overview.json" && q.Panel == title {
				out = append(out, q)
			}
		}
		if len(out) == 0 {
			t.Fatalf("no panel %q", title)
		}
		return out
	}
	failed := dashboards.Expand(panel("Patches failed")[0].Expr, "splicefleet", canary.HTTPAddr(), "10m")
	eventually(t, 30*time.Second, "Patches failed counts the canary's failed health check", func() error {
		values, err := prom.query(failed)
		if err != nil {
			return err
		}
		if !slices.Equal(values, []float64{1}) {
			return fmt.Errorf("Patches failed on the canary shows %v, want 1", values)
		}
		return nil
	})
	cohort := panel("Cohort of the open stage")
	for _, c := range []struct {
		ref        string
		halted     bool
		wantStatus string
	}{{"A", false, ""}, {"B", true, "failed"}} {
		expr := dashboards.Expand(cohort[slices.IndexFunc(cohort, func(q dashboards.Query) bool { return q.RefID == c.ref })].Expr, "splicefleet", ".*", "10m")
		series, err := prom.series(expr)
		if err != nil {
			t.Fatal(err)
		}
		var bad []map[string]string
		for _, s := range series {
			if s.labels["rollout"] == haltedID {
				bad = append(bad, s.labels)
			}
		}
		if !c.halted && len(bad) != 0 {
			t.Errorf("the cohort panel shows the halted rollout as live: %v", bad)
		}
		if c.halted && !slices.ContainsFunc(series, func(s promSeries) bool {
			return s.labels["rollout"] == haltedID && s.labels["status"] == c.wantStatus && s.value == 1
		}) {
			t.Errorf("the cohort panel does not show the halted rollout's failed canary as halted: %v", series)
		}
	}
	// The annotations mark the halt, the applies and the canary's
	// rollback, at times within the test.
	annotations, err := dashboards.Annotations()
	if err != nil {
		t.Fatal(err)
	}
	if len(annotations) < 6 {
		t.Fatalf("%d annotation queries, want 3 on each dashboard", len(annotations))
	}
	for _, a := range annotations {
		expr := dashboards.Expand(a.Expr, "splicefleet", ".*", "10m")
		series, err := prom.series(expr)
		if err != nil {
			t.Errorf("%s, annotation %q: %v\n%s", a.Dashboard, a.Name, err, expr)
			continue
		}
		if len(series) == 0 {
			t.Errorf("%s, annotation %q marks nothing:\n%s", a.Dashboard, a.Name, expr)
			continue
		}
		for _, s := range series {
			if a.UseValueForTime {
				at := time.UnixMilli(int64(s.value))
				if at.Before(testStart) || at.After(time.Now()) {
					t.Errorf("%s, annotation %q marks %v %s, outside the test (from %s)", a.Dashboard, a.Name, s.labels, at, testStart)
				}
			} else if s.value <= 0 {
				t.Errorf("%s, annotation %q: %v at %g", a.Dashboard, a.Name, s.labels, s.value)
			}
		}
		switch a.Name {
		case "Rollouts halted":
			if !slices.ContainsFunc(series, func(s promSeries) bool { return s.labels["rollout"] == haltedID }) {
				t.Errorf("%s: the halt of %s is not marked: %v", a.Dashboard, haltedID, series)
			}
		case "Rollbacks":
			if !slices.ContainsFunc(series, func(s promSeries) bool { return s.labels["reason"] == string(metrics.RollbackHealthCheck) }) {
				t.Errorf("%s: the canary's health-check rollback is not marked: %v", a.Dashboard, series)
			}
		}
	}
	if rules := prom.alertRules(t); rules != 7 {
		t.Errorf("Prometheus loaded %d alert rules, want 7", rules)
	}
	eventually(t, 20*time.Second, "the halted rollout's alert fires", func() error {
		firing, err := prom.firing("SplicefleetRolloutHalted")
		if err != nil {
			return err
		}
		if !slices.Equal(firing, []string{"bad", "revoked"}) {
			return fmt.Errorf("firing for rollouts %v", firing)
		}
		return nil
	})
	// The untrusted bundle and the untrusted plan are both possible
	// attacks.
	eventually(t, 20*time.Second, "the verification failures alert fires for the bundle and the plan", func() error {
		alerts, err := prom.firingLabels("SplicefleetVerificationFailures")
		if err != nil {
			return err
		}
		bundle := slices.ContainsFunc(alerts, func(l map[string]string) bool { return l["reason"] == "signature" && l["kind"] == "" })
		plan := slices.ContainsFunc(alerts, func(l map[string]string) bool {
			return l["reason"] == "signature" && l["kind"] == "plan" && l["instance"] == rogue.HTTPAddr()
		})
		if !bundle || !plan {
			return fmt.Errorf("firing %v: for the bundle %t, for the plan %t", alerts, bundle, plan)
		}
		return nil
	})

	// The revoke's rollbacks, as Prometheus and the alerts see them: they
	// show where an operator looks, the rollout is marked as ended, and
	// the rollback alert does not page for them, though there are enough
	// of them to page for a bad patch.
	operatorRollbacks := `sum(increase(splicefleet_rollbacks_total{reason="operator"}[10m]))`
	eventually(t, 30*time.Second, "Prometheus sees the operator's rollbacks", func() error {
		values, err := prom.query(operatorRollbacks)
		if err != nil {
			return err
		}
		if len(values) != 1 || values[0] < float64(len(trusting))-0.5 {
			return fmt.Errorf("%s = %v, want about %d", operatorRollbacks, values, len(trusting))
		}
		return nil
	})
	// Counted without the exclusion, these rollbacks cross the alert's
	// threshold: only the exclusion keeps it quiet.
	exprs, err := dashboards.AlertExprs()
	if err != nil {
		t.Fatal(err)
	}
	spike := exprs["SplicefleetRollbackSpike"]
	unfiltered := strings.Replace(spike, `{reason!="operator"}`, "", 1)
	if unfiltered == spike {
		t.Fatalf("the rollback alert no longer excludes the operator's rollbacks: %s", spike)
	}
	eventually(t, 30*time.Second, "the rollbacks would page without the exclusion", func() error {
		values, err := prom.query(unfiltered)
		if err != nil {
			return err
		}
		if len(values) == 0 {
			return fmt.Errorf("the unfiltered rollback alert expression returns nothing")
		}
		return nil
	})
	// Give the rule a few evaluations (every second) over data that holds
	// the rollbacks, then it must not be firing, nor pending.
	time.Sleep(3 * time.Second)
	for _, state := range []string{"firing", "pending"} {
		alerts, err := prom.alertsIn("SplicefleetRollbackSpike", state)
		if err != nil {
			t.Fatal(err)
		}
		if len(alerts) != 0 {
			t.Errorf("the rollback alert is %s for an operator's revoke: %v", state, alerts)
		}
	}
	annotated := false
	for _, a := range annotations {
		if a.Name != "Rollbacks" {
			continue
		}
		series, err := prom.series(dashboards.Expand(a.Expr, "splicefleet", ".*", "10m"))
		if err != nil {
			t.Fatal(err)
		}
		annotated = annotated || slices.ContainsFunc(series, func(s promSeries) bool { return s.labels["reason"] == string(metrics.RollbackOperator) })
	}
	if !annotated {
		t.Error("the revoke's rollbacks are not marked on the dashboards")
	}
}

// eventless are the event panels (by title and query) that no event of
// TestDashboardQueriesAgainstPrometheus moves, and why: they must return
// series, at zero.
var eventless = map[string]string{
	"Refused plans and commands, bad rollout events/B": "no agent sends a rollout gossip event that does not decode",
	"Fetch failures and bad announcements/B":           "no agent announces a malformed bundle",
}

// eventPanel reports whether a panel query shows events (a counter's rate
// or increase, or a quantile of a histogram's rate) rather than state.
func eventPanel(expr string) bool {
	return strings.Contains(expr, "rate(") || strings.Contains(expr, "increase(")
}

// panelShows checks a panel query's values: at least one series, not all
// NaN (a quantile of a histogram with no observations), and when events
// must show, at least one value above zero.
func panelShows(values []float64, events bool) error {
	if len(values) == 0 {
		return fmt.Errorf("no series")
	}
	if !slices.ContainsFunc(values, func(v float64) bool { return !math.IsNaN(v) }) {
		return fmt.Errorf("%d series, all NaN", len(values))
	}
	if events && !slices.ContainsFunc(values, func(v float64) bool { return v > 0 }) {
		return fmt.Errorf("no event shows: %d series, values %v", len(values), values)
	}
	return nil
}

// undoWith undoes a patch through the agent's kernel and reports it.
func undoWith(t *testing.T, a *Agent, id string) {
	t.Helper()
	h, err := splice.OpenHost(context.Background(), splice.HostConfig{StateDir: a.cfg.StateDir, Kernel: a.kernel, Inspect: InspectModule, Logger: warnLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	start := time.Now()
	_, _, err = h.Undo(context.Background(), id)
	a.Metrics().ObserveUndo(metrics.ResultOf(err), time.Since(start))
	if err != nil {
		t.Fatalf("undo: %v", err)
	}
}

// hang loads a livepatch module straight into the agent's simulated
// kernel with transitions that never finish, and does not wait.
func hang(t *testing.T, a *Agent, name string) {
	t.Helper()
	setFaults(t, a, sim.Faults{name: {Never: true}})
	path := filepath.Join(t.TempDir(), name+".ko")
	if err := os.WriteFile(path, fakemodule.Build(fakemodule.Options{Name: name, Livepatch: true, Functions: []string{"g"}}), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if err := a.kernel.Load(context.Background(), file, name, false); err != nil {
		t.Fatal(err)
	}
}

func setFaults(t *testing.T, a *Agent, faults sim.Faults) {
	t.Helper()
	if err := sim.SetFaults(strings.TrimPrefix(a.cfg.Kernel, "sim:"), faults); err != nil {
		t.Fatal(err)
	}
}

// testPrometheus is a Prometheus server this test started.
type testPrometheus struct {
	base string
}

// startPrometheus runs Prometheus on a free loopback port, scraping the
// agents every second as job "splicefleet", with the shipped alert rules.
func startPrometheus(t *testing.T, bin string, agents []*Agent) *testPrometheus {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs("../dashboards/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, a := range agents {
		targets = append(targets, fmt.Sprintf("%q", a.HTTPAddr()))
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: splicefleet
    static_configs:
      - targets: [%s]
`, rules, strings.Join(targets, ", "))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			t.Logf("prometheus log:\n%s", out)
		}
	})
	p := &testPrometheus{base: "http://" + addr}
	eventually(t, 30*time.Second, "prometheus ready", func() error {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ready: %s", resp.Status)
		}
		return nil
	})
	return p
}

// waitScrapes waits until every one of n targets is up and has been
// scraped at least samples times, so that rate() has points to work with.
func (p *testPrometheus) waitScrapes(t *testing.T, n, samples int) {
	t.Helper()
	eventually(t, 45*time.Second, "prometheus scraped every agent", func() error {
		values, err := p.query(fmt.Sprintf(`count_over_time(up{job="splicefleet"}[1m]) >= %d and up{job="splicefleet"} == 1`, samples))
		if err != nil {
			return err
		}
		if got := len(values); got != n {
			return fmt.Errorf("%d of %d targets up with %d scrapes", got, n, samples)
		}
		return nil
	})
}

// promSeries is one series of an instant query's result.
type promSeries struct {
	labels map[string]string
	value  float64
}

// query runs an instant query and returns the value of every series it
// returned.
func (p *testPrometheus) query(expr string) ([]float64, error) {
	series, err := p.series(expr)
	if err != nil {
		return nil, err
	}
	values := make([]float64, 0, len(series))
	for _, s := range series {
		values = append(values, s.value)
	}
	return values, nil
}

// series runs an instant query and returns every series it returned,
// with its labels.
func (p *testPrometheus) series(expr string) ([]promSeries, error) {
	resp, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query failed: %s", r.Error)
	}
	var result []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"` // [time, "value"]
	}
	if err := json.Unmarshal(r.Data.Result, &result); err != nil {
		return nil, fmt.Errorf("result is not a vector: %s", r.Data.Result)
	}
	out := make([]promSeries, 0, len(result))
	for _, s := range result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64) // Prometheus writes NaN and +Inf as ParseFloat reads them
		if err != nil {
			return nil, fmt.Errorf("value %v: %w", s.Value[1], err)
		}
		out = append(out, promSeries{labels: s.Metric, value: v})
	}
	return out, nil
}

// alertRules counts the alerting rules Prometheus loaded.
func (p *testPrometheus) alertRules(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(p.base + "/api/v1/rules?type=alert")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Groups []struct {
				Rules []json.RawMessage `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range r.Data.Groups {
		n += len(g.Rules)
	}
	return n
}

// firing lists the rollout label of the alerts named alertname that
// Prometheus says are firing, sorted.
func (p *testPrometheus) firing(alertname string) ([]string, error) {
	alerts, err := p.firingLabels(alertname)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range alerts {
		out = append(out, a["rollout"])
	}
	slices.Sort(out)
	return out, nil
}

// firingLabels lists the labels of the alerts named alertname that
// Prometheus says are firing.
func (p *testPrometheus) firingLabels(alertname string) ([]map[string]string, error) {
	return p.alertsIn(alertname, "firing")
}

// alertsIn lists the labels of the alerts named alertname that Prometheus
// holds in state (pending or firing).
func (p *testPrometheus) alertsIn(alertname, state string) ([]map[string]string, error) {
	resp, err := http.Get(p.base + "/api/v1/alerts")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	var out []map[string]string
	for _, a := range r.Data.Alerts {
		if a.Labels["alertname"] == alertname && a.State == state {
			out = append(out, a.Labels)
		}
	}
	return out, nil
}

// atLeast checks that an exposition has the series with a value of at
// least min.
func atLeast(text, series string, minimum float64) error {
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("%s: %w", series, err)
			}
			if f < minimum {
				return fmt.Errorf("%s is %s, want at least %g", series, v, minimum)
			}
			return nil
		}
	}
	return fmt.Errorf("no series %s", series)
}
