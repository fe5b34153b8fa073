// Package dashboards ships splicefleet's Grafana dashboards and Prometheus
// alert rules, and lists the PromQL in them so tests can check it.
//
// The dashboards (grafana/*.json) are generated from Go with the Grafana
// Foundation SDK by this package's tests (go test ./dashboards -update
// rewrites them; a plain run fails when a committed file is not what the
// Go definition makes), and decoded back strictly with the SDK's types.
// Every dashboard has a Prometheus datasource variable and job and
// instance filters. The alert rules (prometheus/alerts.yaml) come with
// promtool unit tests (prometheus/alerts_test.yaml), firing and not
// firing for every alert. The tests parse every expression with
// Prometheus's own parser and check that every metric it names is one the
// agent exports (the golden exposition of package metrics), and an
// end-to-end test in package agent runs every panel query against a real
// Prometheus scraping real agents.
//
// Halts, applies and rollbacks are Prometheus annotations on every
// dashboard ([Annotations]).
//
// The files are embedded, so [Queries], [Annotations] and [AlertExprs]
// read exactly what is shipped. Nothing here runs in the agent.
package dashboards

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed grafana/*.json prometheus/alerts.yaml
var files embed.FS

// Query is one PromQL expression of a dashboard panel.
type Query struct {
	Dashboard string // file name
	Panel     string // panel title
	RefID     string
	Expr      string // as written, with Grafana variables
}

// panelJSON is the part of a panel the queries live in; rows nest panels.
type panelJSON struct {
	Title   string      `json:"title"`
	Type    string      `json:"type"`
	Panels  []panelJSON `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// Queries lists every panel query of every dashboard, rows included.
func Queries() ([]Query, error) {
	names, err := fs.Glob(files, "grafana/*.json")
	if err != nil {
		return nil, err
	}
	var out []Query
	for _, name := range names {
		raw, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var d struct {
			Panels []panelJSON `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		var walk func([]panelJSON)
		walk = func(panels []panelJSON) {
			for _, p := range panels {
				for _, t := range p.Targets {
					out = append(out, Query{Dashboard: path.Base(name), Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
	}
	return out, nil
}

// Annotation is one Prometheus annotation query of a dashboard: the
// events it marks on every panel's time axis.
type Annotation struct {
	Dashboard string // file name
	Name      string
	Expr      string // as written, with Grafana variables
	// UseValueForTime: the series' value is the event's time, in
	// milliseconds since the epoch; otherwise the event lasts while the
	// series has a value.
	UseValueForTime bool
}

// Annotations lists every annotation query of every dashboard.
func Annotations() ([]Annotation, error) {
	names, err := fs.Glob(files, "grafana/*.json")
	if err != nil {
		return nil, err
	}
	var out []Annotation
	for _, name := range names {
		raw, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var d struct {
			Annotations struct {
				List []struct {
					Name            string `json:"name"`
					Expr            string `json:"expr"`
					UseValueForTime bool   `json:"useValueForTime"`
				} `json:"list"`
			} `json:"annotations"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, a := range d.Annotations.List {
			out = append(out, Annotation{Dashboard: path.Base(name), Name: a.Name, Expr: a.Expr, UseValueForTime: a.UseValueForTime})
		}
	}
	return out, nil
}

// AlertExprs lists every alert rule's expression by alert name.
func AlertExprs() (map[string]string, error) {
	raw, err := files.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		return nil, err
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		return nil, fmt.Errorf("alerts.yaml: %w", err)
	}
	out := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = strings.TrimSpace(r.Expr)
		}
	}
	return out, nil
}

// Expand replaces the Grafana variables the dashboards use with values
// Prometheus accepts: job and instance match everything the given job
// regex and instance regex match, and the interval variables become a
// fixed range.
func Expand(expr, job, instance, interval string) string {
	return strings.NewReplacer(
		"$__rate_interval", interval,
		"$__interval", interval,
		"$__range", interval,
		"$job", job,
		"$instance", instance,
	).Replace(expr)
}
