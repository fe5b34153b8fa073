package rollout

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Rollout states.
const (
	Running = "running"
	Paused  = "paused"
	Halted  = "halted"
	Done    = "done"
	Expired = "expired"
	// RolledBack: halted, and no host of its cohort runs the patch any
	// more.
	RolledBack = "rolled-back"
	// Revoked: an operator revoked it; hosts roll the patch back.
	Revoked = "revoked"
)

// ReasonNotYetKnown is the reason of a host whose tags report it failed
// before its failure report, which carries the reason, has arrived.
const ReasonNotYetKnown = "reported failed"

// KernelTarget is the kernel the rolled-out bundle was built for.
type KernelTarget struct {
	Release string
	Arch    string
	// BuildID, when set, must start with the host's gossiped build-id
	// prefix.
	BuildID string
}

// Member is a cluster member as an evaluation sees it.
type Member struct {
	Name string
	// Status is alive, failed, leaving or left. Left and leaving members
	// are outside every cohort; failed (unreachable) ones stay in theirs
	// and count as not reported.
	Status  string
	Kernel  string
	Arch    string
	BuildID string // the gossiped prefix
	// Tags are the user tags.
	Tags map[string]string
	// KeySince is when this agent pinned the member's host key; zero
	// when it has none pinned (see package hostkey).
	KeySince time.Time
	// Simulated says the member runs the simulated kernel, as its tags
	// say: it is targeted only by a plan with AllowSimulated.
	Simulated bool
	// NoLivepatch says the member's kernel has no livepatch support, as
	// its tags say: no rollout targets it, since its apply could only
	// fail (and a failing canary halts the rollout fleet-wide). A member
	// says this of itself alone.
	NoLivepatch bool
}

// Evidence is what one host's verified, signed reports say about its
// part in one rollout: its own word, the only one that counts.
type Evidence struct {
	State  HostState
	Reason string
	// WasHealthy says the host signed a healthy report for this rollout
	// before the state it is in now: a failure after it is a regression,
	// reported and alerted, not a failing canary.
	WasHealthy bool
}

// View is the gossip state an evaluation reads.
type View struct {
	Self    string
	Members []Member
	// Reports are the hosts' signed reports of this rollout by node
	// name, each verified against the key pinned for its node.
	Reports map[string]Evidence
	// KnownBy: a host's healthy report counts towards a stage's gate
	// only when its key was pinned no later than this (when the agent
	// accepted the plan), so members made up after a plan cannot pass
	// its stages. Zero counts every pinned host.
	KnownBy time.Time
	// Joining, when set, says the member list may be incomplete (the
	// agent has not joined the cluster since it started) and why. Such
	// a view is not evidence of anything passing: no stage passes or
	// opens and the host does not apply; halts still count.
	Joining string
}

// Rollout is one plan as this agent follows it. Its fields are what the
// agent persists; Evaluate updates the observations (stages opened and
// passed, a halt) and everything else is derived.
type Rollout struct {
	Plan     *Plan        `json:"plan"`
	Digest   string       `json:"digest"`
	Kernel   KernelTarget `json:"kernel"`
	Accepted time.Time    `json:"accepted"`
	// Commands are the accepted operator commands in sequence order.
	Commands []Command `json:"commands,omitempty"`
	// Opened[k] is when this agent saw stage k open.
	Opened []time.Time `json:"opened"`
	// Passed[k] is when this agent saw stage k pass its gate, for the
	// soak: it is cleared when the stage stops passing before the next
	// opens, and the soak starts again.
	Passed []time.Time `json:"passed"`
	// Seen are the hosts this agent saw in the cohorts of the open stages,
	// with their stage. A host seen that is missing from a later view
	// (an agent that restarted and has not heard of it yet) still counts
	// in its cohort, as waiting; a host seen leaving drops out.
	Seen map[string]int `json:"seen,omitempty"`
	// HaltReason, once set, halts the rollout for good.
	HaltReason string `json:"halt_reason,omitempty"`
	// HaltedByGate says the failure gates halted it; the reason then
	// follows what is known about the failures.
	HaltedByGate bool      `json:"halted_by_gate,omitempty"`
	HaltedAt     time.Time `json:"halted_at,omitzero"`
	// Rollback says whether the halt rolls the patch back.
	Rollback bool `json:"rollback,omitempty"`
	// DoneAt is when this agent saw the last stage pass. Done is final:
	// from then on no host's report halts the rollout, only a signed
	// revoke.
	DoneAt time.Time `json:"done_at,omitzero"`

	// changed says an evaluation recorded something worth persisting.
	changed bool
	// buckets caches Bucket by node name.
	buckets map[string]int
}

// Clone is a copy of the rollout that evaluations can change without
// touching r: a reader judges the copy, and only the one that persists
// the rollout evaluates r itself. The plan is shared (it never changes).
func (r *Rollout) Clone() *Rollout {
	c := *r
	c.Commands = slices.Clone(r.Commands)
	c.Opened = slices.Clone(r.Opened)
	c.Passed = slices.Clone(r.Passed)
	c.Seen = maps.Clone(r.Seen)
	c.changed = false
	c.buckets = nil
	return &c
}

// Changed reports whether evaluations recorded new observations since
// the last call, and resets it: the caller persists the rollout then.
func (r *Rollout) Changed() bool {
	c := r.changed
	r.changed = false
	return c
}

// bucket is Bucket for this plan, cached.
func (r *Rollout) bucket(node string) int {
	if b, ok := r.buckets[node]; ok {
		return b
	}
	if r.buckets == nil || len(r.buckets) > 1<<16 {
		r.buckets = map[string]int{}
	}
	b := Bucket(r.Plan.ID, node)
	r.buckets[node] = b
	return b
}

// New starts following a verified plan for a bundle built for kernel k.
func New(vp *VerifiedPlan, k KernelTarget, now time.Time) *Rollout {
	n := len(vp.Plan.Stages)
	return &Rollout{Plan: vp.Plan, Digest: vp.Digest, Kernel: k, Accepted: now,
		Opened: make([]time.Time, n), Passed: make([]time.Time, n)}
}

// Key is the plan's key in the reports tag.
func (r *Rollout) Key() string { return ReportKey(r.Digest) }

// AddCommand accepts a verified command for this rollout. A sequence
// number already used is refused with ErrReplayed; halt and revoke are
// final, so nothing after them changes the state.
func (r *Rollout) AddCommand(c Command) error {
	if c.Plan != r.Digest {
		return fmt.Errorf("%w: command for plan %s, not %s", ErrInvalidCommand, short(c.Plan), short(r.Digest))
	}
	if c.Action == ActionPromote && c.Stage >= len(r.Plan.Stages) {
		return fmt.Errorf("%w: promote to stage %d, the plan has %d", ErrInvalidCommand, c.Stage+1, len(r.Plan.Stages))
	}
	i, found := slices.BinarySearchFunc(r.Commands, c.Seq, func(x Command, seq uint64) int {
		return cmpU64(x.Seq, seq)
	})
	if found {
		return fmt.Errorf("%w: seq %d of rollout %s was used by %s", ErrReplayed, c.Seq, r.Plan.ID, r.Commands[i].Action)
	}
	r.Commands = slices.Insert(r.Commands, i, c)
	return nil
}

// LastSeq is the highest sequence number accepted.
func (r *Rollout) LastSeq() uint64 {
	if len(r.Commands) == 0 {
		return 0
	}
	return r.Commands[len(r.Commands)-1].Seq
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// steering folds the commands in sequence order.
type steering struct {
	paused     bool
	pausedBy   uint64
	promotedTo int
	halt       *Command
}

func (r *Rollout) steering() steering {
	var s steering
	for _, c := range r.Commands {
		if s.halt != nil {
			break
		}
		switch c.Action {
		case ActionPause:
			s.paused, s.pausedBy = true, c.Seq
		case ActionResume:
			s.paused = false
		case ActionPromote:
			s.promotedTo = max(s.promotedTo, c.Stage)
		case ActionHalt, ActionRevoke:
			s.halt = &c
		}
	}
	return s
}

// Status is the rollout as this agent sees it.
type Status struct {
	ID     string `json:"id"`
	Digest string `json:"digest"`
	Bundle string `json:"bundle"`
	State  string `json:"state"`
	// EndedAt is when the rollout halted, rolled back or was revoked, as
	// this agent recorded it; zero while it has not ended.
	EndedAt time.Time `json:"ended_at,omitzero"`
	OnHalt  string    `json:"on_halt"`
	// Open is the highest open stage, 0-based here and 1-based in JSON
	// (as in the text views, the metrics and promote --stage).
	Open   int           `json:"open"`
	Stages []StageStatus `json:"stages"`
	Failed []string      `json:"failed,omitempty"` // "node: reason"
	// Regressed are hosts that failed after they reported healthy, or
	// after the rollout was done: "node: reason". They undo the patch on
	// themselves only; the fleet alerts.
	Regressed []string `json:"regressed,omitempty"`
	Why       string   `json:"why"`
	// RollingBack counts the hosts that still run the patch of a rollout
	// that halted with on_halt: rollback, as this agent's reports show.
	RollingBack int    `json:"rolling_back,omitempty"`
	LastSeq     uint64 `json:"last_seq"`
	// Self is what this host should do.
	Self SelfStatus `json:"self"`
}

// MarshalJSON writes the status with stages numbered from 1, as every
// view of a rollout numbers them.
func (st Status) MarshalJSON() ([]byte, error) {
	type plain Status
	p := plain(st)
	p.Open++
	p.Self.Stage++
	return json.Marshal(p)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (st *Status) UnmarshalJSON(b []byte) error {
	type plain Status
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	p.Open--
	p.Self.Stage--
	*st = Status(p)
	return nil
}

// StageStatus counts one stage's cohort: the hosts in it or an earlier
// stage.
type StageStatus struct {
	Name    string `json:"name"`
	Open    bool   `json:"open"`
	Cohort  int    `json:"cohort"`
	Applied int    `json:"applied"` // applying or healthy
	Healthy int    `json:"healthy"`
	Failed  int    `json:"failed"`
	// Unknown counts hosts whose keys were pinned after the plan was
	// accepted: they apply in their stage, but their health does not
	// count towards min_healthy.
	Unknown int `json:"unknown,omitempty"`
	// RolledBack counts hosts that undid the patch after a halt.
	RolledBack int `json:"rolled_back"`
	Waiting    int `json:"waiting"` // not reported, or inside the health window
	// Missing counts the hosts of the cohort seen earlier that are not in
	// the member list now (counted in Waiting too).
	Missing int       `json:"missing,omitempty"`
	Passed  bool      `json:"passed"`
	OpensAt time.Time `json:"opens_at,omitzero"`
	// WaitingFor names some of the hosts the stage waits for.
	WaitingFor []string `json:"waiting_for,omitempty"`
}

// SelfStatus is this host's part.
type SelfStatus struct {
	Targeted bool `json:"targeted"`
	// Stage is the first stage it is in, 0-based here, -1 none; in
	// JSON 1-based, 0 none.
	Stage  int       `json:"stage"`
	Bucket int       `json:"bucket"`
	State  HostState `json:"state"`
	// Apply: this host should apply the bundle now.
	Apply bool `json:"apply"`
	// RollBack: this host should undo the patch now.
	RollBack bool `json:"roll_back"`
}

// host is a targeted member with its stage and state.
type host struct {
	Member
	stage  int
	state  HostState
	reason string
	// missing: seen in a cohort before, not in the member list now.
	missing bool
	// wasHealthy: it signed a healthy report before its current state.
	wasHealthy bool
	// known: its key was pinned before the plan was accepted; only a
	// known host's health counts towards min_healthy.
	known bool
}

// Targets reports whether m is a host the rollout targets.
func (r *Rollout) Targets(m Member) bool {
	if m.Status == "left" || m.Status == "leaving" {
		return false
	}
	if (m.Simulated && !r.Plan.AllowSimulated) || m.NoLivepatch {
		return false
	}
	k := r.Kernel
	if m.Kernel != k.Release || (k.Arch != "" && m.Arch != k.Arch) {
		return false
	}
	if k.BuildID != "" && (m.BuildID == "" || !strings.HasPrefix(k.BuildID, m.BuildID)) {
		return false
	}
	t := r.Plan.Target
	if len(t.Kernels) > 0 && !slices.Contains(t.Kernels, m.Kernel) {
		return false
	}
	for key, v := range t.Tags {
		if m.Tags[key] != v {
			return false
		}
	}
	return true
}

// StageOf is the first stage a member is in, or -1.
func (r *Rollout) StageOf(m Member) int {
	ring := m.Tags[RingTag]
	b := -1
	for i, s := range r.Plan.Stages {
		if s.Ring != "" {
			if ring == s.Ring {
				return i
			}
			continue
		}
		if b < 0 {
			b = r.bucket(m.Name)
		}
		if b < s.Share() {
			return i
		}
	}
	return -1
}

// Evaluate judges the rollout from the view at time now, records what it
// observed (stages opened and passed, a halt) and says what this host
// should do. Every agent evaluating the same view reaches the same
// judgement.
func (r *Rollout) Evaluate(v View, now time.Time) Status {
	plan := r.Plan
	j := &judgement{r: r, now: now, st: Status{ID: plan.ID, Digest: r.Digest, Bundle: plan.Bundle, OnHalt: plan.OnHalt, LastSeq: r.LastSeq(),
		Self: SelfStatus{Stage: -1, Bucket: r.bucket(v.Self)}}}
	j.hosts = r.missing(j.takeHosts(v), v.Self)
	j.steer = r.steering()
	if len(r.Opened) == 0 || r.Opened[0].IsZero() {
		r.ensure()
		r.Opened[0], r.changed = now, true
	}
	open := r.open()
	j.failed = j.countable(open)
	j.st.Stages = make([]StageStatus, len(plan.Stages))
	for k, s := range plan.Stages {
		j.st.Stages[k] = r.count(k, s, j.hosts)
	}
	j.halts(open)
	open = j.decide(open, v.Joining)
	j.listFailures()
	st := &j.st
	st.Open = open
	r.see(j.hosts, open)
	for k := range st.Stages {
		st.Stages[k].Open = k <= open
	}
	// This host's part.
	self := &st.Self
	switch {
	case r.HaltReason != "":
		self.RollBack = r.Rollback && (self.State == StateApplying || self.State == StateHealthy)
	case v.Joining == "" && (st.State == Running || st.State == Done):
		self.Apply = self.Targeted && self.Stage >= 0 && self.Stage <= open && self.State == StateNone
	}
	return *st
}

// judgement is one Evaluate in progress: the targeted hosts as the view
// shows them, the operator's steering, the failures that count, and the
// status being built.
type judgement struct {
	r      *Rollout
	now    time.Time
	hosts  []host
	steer  steering
	failed []host // failures that count against the gates, by name
	st     Status
}

// takeHosts turns the view's members into the rollout's targeted hosts,
// with their stages and signed states, and notes this host's own part.
func (j *judgement) takeHosts(v View) []host {
	r := j.r
	hosts := make([]host, 0, len(v.Members))
	for _, m := range v.Members {
		if !r.Targets(m) {
			// Left, or no longer targeted: out of every cohort.
			if _, ok := r.Seen[m.Name]; ok {
				delete(r.Seen, m.Name)
				r.changed = true
			}
			continue
		}
		ev := v.Reports[m.Name]
		h := host{Member: m, stage: r.StageOf(m), state: ev.State, reason: ev.Reason, wasHealthy: ev.WasHealthy,
			known: m.Name == v.Self || v.KnownBy.IsZero() || (!m.KeySince.IsZero() && !m.KeySince.After(v.KnownBy))}
		if h.state == StateFailed && h.reason == "" {
			h.reason = ReasonNotYetKnown
		}
		hosts = append(hosts, h)
		if m.Name == v.Self {
			j.st.Self.Targeted, j.st.Self.Stage, j.st.Self.State = true, h.stage, h.state
		}
	}
	return hosts
}

// countable lists the failures that count against the gates with stages
// up to open open. A failure counts only while the rollout runs, from a
// host of an open stage (no other could have applied it), that never
// signed a healthy report for it: a host's word cannot take a finished
// rollout's fix away from the fleet (G1 in docs/security.md). Other
// failures are regressions: shown and alerted, the failing host undoing
// the patch on itself only.
func (j *judgement) countable(open int) []host {
	var out []host
	for _, h := range j.hosts {
		if h.state == StateFailed && j.r.DoneAt.IsZero() && !h.wasHealthy && h.stage >= 0 && h.stage <= open {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b host) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// failures says which hosts failed, as a halt's reason.
func (j *judgement) failures() string {
	failed := j.failed
	names := make([]string, 0, len(failed))
	for _, h := range failed[:min(3, len(failed))] {
		names = append(names, h.Name+": "+h.reason)
	}
	more := ""
	if len(failed) > 3 {
		more = fmt.Sprintf(" and %d more", len(failed)-3)
	}
	return fmt.Sprintf("%d host%s failed (%s%s)", len(failed), plural(len(failed)), strings.Join(names, "; "), more)
}

// halts applies the operator's commands, then the failure gates, with
// stages up to open open. Halts are sticky; the reason of a gate halt
// follows what is known of the failures. Both rest on documents every
// agent stores and serves (commands, signed reports), so every agent,
// however late it hears of the plan, reaches the same halt.
func (j *judgement) halts(open int) {
	r, steer := j.r, j.steer
	switch {
	case r.HaltReason != "":
		if r.HaltedByGate && len(j.failed) > 0 {
			if why := j.failures(); why != r.HaltReason {
				r.HaltReason, r.changed = why, true
			}
		}
	case steer.halt != nil:
		r.halt(j.now, fmt.Sprintf("%s by operator (seq %d)%s", steer.halt.Action, steer.halt.Seq, reasonSuffix(steer.halt.Reason)),
			steer.halt.Action == ActionRevoke)
	case r.tripped(len(j.failed), j.st.Stages[open].Cohort):
		r.halt(j.now, j.failures(), r.Plan.OnHalt == OnHaltRollback)
		r.HaltedByGate = true
	}
	// A revoke that follows a halt rolls back what the halt kept.
	if r.HaltReason != "" && !r.Rollback && steer.halt != nil && steer.halt.Action == ActionRevoke {
		r.Rollback, r.changed = true, true
	}
}

// decide sets the rollout's state and why, opening stages while it runs,
// and returns the highest open stage. joining is the view's Joining.
func (j *judgement) decide(open int, joining string) int {
	r, st, now, plan := j.r, &j.st, j.now, j.r.Plan
	switch {
	case r.HaltReason != "":
		open = r.openedElsewhere(now, j.hosts, open)
		st.State, st.Why, st.RollingBack = r.ended(j.steer, j.hosts)
		st.EndedAt = r.HaltedAt
	case plan.Expires != nil && !now.Before(*plan.Expires):
		st.State = Expired
		st.Why = "expired at " + plan.Expires.UTC().Format(time.RFC3339) + "; no host applies it any more"
	case !r.DoneAt.IsZero():
		// Done is done: hosts that join its cohorts later still apply.
		st.State = Done
		open = len(plan.Stages) - 1
		st.Why = fmt.Sprintf("done since %s; %d of %d hosts healthy", r.DoneAt.UTC().Format(time.RFC3339),
			st.Stages[open].Healthy, st.Stages[open].Cohort)
	case j.steer.paused:
		st.State = Paused
		st.Why = fmt.Sprintf("paused by operator (seq %d)", j.steer.pausedBy)
	case joining != "":
		// Nothing passes on a view that may lack any host: the stages
		// stay as they were, their soak does not start, nothing applies.
		st.State = Running
		st.Why = fmt.Sprintf("waiting: %s; stage %d (%s) open", joining, open+1, st.Stages[open].Name)
	default:
		st.State = Running
		prev := open
		open = r.advance(now, st.Stages, j.steer.promotedTo)
		if open > prev {
			// A stage this agent opens now may hold a failure that did
			// not count while it was closed: judged before anyone applies.
			if f := j.countable(open); r.tripped(len(f), st.Stages[open].Cohort) {
				j.failed = f
				r.halt(now, j.failures(), plan.OnHalt == OnHaltRollback)
				r.HaltedByGate = true
				open = r.openedElsewhere(now, j.hosts, open)
				st.State, st.Why, st.RollingBack = r.ended(j.steer, j.hosts)
				return open
			}
		}
		st.Why = r.why(open, st.Stages, now)
		last := len(plan.Stages) - 1
		if open == last && st.Stages[last].Passed {
			st.State = Done
			r.DoneAt, r.changed = now, true
		}
	}
	return open
}

// listFailures names the failed hosts: the ones that count against the
// gates, and the regressions.
func (j *judgement) listFailures() {
	st := &j.st
	for _, h := range j.hosts {
		if h.state != StateFailed {
			continue
		}
		if slices.ContainsFunc(j.failed, func(x host) bool { return x.Name == h.Name }) {
			st.Failed = append(st.Failed, h.Name+": "+h.reason)
		} else {
			st.Regressed = append(st.Regressed, h.Name+": "+h.reason)
		}
	}
	slices.Sort(st.Failed)
	slices.Sort(st.Regressed)
	if len(st.Regressed) > 0 {
		st.Why += fmt.Sprintf("; %d host%s failed outside the gates (after its health window, after the rollout was done, or outside the open stages): %s", len(st.Regressed), plural(len(st.Regressed)),
			strings.Join(st.Regressed[:min(3, len(st.Regressed))], "; "))
	}
}

// ended is the state and explanation of a halted rollout: halted, or
// revoked, and once no host of its cohort runs the patch any more, rolled
// back.
func (r *Rollout) ended(steer steering, hosts []host) (state, why string, rollingBack int) {
	state, why = Halted, "halted: "+r.HaltReason
	if steer.halt != nil && steer.halt.Action == ActionRevoke {
		state, why = Revoked, "revoked: "+r.HaltReason
	}
	if !r.Rollback {
		return state, why + "; hosts keep what they applied", 0
	}
	running, rolledBack := 0, 0
	for _, h := range hosts {
		switch h.state {
		case StateApplying, StateHealthy:
			running++
		case StateRolledBack:
			rolledBack++
		}
	}
	if running > 0 {
		return state, why + fmt.Sprintf("; rolling back: %d host%s still run%s it, %d rolled back", running, plural(running),
			map[bool]string{true: "s", false: ""}[running == 1], rolledBack), running
	}
	if state == Halted {
		state = RolledBack
	}
	return state, why + fmt.Sprintf("; rolled back (%d host%s)", rolledBack, plural(rolledBack)), 0
}

// Is reports whether a rollout in state is in want, where want Halted
// stands for every halted state (halted, rolled back, revoked).
func Is(state, want string) bool {
	if want == Halted {
		return Ended(state)
	}
	return state == want
}

// Ended reports whether a rollout state is final: halted, rolled back or
// revoked. (Done is final too, but its patch stays.)
func Ended(state string) bool {
	return state == Halted || state == RolledBack || state == Revoked
}

func reasonSuffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func (r *Rollout) ensure() {
	n := len(r.Plan.Stages)
	if len(r.Opened) != n {
		r.Opened = append(r.Opened, make([]time.Time, max(0, n-len(r.Opened)))...)[:n]
	}
	if len(r.Passed) != n {
		r.Passed = append(r.Passed, make([]time.Time, max(0, n-len(r.Passed)))...)[:n]
	}
}

// open is the highest stage this agent saw open.
func (r *Rollout) open() int {
	o := 0
	for k, t := range r.Opened {
		if !t.IsZero() {
			o = k
		}
	}
	return o
}

// openedElsewhere records, once the rollout halted, the stages other
// agents opened before the halt where this one had not (it was slower to
// see a stage pass, or restarted): a host whose own report says it
// applied, failed or rolled back shows its stage was open. Failure
// reports heard about a host do not count: anyone can send one. Every
// agent then ends with the same open stages. It returns the highest open
// stage.
func (r *Rollout) openedElsewhere(now time.Time, hosts []host, open int) int {
	r.ensure()
	for _, h := range hosts {
		switch h.state {
		case StateApplying, StateHealthy, StateFailed, StateRolledBack:
			if h.stage > open && r.Opened[h.stage].IsZero() {
				r.Opened[h.stage], r.changed = now, true
				open = h.stage
			}
		}
	}
	return max(open, r.open())
}

// missing adds to hosts the hosts seen in an open stage's cohort that
// the view does not list at all (not even as left): an agent that
// restarted and has not heard of them yet. They count as waiting.
func (r *Rollout) missing(hosts []host, self string) []host {
	if len(r.Seen) == 0 {
		return hosts
	}
	listed := 0
	for _, h := range hosts {
		if _, ok := r.Seen[h.Name]; ok {
			listed++
		}
	}
	if listed == len(r.Seen) {
		return hosts // everyone seen is listed (and targeted)
	}
	in := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		in[h.Name] = true
	}
	for name, stage := range r.Seen {
		if !in[name] && name != self {
			hosts = append(hosts, host{Member: Member{Name: name}, stage: stage, missing: true, known: true})
		}
	}
	return hosts
}

// see records the hosts of the open stages' cohorts.
func (r *Rollout) see(hosts []host, open int) {
	for _, h := range hosts {
		if h.missing {
			continue
		}
		old, ok := r.Seen[h.Name]
		switch {
		case h.stage >= 0 && h.stage <= open && (!ok || old != h.stage):
			if r.Seen == nil {
				r.Seen = map[string]int{}
			}
			r.Seen[h.Name], r.changed = h.stage, true
		case ok && (h.stage < 0 || h.stage > open):
			delete(r.Seen, h.Name)
			r.changed = true
		}
	}
}

func (r *Rollout) halt(now time.Time, reason string, rollback bool) {
	r.HaltReason, r.HaltedAt, r.Rollback, r.changed = reason, now, rollback, true
}

// tripped applies the failure gates to failures among the hosts of the
// open stages (cohort).
func (r *Rollout) tripped(failures, cohort int) bool {
	g := r.Plan.Gates
	if failures == 0 {
		return false
	}
	if g.MaxFailures > 0 && failures >= g.MaxFailures {
		return true
	}
	return g.MaxFailureRatio > 0 && float64(failures) > g.MaxFailureRatio*float64(max(cohort, 1))
}

// count tallies stage k's cohort: every targeted host in stage k or an
// earlier one.
func (r *Rollout) count(k int, s Stage, hosts []host) StageStatus {
	ss := StageStatus{Name: s.Name()}
	var waiting []host // the first few by name
	// The gate counts known hosts only (see host.known): a member made up
	// after the plan neither fills nor dilutes its stages' healthy share.
	known, knownHealthy := 0, 0
	for _, h := range hosts {
		if h.stage < 0 || h.stage > k {
			continue
		}
		ss.Cohort++
		if h.known {
			known++
		}
		if h.missing {
			ss.Missing++
		}
		switch h.state {
		case StateHealthy:
			ss.Applied++
			ss.Healthy++
			if h.known {
				knownHealthy++
			}
		case StateApplying:
			ss.Applied++
			ss.Waiting++
		case StateFailed:
			ss.Failed++
		case StateRolledBack:
			ss.RolledBack++
		default:
			ss.Waiting++
		}
		if h.known && h.wasHealthy && (h.state == StateRolledBack || h.state == StateHalted) {
			// Healthy in its window, rolled back since by a halt: the
			// hosts that saw its healthy report passed the stage on it,
			// and one that missed that report must judge alike, or it
			// waits on the stage while the others halted past it.
			knownHealthy++
		}
		if h.state != StateHealthy && h.state != StateFailed && h.state != StateRolledBack {
			waiting = firstByName(waiting, h, maxWaitingShown)
		}
	}
	for _, h := range waiting {
		what := h.state.String()
		switch {
		case h.missing:
			what = "not seen since restart"
		case h.Status == "failed":
			what = "unreachable"
		case h.state == StateNone:
			what = "no report yet"
		}
		ss.WaitingFor = append(ss.WaitingFor, h.Name+" ("+what+")")
	}
	// A cohort of hosts none of which is known does not pass on their
	// word: say promote to go on.
	need := int(math.Ceil(r.Plan.Gates.MinHealthy*float64(known) - 1e-9))
	ss.Unknown = ss.Cohort - known
	ss.Passed = ss.Failed == 0 && knownHealthy >= need && (known > 0 || ss.Cohort == 0)
	return ss
}

// maxWaitingShown is how many waiting hosts a stage names.
const maxWaitingShown = 5

// firstByName keeps the n hosts with the smallest names, sorted.
func firstByName(list []host, h host, n int) []host {
	i, _ := slices.BinarySearchFunc(list, h.Name, func(x host, name string) int { return strings.Compare(x.Name, name) })
	if i >= n {
		return list
	}
	list = slices.Insert(list, i, h)
	return list[:min(len(list), n)]
}

// advance opens stages whose predecessor passed, soaked, and still
// passes, or that a promote opened, and returns the highest open stage.
func (r *Rollout) advance(now time.Time, stages []StageStatus, promotedTo int) int {
	open := r.open()
	for k := 0; k < len(stages); k++ {
		if k > open {
			break
		}
		next := k+1 < len(stages) && r.Opened[k+1].IsZero()
		switch {
		case stages[k].Passed && r.Passed[k].IsZero():
			r.Passed[k], r.changed = now, true
		case !stages[k].Passed && !r.Passed[k].IsZero() && next:
			// It stopped passing during its soak (a host of its cohort
			// is back to waiting, or one more joined it): the soak
			// starts again when it passes again.
			r.Passed[k], r.changed = time.Time{}, true
		}
		if !next {
			continue
		}
		// The gate is checked again when the soak ends: a pass seen
		// once is not enough.
		soaked := stages[k].Passed && !r.Passed[k].IsZero() && !now.Before(r.Passed[k].Add(r.Plan.Stages[k].Soak))
		if soaked || promotedTo >= k+1 {
			r.Opened[k+1], r.changed = now, true
			open = k + 1
		}
	}
	for k := range stages {
		if k+1 < len(stages) && !r.Passed[k].IsZero() && r.Opened[k+1].IsZero() {
			stages[k+1].OpensAt = r.Passed[k].Add(r.Plan.Stages[k].Soak)
		}
	}
	return open
}

func (r *Rollout) why(open int, stages []StageStatus, now time.Time) string {
	s := stages[open]
	name := fmt.Sprintf("stage %d (%s)", open+1, s.Name)
	last := open == len(stages)-1
	switch {
	case s.Passed && last:
		return fmt.Sprintf("done: %s passed, %d of %d hosts healthy", name, s.Healthy, s.Cohort)
	case s.Passed:
		next := stages[open+1]
		return fmt.Sprintf("%s passed, %d of %d hosts healthy; stage %d (%s) opens in %s", name, s.Healthy, s.Cohort,
			open+2, next.Name, max(0, next.OpensAt.Sub(now)).Round(time.Second))
	}
	why := fmt.Sprintf("%s open: %d of %d hosts healthy, need %d", name, s.Healthy, s.Cohort,
		max(1, int(math.Ceil(r.Plan.Gates.MinHealthy*float64(s.Cohort-s.Unknown)-1e-9))))
	if s.Missing > 0 {
		why += fmt.Sprintf("; %d host%s not seen since restart", s.Missing, plural(s.Missing))
	}
	if s.Unknown > 0 {
		why += fmt.Sprintf("; %d host%s joined after the plan and do%s not count towards min_healthy", s.Unknown, plural(s.Unknown),
			map[bool]string{true: "es", false: ""}[s.Unknown == 1])
	}
	if len(s.WaitingFor) > 0 {
		why += "; waiting for " + strings.Join(s.WaitingFor, ", ")
		if s.Waiting > len(s.WaitingFor) {
			why += fmt.Sprintf(" and %d more", s.Waiting-len(s.WaitingFor))
		}
	}
	return why
}

func short(d string) string { return d[:min(12, len(d))] }
