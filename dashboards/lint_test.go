package dashboards_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/splicefleet/splicefleet/dashboards"
)

// The dashboard lint: rules every shipped dashboard keeps, read from the
// committed JSON as Grafana will, whatever made it.

// lintPanel is what the lint reads of a panel; rows nest panels.
type lintPanel struct {
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Description string       `json:"description"`
	Datasource  *lintSource  `json:"datasource"`
	Panels      []lintPanel  `json:"panels"`
	Targets     []lintTarget `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			NoValue    string `json:"noValue"`
			Thresholds *struct {
				Mode  string `json:"mode"`
				Steps []struct {
					Value *float64 `json:"value"`
					Color string   `json:"color"`
				} `json:"steps"`
			} `json:"thresholds"`
			Links []struct {
				Title string `json:"title"`
				URL   string `json:"url"`
			} `json:"links"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

type lintSource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type lintTarget struct {
	RefID      string      `json:"refId"`
	Datasource *lintSource `json:"datasource"`
}

type lintDashboard struct {
	UID        string      `json:"uid"`
	Panels     []lintPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string      `json:"name"`
			Type       string      `json:"type"`
			Datasource *lintSource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string      `json:"name"`
			Enable     bool        `json:"enable"`
			Datasource *lintSource `json:"datasource"`
			Expr       string      `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

// templated reports whether a datasource reference is the dashboard's
// Prometheus datasource variable.
func templated(ds *lintSource) bool {
	return ds != nil && ds.Type == "prometheus" && ds.UID == "${datasource}"
}

// lint checks one dashboard: every panel has a description, every stat
// panel thresholds and a noValue, every panel, query, variable and
// annotation uses the templated datasource, and every annotation query
// is PromQL that Prometheus's parser accepts and that selects metrics
// the agent exports.
func lint(raw []byte, metrics map[string][]string) []error {
	var d lintDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return []error{err}
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var walk func([]lintPanel)
	walk = func(panels []lintPanel) {
		for _, p := range panels {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if strings.TrimSpace(p.Description) == "" {
				fail("panel %q has no description", p.Title)
			}
			if !templated(p.Datasource) {
				fail("panel %q does not use the datasource variable: %+v", p.Title, p.Datasource)
			}
			for _, t := range p.Targets {
				if !templated(t.Datasource) {
					fail("panel %q query %s does not use the datasource variable: %+v", p.Title, t.RefID, t.Datasource)
				}
			}
			if p.Type == "stat" {
				th := p.FieldConfig.Defaults.Thresholds
				if th == nil || th.Mode == "" || len(th.Steps) < 2 {
					fail("stat panel %q has no thresholds (a base colour and at least one step): %+v", p.Title, th)
				}
				if p.FieldConfig.Defaults.NoValue == "" {
					fail("stat panel %q has no noValue", p.Title)
				}
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type == "query" && !templated(v.Datasource) {
			fail("variable %s does not use the datasource variable: %+v", v.Name, v.Datasource)
		}
	}
	if len(d.Annotations.List) == 0 {
		fail("no annotation queries")
	}
	p := parser.NewParser(parser.Options{})
	for _, a := range d.Annotations.List {
		if !templated(a.Datasource) {
			fail("annotation %q does not use the datasource variable: %+v", a.Name, a.Datasource)
		}
		if !a.Enable {
			fail("annotation %q is not enabled", a.Name)
		}
		ast, err := p.ParseExpr(dashboards.Expand(a.Expr, "splicefleet", ".*", "5m"))
		if err != nil {
			fail("annotation %q: %v", a.Name, err)
			continue
		}
		selectors := 0
		parser.Inspect(ast, func(node parser.Node, _ []parser.Node) error {
			if vs, ok := node.(*parser.VectorSelector); ok {
				selectors++
				if _, ok := metrics[vs.Name]; !ok {
					fail("annotation %q: metric %q is not exported by the agent", a.Name, vs.Name)
				}
			}
			return nil
		})
		if selectors == 0 {
			fail("annotation %q selects no metric: %s", a.Name, a.Expr)
		}
	}
	return errs
}

// TestDashboardLint: every shipped dashboard passes the lint.
func TestDashboardLint(t *testing.T) {
	metrics := exported(t)
	for name := range definitions {
		raw, err := os.ReadFile(filepath.Join("grafana", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range lint(raw, metrics) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestLintFails: the lint finds each fault it looks for.
func TestLintFails(t *testing.T) {
	raw, err := os.ReadFile("grafana/fleet-overview.json")
	if err != nil {
		t.Fatal(err)
	}
	metrics := exported(t)
	if errs := lint(raw, metrics); len(errs) != 0 {
		t.Fatalf("the shipped dashboard fails: %v", errs)
	}
	for _, c := range []struct{ fault, old, new, want string }{
		{"no noValue", `"noValue": "0"`, `"noValue": ""`, "has no noValue"},
		{"no thresholds", `"thresholds": {`, `"nothresholds": {`, "has no thresholds"},
		{"no description", `"description": "Agents whose metrics Prometheus scraped.",`, ``, `panel "Agents reporting" has no description`},
		{"a fixed datasource", `"uid": "${datasource}"`, `"uid": "P1809F7CD0C75ACF3"`, "does not use the datasource variable"},
		{"an annotation that does not parse", `"expr": "max by (rollout) (splicefleet_rollout_ended_timestamp_seconds`, `"expr": "max by (rollout) ((splicefleet_rollout_ended_timestamp_seconds`, `annotation "Rollouts halted"`},
		{"an annotation on a metric nobody exports", `splicefleet_rollbacks_total{job=~\"$job\",instance=~\"$instance\"}[$__rate_interval])) \u003e 0`, `splicefleet_rolbacks_total{job=~\"$job\",instance=~\"$instance\"}[$__rate_interval])) \u003e 0`, `metric "splicefleet_rolbacks_total" is not exported`},
	} {
		bad := strings.Replace(string(raw), c.old, c.new, 1)
		if bad == string(raw) {
			t.Fatalf("%s: %q not found in fleet-overview.json", c.fault, c.old)
		}
		errs := lint([]byte(bad), metrics)
		if !strings.Contains(fmt.Sprint(errs), c.want) {
			t.Errorf("%s: the lint said %v, want %q", c.fault, errs, c.want)
		}
	}
}

// TestHostTableLinksToHostDashboard: every row of the fleet's host table
// links to the host dashboard, by its uid, for the row's instance and
// job, with the datasource and time range the fleet dashboard shows.
func TestHostTableLinksToHostDashboard(t *testing.T) {
	var fleet, host lintDashboard
	for name, d := range map[string]*lintDashboard{"fleet-overview.json": &fleet, "host-detail.json": &host} {
		raw, err := os.ReadFile(filepath.Join("grafana", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, d); err != nil {
			t.Fatal(err)
		}
	}
	var table *lintPanel
	for i, p := range fleet.Panels {
		if p.Type == "table" && p.Title == "Hosts" {
			table = &fleet.Panels[i]
		}
	}
	if table == nil {
		t.Fatal("the fleet dashboard has no Hosts table")
	}
	links := table.FieldConfig.Defaults.Links
	if len(links) != 1 {
		t.Fatalf("the Hosts table has %d data links, want 1", len(links))
	}
	url := links[0].URL
	for _, want := range []string{"/d/" + host.UID + "/", "var-instance=${__data.fields.instance}", "var-job=${__data.fields.job}",
		"var-datasource=${datasource}", "${__url_time_range}"} {
		if !strings.Contains(url, want) {
			t.Errorf("the host link %q lacks %q", url, want)
		}
	}
	if host.UID == "" {
		t.Error(errors.New("the host dashboard has no uid"))
	}
}
