// The SDK marks its classic dashboard model deprecated in favour of the
// v2 schema; the classic JSON is what Grafana's file provisioning reads in
// every current release, so the dashboards keep it.
//
//nolint:staticcheck // the classic dashboard model, see above
package dashboards_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/splicefleet/splicefleet/dashboards"
)

var update = flag.Bool("update", false, "rewrite grafana/*.json from the Go definitions")

// goldenExposition is every splicefleet_ metric the agent exports.
const goldenExposition = "../metrics/testdata/exposition.golden"

var definitions = map[string]func() *dashboard.DashboardBuilder{
	"fleet-overview.json": fleetOverview,
	"host-detail.json":    hostDetail,
}

// sdkErr turns the SDK's errors into nil when they carry no message: on
// success its strict decoder and Validate may return a non-nil error with
// an empty message.
func sdkErr(err error) error {
	if err == nil || err.Error() == "" {
		return nil
	}
	return err
}

// TestDashboardsAreCurrent: the committed JSON is what the Go definitions
// make.
func TestDashboardsAreCurrent(t *testing.T) {
	for name, def := range definitions {
		d, err := def().Build()
		if err := sdkErr(err); err != nil {
			t.Fatalf("%s: build: %v", name, err)
		}
		got, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		path := filepath.Join("grafana", name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./dashboards -update)", err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s is not what its Go definition makes (-committed +generated); rerun with -update:\n%s", path, diff)
		}
	}
	files, _ := filepath.Glob("grafana/*.json")
	if len(files) != len(definitions) {
		t.Errorf("grafana/ holds %v; the Go definitions make %d dashboards", files, len(definitions))
	}
}

// TestDashboardsDecodeStrictly: every committed dashboard decodes with
// the SDK's strict decoders (an unknown field anywhere, panel options,
// field config and queries included, is an error) and validates; it
// filters by a Prometheus datasource variable, job and instance, and
// every panel queries through that datasource.
func TestDashboardsDecodeStrictly(t *testing.T) {
	for name := range definitions {
		raw, err := os.ReadFile(filepath.Join("grafana", name))
		if err != nil {
			t.Fatal(err)
		}
		panels, errs := checkDashboard(raw)
		for _, err := range errs {
			t.Errorf("%s: %v", name, err)
		}
		if panels < 8 {
			t.Errorf("%s: only %d panels decoded", name, panels)
		}
	}
}

// TestStrictCheckRefusesUnknownFields: the check above fails on a field
// Grafana's schema does not have, wherever it is.
func TestStrictCheckRefusesUnknownFields(t *testing.T) {
	raw, err := os.ReadFile("grafana/host-detail.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ where, old, new string }{
		{"dashboard", `"uid": "splicefleet-host",`, `"uid": "splicefleet-host", "colour": "red",`},
		{"panel", `"title": "Kernel",`, `"title": "Kernel", "colour": "red",`},
		{"options", `"showHeader": true,`, `"showHeader": true, "colour": "red",`},
		{"field config", `"align": "auto",`, `"align": "auto", "colour": "red",`},
		{"query", `"legendFormat": "{{livepatch}}",`, `"legendFormat": "{{livepatch}}", "colour": "red",`},
		{"variable", `"name": "job",`, `"name": "job", "colour": "red",`},
	} {
		bad := strings.Replace(string(raw), c.old, c.new, 1)
		if bad == string(raw) {
			t.Fatalf("%s: %q not found in host-detail.json", c.where, c.old)
		}
		_, errs := checkDashboard([]byte(bad))
		if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), "colour") {
			t.Errorf("an unknown field in a %s passed: %v", c.where, errs)
		}
	}
}

// checkDashboard decodes a dashboard strictly, level by level: the SDK's
// dashboard decoder silently drops a panel, a query or options whose own
// strict decode returned its empty non-nil error, so each is decoded here
// with its own strict decoder. It returns the number of panels.
func checkDashboard(raw []byte) (int, []error) {
	plugins.RegisterDefaultPlugins()
	var errs []error
	var d dashboard.Dashboard
	if err := sdkErr(d.UnmarshalJSONStrict(raw)); err != nil {
		errs = append(errs, fmt.Errorf("strict decode: %w", err))
	}
	if err := sdkErr(d.Validate()); err != nil {
		errs = append(errs, fmt.Errorf("validate: %w", err))
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
		if v.Name == "datasource" && (v.Type != "datasource" || v.Query == nil || v.Query.String == nil || *v.Query.String != "prometheus") {
			errs = append(errs, fmt.Errorf("the datasource variable does not pick a Prometheus datasource: %+v", v))
		}
	}
	if !slices.Equal(vars, []string{"datasource", "job", "instance"}) {
		errs = append(errs, fmt.Errorf("variables %v, want datasource, job, instance", vars))
	}
	var top struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return 0, append(errs, err)
	}
	panels := 0
	var check func(where string, rp json.RawMessage)
	check = func(where string, rp json.RawMessage) {
		var parts struct {
			Type        string            `json:"type"`
			Title       string            `json:"title"`
			Options     json.RawMessage   `json:"options"`
			FieldConfig json.RawMessage   `json:"fieldConfig"`
			Targets     []json.RawMessage `json:"targets"`
			Panels      []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(rp, &parts); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			return
		}
		where = fmt.Sprintf("%s (%q)", where, parts.Title)
		fail := func(what string, err error) {
			if err = sdkErr(err); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", where, what, err))
			}
		}
		if parts.Type == "row" {
			var row dashboard.RowPanel
			fail("strict decode", row.UnmarshalJSONStrict(rp))
			fail("validate", row.Validate())
			for i, p := range parts.Panels {
				check(fmt.Sprintf("%s.panels[%d]", where, i), p)
			}
			return
		}
		panels++
		var p dashboard.Panel
		fail("strict decode", p.UnmarshalJSONStrict(rp))
		fail("validate", p.Validate())
		cfg, ok := cog.ConfigForPanelcfgVariant(parts.Type)
		if !ok {
			fail("type", fmt.Errorf("panel type %q is unknown", parts.Type))
			return
		}
		_, err := cfg.StrictOptionsUnmarshaler(parts.Options)
		fail("options", err)
		var fc dashboard.FieldConfigSource
		fail("fieldConfig", fc.UnmarshalJSONStrict(parts.FieldConfig))
		var custom struct {
			Defaults struct {
				Custom json.RawMessage `json:"custom"`
			} `json:"defaults"`
		}
		if json.Unmarshal(parts.FieldConfig, &custom) == nil && custom.Defaults.Custom != nil && cfg.StrictFieldConfigUnmarshaler != nil {
			_, err := cfg.StrictFieldConfigUnmarshaler(custom.Defaults.Custom)
			fail("fieldConfig.defaults.custom", err)
		}
		if p.Datasource == nil || p.Datasource.Uid == nil || *p.Datasource.Uid != "${datasource}" {
			fail("datasource", errors.New("the panel does not use the datasource variable"))
		}
		if len(parts.Targets) == 0 {
			fail("targets", errors.New("no query"))
		}
		for i, rt := range parts.Targets {
			var q prometheus.Dataquery
			fail(fmt.Sprintf("targets[%d]", i), q.UnmarshalJSONStrict(rt))
			fail(fmt.Sprintf("targets[%d]", i), q.Validate())
			if q.Expr == "" || q.Datasource == nil || q.Datasource.Uid == nil || *q.Datasource.Uid != "${datasource}" {
				fail(fmt.Sprintf("targets[%d]", i), errors.New("a query without an expression or the datasource variable"))
			}
		}
	}
	for i, rp := range top.Panels {
		check(fmt.Sprintf("panels[%d]", i), rp)
	}
	return panels, errs
}

// exported reads the golden exposition: every family with its label names.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(goldenExposition)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	types := map[string]string{}
	for line := range strings.Lines(string(raw)) {
		f := strings.Fields(line)
		if len(f) == 4 && f[1] == "TYPE" {
			types[f[2]] = f[3]
			out[f[2]] = nil
			continue
		}
		if strings.HasPrefix(line, "#") || len(f) == 0 {
			continue
		}
		name, labels, _ := strings.Cut(f[0], "{")
		for _, kv := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
			if k, _, ok := strings.Cut(kv, "="); ok && !slices.Contains(out[name], k) {
				out[name] = append(out[name], k)
			}
		}
	}
	// A histogram's series carry the suffixes.
	for name, typ := range types {
		if typ == "histogram" {
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = []string{"le"}, nil, nil
		}
	}
	return out
}

// expressions lists every PromQL expression shipped: panel queries,
// annotation queries and alert rules, with Grafana's variables expanded.
func expressions(t *testing.T) map[string]string {
	t.Helper()
	queries, err := dashboards.Queries()
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) < 20 {
		t.Fatalf("only %d panel queries found", len(queries))
	}
	out := map[string]string{}
	for _, q := range queries {
		out[fmt.Sprintf("%s %q %s", q.Dashboard, q.Panel, q.RefID)] = dashboards.Expand(q.Expr, "splicefleet", ".*", "5m")
	}
	annotations, err := dashboards.Annotations()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range annotations {
		out[fmt.Sprintf("%s annotation %q", a.Dashboard, a.Name)] = dashboards.Expand(a.Expr, "splicefleet", ".*", "5m")
	}
	alerts, err := dashboards.AlertExprs()
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 7 {
		t.Fatalf("%d alerts, want 7", len(alerts))
	}
	for name, expr := range alerts {
		out["alert "+name] = expr
	}
	return out
}

// TestExpressionsParseAndNameExportedMetrics: Prometheus's parser accepts
// every expression, and every metric one selects is one the agent exports
// (or up, which Prometheus itself records), with label matchers only on
// labels that metric has.
func TestExpressionsParseAndNameExportedMetrics(t *testing.T) {
	metrics := exported(t)
	p := parser.NewParser(parser.Options{})
	for where, expr := range expressions(t) {
		ast, err := p.ParseExpr(expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", where, err, expr)
			continue
		}
		selectors := 0
		parser.Inspect(ast, func(node parser.Node, _ []parser.Node) error {
			vs, ok := node.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			selectors++
			if vs.Name == "up" {
				return nil
			}
			labels, ok := metrics[vs.Name]
			if !ok {
				t.Errorf("%s: metric %q is not exported by the agent", where, vs.Name)
				return nil
			}
			for _, m := range vs.LabelMatchers {
				if m.Name != "__name__" && m.Name != "job" && m.Name != "instance" && !slices.Contains(labels, m.Name) {
					t.Errorf("%s: %s has no label %q (it has %v)", where, vs.Name, m.Name, labels)
				}
			}
			return nil
		})
		if selectors == 0 {
			t.Errorf("%s selects no metric: %s", where, expr)
		}
	}
}

// TestAlertRules: promtool checks the rules and runs their unit tests,
// which make every alert fire and not fire.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing (Debian package prometheus): run make test-deps")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every alert has a unit test that expects it to fire and one that
	// expects it not to.
	raw, err := os.ReadFile("prometheus/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	alerts, _ := dashboards.AlertExprs()
	for name := range alerts {
		fires := bytes.Count(raw, []byte("alertname: "+name+"\n        exp_alerts:\n"))
		quiet := bytes.Count(raw, []byte("alertname: "+name+"\n        exp_alerts: []\n"))
		if fires == 0 || quiet == 0 {
			t.Errorf("alert %s: %d firing and %d quiet unit tests", name, fires, quiet)
		}
	}
}
