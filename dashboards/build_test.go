// The SDK marks its classic dashboard model deprecated in favour of the
// v2 schema; the classic JSON is what Grafana's file provisioning reads in
// every current release, so the dashboards keep it.
//
//nolint:staticcheck // the classic dashboard model, see above
package dashboards_test

import (
	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The dashboards, defined in Go with the Grafana Foundation SDK. The
// committed JSON in grafana/ is what these make (TestDashboardsAreCurrent;
// go test ./dashboards -update rewrites it).

// sel filters by the dashboards' job and instance variables.
const sel = `job=~"$job",instance=~"$instance"`

var datasource = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Expr(expr).LegendFormat(legend).Datasource(datasource)
}

func instant(expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Expr(expr).Instant().Format(prometheus.PromQueryFormatTable).Datasource(datasource)
}

func timeSeries(title, description, unit string, queries ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(description).Unit(unit).Datasource(datasource).
		Height(8).Span(12).FillOpacity(10)
	for i, q := range queries {
		p.WithTarget(q.RefId(string(rune('A' + i))))
	}
	return p
}

// Thresholds of the stat panels: red when something is wrong, green
// when not.
var (
	// redFromOne: any at all is something to look at (failures, stuck
	// transitions, hosts lacking a patch).
	redFromOne = []dashboard.Threshold{{Color: "green"}, {Value: cog.ToPtr(1.0), Color: "red"}}
	// greenFromOne: none at all is wrong (no agent reporting).
	greenFromOne = []dashboard.Threshold{{Color: "red"}, {Value: cog.ToPtr(1.0), Color: "green"}}
)

// statPanel is a single number. A count() over nothing returns no
// series, so every stat says 0 rather than No data, and colours by its
// thresholds.
func statPanel(title, description, expr string, steps []dashboard.Threshold) *stat.PanelBuilder {
	return stat.NewPanelBuilder().Title(title).Description(description).Datasource(datasource).Height(4).Span(6).
		Thresholds(dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps)).
		NoValue("0").
		WithTarget(query(expr, "").RefId("A"))
}

// failedPatches are the patches that failed on each host, one series per
// host and patch or rollout: those the journal holds as failed (refused
// by the kernel, a stalled transition, stopped by the crash-loop guard),
// and the rollouts a host failed, which is where a failed health check
// shows: the agent undoes the patch, so the journal says reverted. A
// patch the kernel refused in a rollout is in both; the rollout failures
// count only on hosts without a failed patch in their journal, so it
// counts once.
const failedPatches = `count by (job, instance, patch) (splicefleet_patch_state{` + sel + `,state="failed"})` +
	` or on (job, instance) count by (job, instance, rollout) (splicefleet_rollout_host_state{` + sel + `,state="failed"} == 1)`

// ended selects the rollouts that ended without finishing: halted,
// rolled back or revoked.
const ended = `max by (rollout) (splicefleet_rollout_state{` + sel + `,state=~"halted|rolled-back|revoked"}) == 1`

// annotations mark on every panel's time axis when rollouts halted and
// when the agents applied and rolled back patches, through the dashboard's
// datasource, filtered by its job and instance variables.
func annotations(b *dashboard.DashboardBuilder) *dashboard.DashboardBuilder {
	anno := func(name, colour, expr string) *dashboard.AnnotationQueryBuilder {
		return dashboard.NewAnnotationQueryBuilder().Name(name).Datasource(datasource).Enable(true).IconColor(colour).Expr(expr)
	}
	return b.
		// The agents record when a rollout ended: the series' value, in
		// milliseconds, is the annotation's time.
		Annotation(anno("Rollouts halted", "red", `max by (rollout) (splicefleet_rollout_ended_timestamp_seconds{`+sel+`}) * 1000`).
			UseValueForTime(true).TagKeys("rollout").TitleFormat("rollout {{rollout}} halted").
			TextFormat("halted, rolled back or revoked: splicefleet rollout status {{rollout}} says why")).
		Annotation(anno("Applies", "blue", `sum by (result) (increase(splicefleet_applies_total{`+sel+`}[$__rate_interval])) > 0`).
			TagKeys("result").TitleFormat("apply {{result}}").TextFormat("patch applies by the agents")).
		Annotation(anno("Rollbacks", "orange", `sum by (reason) (increase(splicefleet_rollbacks_total{`+sel+`}[$__rate_interval])) > 0`).
			TagKeys("reason").TitleFormat("rollback: {{reason}}").TextFormat("patches taken back off hosts"))
}

func barGauge(title, description, expr, legend string) *bargauge.PanelBuilder {
	return bargauge.NewPanelBuilder().Title(title).Description(description).Datasource(datasource).Height(8).Span(12).
		Orientation(common.VizOrientationHorizontal).WithTarget(instant(expr).LegendFormat(legend).RefId("A"))
}

func tablePanel(title, description, expr string) *table.PanelBuilder {
	return table.NewPanelBuilder().Title(title).Description(description).Datasource(datasource).Height(8).Span(24).
		Footer(common.NewTableFooterOptionsBuilder().Reducer([]string{"sum"})).WithTarget(instant(expr).RefId("A"))
}

func quantiles(metric string) []*prometheus.DataqueryBuilder {
	return []*prometheus.DataqueryBuilder{
		query(`histogram_quantile(0.5, sum by (le) (rate(`+metric+`_bucket{`+sel+`}[$__rate_interval])))`, "p50"),
		query(`histogram_quantile(0.95, sum by (le) (rate(`+metric+`_bucket{`+sel+`}[$__rate_interval])))`, "p95"),
	}
}

// variables are every dashboard's filters: the Prometheus datasource, the
// scrape job and the instances.
func variables(b *dashboard.DashboardBuilder, multiInstance bool) *dashboard.DashboardBuilder {
	return b.WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder("job").Label("Job").Datasource(datasource).
			Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(splicefleet_agent_info, job)")}).
			Refresh(dashboard.VariableRefreshOnDashboardLoad).Sort(dashboard.VariableSortAlphabeticalAsc).Multi(true).IncludeAll(true)).
		WithVariable(dashboard.NewQueryVariableBuilder("instance").Label("Host").Datasource(datasource).
			Query(dashboard.StringOrMap{String: cog.ToPtr(`label_values(splicefleet_agent_info{job=~"$job"}, instance)`)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(multiInstance).IncludeAll(multiInstance))
}

func fleetOverview() *dashboard.DashboardBuilder {
	b := dashboard.NewDashboardBuilder("splicefleet: fleet overview").
		Uid("splicefleet-fleet").
		Description("Hot kernel patches across the fleet: who runs what, what failed, and how bundles spread.").
		Tags([]string{"splicefleet"}).Refresh("30s").Time("now-6h", "now").Tooltip(dashboard.DashboardCursorSyncCrosshair)
	b = annotations(variables(b, true))
	return b.
		WithRow(dashboard.NewRowBuilder("Patches")).
		WithPanel(statPanel("Agents reporting", "Agents whose metrics Prometheus scraped.",
			`count(splicefleet_agent_info{`+sel+`})`, greenFromOne)).
		WithPanel(statPanel("Hosts in a livepatch transition", "Hosts whose kernel has a livepatch in transition now; one that stays here is stuck.",
			`sum(max by (job, instance) (splicefleet_livepatch_transition{`+sel+`}))`, redFromOne)).
		WithPanel(statPanel("Hosts lacking a patch rolled out to them", "Hosts that a running or paused rollout targets with a bundle they hold, and that run neither it nor a newer version.",
			`count(max by (job, instance) (splicefleet_bundle_outstanding{`+sel+`}) == 1)`, redFromOne)).
		WithPanel(statPanel("Patches failed", "Patches that failed on a host: refused by the kernel, a stalled transition, stopped by the crash-loop guard, or undone after a failed health check (the host failed the rollout; its journal says reverted). The host table and the host dashboard say where.",
			`count(`+failedPatches+`)`, redFromOne)).
		WithPanel(hostsTable()).
		WithPanel(barGauge("Hosts patched, per patch", "Hosts whose journal has the patch applied.",
			`count by (patch, version) (splicefleet_patch_state{`+sel+`,state="applied"})`, "{{patch}} v{{version}}")).
		WithPanel(barGauge("Hosts patched, per CVE", "Hosts that run a patch fixing the CVE.",
			`count by (cve) (count by (job, instance, cve) (splicefleet_patch_cve_info{`+sel+`} and on (job, instance, patch, version) splicefleet_patch_state{state="applied"}))`, "{{cve}}")).
		WithPanel(timeSeries("Hosts by patch state", "Hosts with at least one patch in each state.", "short",
			query(`count by (state) (count by (job, instance, state) (splicefleet_patch_state{`+sel+`}))`, "{{state}}"))).
		WithPanel(timeSeries("Hosts lacking a patch rolled out to them, per patch", "Hosts that a running or paused rollout targets with a bundle they hold and do not run, per patch; a bundle held only for distribution does not count.", "short",
			query(`count by (patch, version) (splicefleet_bundle_outstanding{`+sel+`} == 1)`, "{{patch}} v{{version}}"))).
		WithRow(dashboard.NewRowBuilder("Rollouts")).
		WithPanel(rolloutsTable()).
		WithPanel(cohortPanel()).
		WithPanel(timeSeries("Hosts by their own state", "Hosts by the state each reports for itself in each rollout: applying, healthy, failed, rolled-back, halted (hosts not yet in it are left out).", "short",
			query(`count by (rollout, state) (splicefleet_rollout_host_state{`+sel+`,state!="none"} == 1)`, "{{rollout}} {{state}}"))).
		WithPanel(timeSeries("Halted rollouts", "1 from the moment a host saw the rollout halt; a halt is final. splicefleet rollout status ROLLOUT says why.", "short",
			query(`max by (rollout) (splicefleet_rollout_state{`+sel+`,state=~"halted|rolled-back|revoked"}) == 1`, "{{rollout}}"))).
		WithPanel(timeSeries("Refused plans and commands, bad rollout events", "Signed plans and operator commands the agents refused, by kind and reason, and rollout gossip events that did not decode.", "short",
			query(`sum by (kind, reason) (increase(splicefleet_rollout_documents_refused_total{`+sel+`}[$__rate_interval]))`, "{{kind}} {{reason}}"),
			query(`sum by (event) (increase(splicefleet_rollout_bad_events_total{`+sel+`}[$__rate_interval]))`, "bad event {{event}}"))).
		WithRow(dashboard.NewRowBuilder("Failures")).
		WithPanel(timeSeries("Applies and undos by result", "Applies and undos the agents made, per second.", "ops",
			query(`sum by (result) (rate(splicefleet_applies_total{`+sel+`}[$__rate_interval]))`, "apply {{result}}"),
			query(`sum by (result) (rate(splicefleet_undos_total{`+sel+`}[$__rate_interval]))`, "undo {{result}}"))).
		WithPanel(timeSeries("Rollbacks by reason", "Patches taken back off hosts.", "short",
			query(`sum by (reason) (increase(splicefleet_rollbacks_total{`+sel+`}[$__rate_interval]))`, "{{reason}}"))).
		WithPanel(timeSeries("Verification failures (possible attacks)", "Bundles from the fleet refused on verification, by reason: forged, tampered or replayed bundles show here.", "short",
			query(`sum by (reason) (increase(splicefleet_verification_failures_total{`+sel+`}[$__rate_interval]))`, "{{reason}}"))).
		WithPanel(timeSeries("Fetch failures and bad announcements", "Bundle downloads that failed, and gossip announcements refused.", "short",
			query(`sum by (reason) (increase(splicefleet_fetch_failures_total{`+sel+`}[$__rate_interval]))`, "fetch {{reason}}"),
			query(`sum by (reason) (increase(splicefleet_gossip_bad_announcements_total{`+sel+`}[$__rate_interval]))`, "announcement {{reason}}"))).
		WithRow(dashboard.NewRowBuilder("Durations")).
		WithPanel(timeSeries("Apply duration", "From the start of an apply until the patch is applied or refused.", "s",
			quantiles("splicefleet_apply_duration_seconds")...)).
		WithPanel(timeSeries("Transition duration", "Livepatch transitions, completed or reversed.", "s",
			quantiles("splicefleet_transition_duration_seconds")...)).
		WithPanel(timeSeries("Undo duration", "Undos, transition and unload included.", "s",
			quantiles("splicefleet_undo_duration_seconds")...)).
		WithPanel(timeSeries("Bundle fetch duration", "Bundle downloads from peers and the origin, verification included.", "s",
			quantiles("splicefleet_bundle_fetch_duration_seconds")...)).
		WithRow(dashboard.NewRowBuilder("Gossip and distribution")).
		WithPanel(timeSeries("Members by status", "Cluster members by status, as the agent that knows most sees them.", "short",
			query(`max by (status) (splicefleet_gossip_members{`+sel+`})`, "{{status}}"))).
		WithPanel(timeSeries("Gossip events and queues", "Events received per second, and the deepest gossip queues.", "short",
			query(`sum(rate(splicefleet_gossip_events_received_total{`+sel+`}[$__rate_interval]))`, "events received/s"),
			query(`max by (queue) (splicefleet_gossip_queue_depth{`+sel+`})`, "queue {{queue}}"))).
		WithPanel(timeSeries("Bundle bytes served and fetched", "What the blob services sent to peers, and what agents fetched from peers and from origins.", "Bps",
			query(`sum(rate(splicefleet_blob_served_bytes_total{`+sel+`}[$__rate_interval]))`, "served to peers"),
			query(`sum by (source) (rate(splicefleet_fetched_bytes_total{`+sel+`}[$__rate_interval]))`, "fetched from {{source}}")))
}

// rolloutsTable lists every rollout with its state and stage, as the
// hosts see it (a rollout that hosts see in different states has a row
// per state), and its open stage's cohort, healthy and failed hosts.
func rolloutsTable() *table.PanelBuilder {
	p := table.NewPanelBuilder().Title("Rollouts").
		Description("Every rollout the agents follow: its state and open stage as the hosts see it, the number of stages, and the hosts of the open stage's cohort, healthy and failed. splicefleet rollout status ROLLOUT tells more.").
		Datasource(datasource).Height(8).Span(24).
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"}))
	for i, expr := range []string{
		`max by (rollout, state) (splicefleet_rollout_state{` + sel + `} == 1) * on (rollout) group_left () max by (rollout) (splicefleet_rollout_stage{` + sel + `})`,
		`max by (rollout) (splicefleet_rollout_stages{` + sel + `})`,
		`max by (rollout) (sum by (job, instance, rollout) (splicefleet_rollout_hosts{` + sel + `}))`,
		`max by (rollout) (splicefleet_rollout_hosts{` + sel + `,status="healthy"})`,
		`max by (rollout) (splicefleet_rollout_hosts{` + sel + `,status="failed"})`,
	} {
		p.WithTarget(instant(expr).RefId(string(rune('A' + i))))
	}
	return p.
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]bool{"Time": true},
			"indexByName":   map[string]int{"rollout": 0, "state": 1, "Value #A": 2, "Value #B": 3, "Value #C": 4, "Value #D": 5, "Value #E": 6},
			"renameByName": map[string]string{"Value #A": "stage", "Value #B": "of stages", "Value #C": "cohort",
				"Value #D": "healthy", "Value #E": "failed"},
		}})
}

// hostDashboard is where the fleet's host table links, for one host:
// the datasource, job and instance of the row, and the time range shown.
const hostDashboard = "/d/splicefleet-host/splicefleet-host?var-datasource=${datasource}" +
	"&var-job=${__data.fields.job}&var-instance=${__data.fields.instance}&${__url_time_range}"

// hostsTable lists every host: its kernel, how many patches it runs,
// lacks and failed; a click on a row opens the host dashboard for it.
func hostsTable() *table.PanelBuilder {
	p := table.NewPanelBuilder().Title("Hosts").
		Description("Every host: its kernel, the patches it runs, the rolled-out patches it lacks and the patches that failed on it (as in Patches failed). Click a host for its dashboard.").
		Datasource(datasource).Height(8).Span(24).
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"})).
		DataLinks([]cog.Builder[dashboard.DashboardLink]{
			dashboard.NewDashboardLinkBuilder("Host ${__data.fields.instance}").Type(dashboard.DashboardLinkTypeLink).Url(hostDashboard),
		})
	for i, expr := range []string{
		`max by (job, instance, release) (splicefleet_kernel_info{` + sel + `})`,
		`count by (job, instance) (splicefleet_patch_state{` + sel + `,state="applied"})`,
		`count by (job, instance) (splicefleet_bundle_outstanding{` + sel + `} == 1)`,
		`count by (job, instance) (` + failedPatches + `)`,
	} {
		p.WithTarget(instant(expr).RefId(string(rune('A' + i))))
	}
	return p.
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]bool{"Time": true, "Value #A": true},
			"indexByName":   map[string]int{"instance": 0, "job": 1, "release": 2, "Value #B": 3, "Value #C": 4, "Value #D": 5},
			"renameByName":  map[string]string{"release": "kernel", "Value #B": "patches applied", "Value #C": "lacking", "Value #D": "failed"},
		}})
}

// cohortPanel shows the cohort of each rollout's open stage by status;
// a rollout that ended without finishing (halted, rolled back, revoked)
// shows as halted, in red and dashed, so that a frozen cohort does not
// read as one waiting to move on.
func cohortPanel() *timeseries.PanelBuilder {
	cohort := `max by (rollout, status) (splicefleet_rollout_hosts{` + sel + `})`
	return timeSeries("Cohort of the open stage", "The hosts of each rollout's open stage and the earlier ones, by status, as the agent that knows most sees them; they add up to the cohort. A rollout that halted, rolled back or was revoked shows as halted, in red.", "short",
		query(cohort+` unless on (rollout) (`+ended+`)`, "{{rollout}} {{status}}"),
		query(cohort+` and on (rollout) (`+ended+`)`, "{{rollout}} halted: {{status}}")).
		OverrideByQuery("B", []dashboard.DynamicConfigValue{
			{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}},
			{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []int{10, 10}}},
		})
}

func hostDetail() *dashboard.DashboardBuilder {
	b := dashboard.NewDashboardBuilder("splicefleet: host").
		Uid("splicefleet-host").
		Description("One host: its kernel, its patches, their transitions, taint and apply times.").
		Tags([]string{"splicefleet"}).Refresh("30s").Time("now-6h", "now").Tooltip(dashboard.DashboardCursorSyncCrosshair)
	b = annotations(variables(b, false))
	return b.
		WithRow(dashboard.NewRowBuilder("Kernel and patches")).
		WithPanel(tablePanel("Kernel", "The running kernel (simulated=true is the test double).",
			`splicefleet_kernel_info{`+sel+`}`)).
		WithPanel(tablePanel("Patches", "Every patch in the host's journal and its state.",
			`splicefleet_patch_state{`+sel+`}`)).
		WithPanel(tablePanel("Bundles held", "Verified bundles the agent holds; outstanding 1 means a running or paused rollout targets the host with it and the host does not run it.",
			`splicefleet_bundle_outstanding{`+sel+`}`)).
		WithPanel(timeSeries("Livepatches enabled", "The kernel's own view: 1 enabled, 0 disabled, per livepatch.", "short",
			query(`splicefleet_livepatch_enabled{`+sel+`}`, "{{livepatch}}"))).
		WithPanel(timeSeries("Livepatch transitions", "1 while a livepatch is in transition.", "short",
			query(`splicefleet_livepatch_transition{`+sel+`}`, "{{livepatch}}"))).
		WithPanel(timeSeries("Taint flags set", "The kernel's taint flags that are set (livepatch is expected once a patch is loaded).", "short",
			query(`splicefleet_kernel_taint{`+sel+`} == 1`, "{{flag}}"))).
		WithPanel(timeSeries("Applies, undos and rollbacks", "What the agent did on this host.", "short",
			query(`sum by (result) (increase(splicefleet_applies_total{`+sel+`}[$__rate_interval]))`, "apply {{result}}"),
			query(`sum by (result) (increase(splicefleet_undos_total{`+sel+`}[$__rate_interval]))`, "undo {{result}}"),
			query(`sum by (reason) (increase(splicefleet_rollbacks_total{`+sel+`}[$__rate_interval]))`, "rollback {{reason}}"))).
		WithRow(dashboard.NewRowBuilder("Durations")).
		WithPanel(timeSeries("Apply duration", "From the start of an apply until the patch is applied or refused.", "s",
			quantiles("splicefleet_apply_duration_seconds")...)).
		WithPanel(timeSeries("Transition duration", "Livepatch transitions, completed or reversed.", "s",
			quantiles("splicefleet_transition_duration_seconds")...))
}
