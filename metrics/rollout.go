package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/splicefleet/splicefleet/rollout"
)

// MaxRollouts bounds the rollouts one scrape exports: the most recently
// accepted ones.
const MaxRollouts = 16

// The states of a rollout, in exposition order.
var rolloutStates = []string{rollout.Running, rollout.Paused, rollout.Halted, rollout.RolledBack, rollout.Revoked, rollout.Done, rollout.Expired}

// The states a host reports in a rollout, in exposition order; their
// label values are their names (rollout.HostState.String), as
// `splicefleet rollout status` prints them.
var hostStates = []rollout.HostState{rollout.StateNone, rollout.StateApplying, rollout.StateHealthy, rollout.StateFailed,
	rollout.StateRolledBack, rollout.StateHalted}

// Kinds of signed rollout documents: a closed set of label values. A
// "report" is a host's signed report of its own part in a rollout.
var documentKinds = []string{rollout.KindPlan, rollout.KindCommand, rollout.KindRekey, "report"}

// RefusalReasons say why a signed plan or command was refused: a closed
// set of label values, the ones the control API reports. An unknown
// reason is counted as "refused".
var RefusalReasons = []string{"signature", "expired", "replayed", "duplicate_key", "invalid", "refused", "unsigned", "key"}

// The rollout gossip events whose payload can fail to decode.
var rolloutEvents = []string{rollout.ReportEvent, rollout.DocEvent}

type rolloutDescs struct {
	state, stage, stages, hosts, hostState, regressed, ended *prometheus.Desc
}

func newRolloutDescs(d func(name, help string, labels ...string) *prometheus.Desc) rolloutDescs {
	return rolloutDescs{
		state: d("rollout_state",
			"Each rollout this agent follows, by state (running, paused, halted, done, expired): 1 for the state it is in, 0 for the others.",
			"rollout", "state"),
		stage:  d("rollout_stage", "The highest open stage of each rollout, counted from 1.", "rollout"),
		stages: d("rollout_stages", "The number of stages in each rollout's plan.", "rollout"),
		hosts: d("rollout_hosts",
			"The cohort of each rollout's open stage (the hosts in it or an earlier stage) by status: healthy, applying (inside the health window), failed, waiting (no report yet, unreachable, or not applied); they add up to the cohort.",
			"rollout", "status"),
		hostState: d("rollout_host_state",
			"This host's own state in each rollout (none, applying, healthy, failed, rolled-back, halted): 1 for its state, 0 for the others.",
			"rollout", "state"),
		regressed: d("rollout_regressed_hosts",
			"Hosts that failed a rollout outside its gates: after their health window, after the rollout was done, or before their stage opened. Each undid the patch on itself; the rollout goes on (a finished one keeps its fix everywhere else).",
			"rollout"),
		ended: d("rollout_ended_timestamp_seconds",
			"When each rollout that halted, rolled back or was revoked ended, as this agent recorded it (Unix seconds); absent while it has not ended. Alerts use it to speak of recent halts only, even on a Prometheus that has just started.",
			"rollout"),
	}
}

func (r rolloutDescs) all() []*prometheus.Desc {
	return []*prometheus.Desc{r.state, r.stage, r.stages, r.hosts, r.hostState, r.regressed, r.ended}
}

// collectRollouts exports the newest MaxRollouts rollouts of a list in
// acceptance order, and counts the others as omitted.
func (c *stateCollector) collectRollouts(gauge func(*prometheus.Desc, float64, ...string), statuses []rollout.Status) {
	gauge(c.omitted, float64(max(0, len(statuses)-MaxRollouts)), "rollout")
	for _, st := range statuses[max(0, len(statuses)-MaxRollouts):] {
		if st.ID == "" {
			continue
		}
		for _, s := range rolloutStates {
			gauge(c.ro.state, b2f(st.State == s), st.ID, s)
		}
		if !slices.Contains(rolloutStates, st.State) {
			c.log.Warn("metrics: rollout in an unknown state", "rollout", st.ID, "state", st.State)
		}
		gauge(c.ro.stage, float64(st.Open+1), st.ID)
		gauge(c.ro.regressed, float64(len(st.Regressed)), st.ID)
		if !st.EndedAt.IsZero() {
			gauge(c.ro.ended, float64(st.EndedAt.UnixNano())/1e9, st.ID)
		}
		gauge(c.ro.stages, float64(len(st.Stages)), st.ID)
		if st.Open >= 0 && st.Open < len(st.Stages) {
			s := st.Stages[st.Open]
			// Applied counts applying and healthy hosts; Waiting counts
			// applying hosts and those without a report.
			applying := max(0, s.Applied-s.Healthy)
			gauge(c.ro.hosts, float64(s.Healthy), st.ID, "healthy")
			gauge(c.ro.hosts, float64(applying), st.ID, "applying")
			gauge(c.ro.hosts, float64(s.Failed), st.ID, "failed")
			gauge(c.ro.hosts, float64(s.RolledBack), st.ID, "rolled-back")
			gauge(c.ro.hosts, float64(max(0, s.Waiting-applying)), st.ID, "waiting")
		}
		for _, h := range hostStates {
			gauge(c.ro.hostState, b2f(st.Self.State == h), st.ID, h.String())
		}
	}
}

// RolloutRefused counts a signed rollout document this agent refused:
// kind is "plan" or "command" (another is logged and not counted), reason
// one of RefusalReasons (another, or none, counts as "refused").
func (m *Metrics) RolloutRefused(kind, reason string) {
	if !slices.Contains(documentKinds, kind) {
		m.log.Error("refused rollout document of an unknown kind is not counted", "kind", kind)
		return
	}
	if !slices.Contains(RefusalReasons, reason) {
		reason = "refused"
	}
	m.refusedDocs.WithLabelValues(kind, reason).Inc()
}

// RolloutBadEvent counts a rollout gossip event whose payload did not
// decode. event is the event's name, rollout.DocEvent (a host report
// that does not decode is a refused "report"); another is not counted.
func (m *Metrics) RolloutBadEvent(event string) {
	if !slices.Contains(rolloutEvents, event) {
		m.log.Error("bad rollout event of an unknown name is not counted", "event", event)
		return
	}
	m.badEvents.WithLabelValues(event).Inc()
}

// newRolloutCounters makes the rollout counters with every label value at
// zero.
func newRolloutCounters() (refused, bad *prometheus.CounterVec) {
	refused = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "rollout_documents_refused_total",
		Help: "Refusals of signed rollout plans, operator commands and host reports, by kind (plan, command, report) and reason (signature, expired, replayed, duplicate_key: a key given twice or in two cases, invalid, refused, unsigned: a host report without a host signature, key: signed by a key other than the one pinned for the node it names); a document offered again is refused and counted again."},
		[]string{"kind", "reason"})
	for _, k := range documentKinds {
		for _, r := range RefusalReasons {
			refused.WithLabelValues(k, r)
		}
	}
	bad = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "rollout_bad_events_total",
		Help: "Rollout gossip events whose payload did not decode, by event: sf-rep (host reports; counted as refused reports instead), sf-doc (document announcements)."},
		[]string{"event"})
	for _, e := range rolloutEvents {
		bad.WithLabelValues(e)
	}
	return refused, bad
}
