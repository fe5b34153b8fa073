package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/splicefleet/splicefleet/rollout"
)

// watchSpec says which rollout to show and when the show is over.
type watchSpec struct {
	digest string
	plan   *rollout.Plan
	module string
	// perHost prints every host whose kernel starts or stops running the
	// module.
	perHost bool
	// over is asked after every look: is the rollout where the story
	// wants it (or somewhere it must not be: an error)?
	over func(st rollout.Status, running int) (bool, error)
}

// watch shows a rollout as the judge agent judges it, with the count of
// simulated kernels running the module, until spec.over says it is over.
// In a terminal a block is redrawn in place, with what happened printed
// above it; otherwise each change is printed as a line.
func (d *demo) watch(ctx context.Context, spec watchSpec) (rollout.Status, error) {
	v := &view{d: d, spec: spec, start: time.Now(), opened: make([]bool, len(spec.plan.Stages)),
		passed: make([]bool, len(spec.plan.Stages)), failed: map[string]bool{}, failedAt: map[string]time.Time{}, running: map[string]bool{}}
	if d.live {
		fmt.Fprint(d.out, "\033[?25l") // hide the cursor while redrawing
		defer fmt.Fprint(d.out, "\033[?7h\033[?25h")
	}
	deadline := time.NewTimer(actTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := d.judge.Agent.Rollout(spec.digest)
		if err != nil {
			return st, err
		}
		running, err := d.running(spec.module)
		if err != nil {
			return st, err
		}
		v.frame(st, running)
		over, err := spec.over(st, len(running))
		if over || err != nil {
			v.end(st, running)
			return st, err
		}
		select {
		case <-ctx.Done():
			v.end(st, running)
			return st, ctx.Err()
		case <-deadline.C:
			v.end(st, running)
			return st, fmt.Errorf("rollout %s not where it should be after %s: %s", st.ID, actTimeout, st.Why)
		case <-tick.C:
		}
	}
}

// view is the state of one watch's display.
type view struct {
	d      *demo
	spec   watchSpec
	start  time.Time
	drawn  int // lines of the live block on screen
	opened []bool
	passed []bool
	failed map[string]bool
	// failedAt is when a host was first seen failed without its reason:
	// the reason comes in the failure report, a moment after the tags.
	failedAt map[string]time.Time
	state    string
	running  map[string]bool
	line     string // the last change line printed (plain output)
	why      string
}

// reasonWait bounds how long the view holds a failure back for its
// reason.
const reasonWait = 3 * time.Second

// frame shows one look at the rollout.
func (v *view) frame(st rollout.Status, running map[string]bool) {
	d := v.d
	events := v.events(st, running)
	if d.live {
		// One write per frame, so the terminal never shows half of one.
		var b strings.Builder
		if v.drawn > 0 {
			fmt.Fprintf(&b, "\033[%dF\033[J", v.drawn) // back to the block's first line, clear below
		}
		// What happened stays on screen whole (wrapped); the block below
		// is clipped to the terminal's width, so that it takes exactly
		// one line per line when it is redrawn.
		b.WriteString("\033[?7h")
		for _, l := range events {
			b.WriteString(l + "\n")
		}
		b.WriteString("\033[?7l")
		block := v.block(st, len(running))
		for _, l := range block {
			b.WriteString(l + "\n")
		}
		fmt.Fprint(d.out, b.String())
		v.drawn = len(block)
		return
	}
	for _, e := range events {
		d.say("%s", e)
	}
	if line := v.summary(st, len(running)); line != v.line {
		v.line = line
		d.say("%s  %s", v.stamp(), line)
		if st.Why != v.why {
			v.why = st.Why
			d.say("         why: %s", st.Why)
		}
	}
}

// end leaves the last look on screen: the live block stays as drawn;
// plain output gets the table once.
func (v *view) end(st rollout.Status, running map[string]bool) {
	if v.d.live {
		return
	}
	for _, l := range v.block(st, len(running)) {
		v.d.say("%s", l)
	}
}

func (v *view) stamp() string {
	return fmt.Sprintf("  %6s", "+"+time.Since(v.start).Round(100*time.Millisecond).String())
}

// events lists what happened since the last look, for the lines that
// stay: stages opening and passing, failures, the rollout's end, and
// (perHost) kernels starting or stopping the module.
func (v *view) events(st rollout.Status, running map[string]bool) []string {
	d := v.d
	var out []string
	add := func(format string, args ...any) { out = append(out, v.stamp()+"  "+fmt.Sprintf(format, args...)) }
	for k, s := range st.Stages {
		name := fmt.Sprintf("stage %d (%s)", k+1, s.Name)
		if s.Open && !v.opened[k] {
			v.opened[k] = true
			if k == 0 {
				add("%s open: %d host%s in it", name, s.Cohort, plural(s.Cohort))
			} else {
				add("%s open: %d hosts in it, %d more than stage %d", name, s.Cohort, s.Cohort-st.Stages[k-1].Cohort, k)
			}
		}
		if s.Open && s.Passed && !v.passed[k] {
			v.passed[k] = true
			next := ""
			if k+1 < len(st.Stages) {
				next = fmt.Sprintf("; stage %d (%s) opens after a %s soak", k+2, st.Stages[k+1].Name, v.spec.plan.Stages[k].Soak)
			}
			add("%s %s: %d of %d hosts healthy%s", name, d.green("passed"), s.Healthy, s.Cohort, next)
		}
	}
	if v.spec.perHost {
		for _, name := range d.hostNames() {
			switch {
			case running[name] && !v.running[name]:
				add("%s: its kernel runs %s", name, v.spec.module)
			case !running[name] && v.running[name]:
				add("%s: its kernel no longer runs %s (undone)", name, v.spec.module)
			}
		}
	}
	v.running = running
	// A failure is told with its reason: while a failed host's reason is
	// on its way (reasonWait at most), its line and the halt wait for it.
	waiting := false
	for _, f := range st.Failed {
		name, reason, _ := strings.Cut(f, ": ")
		if v.failed[name] {
			continue
		}
		if reason == rollout.ReasonNotYetKnown {
			if _, ok := v.failedAt[name]; !ok {
				v.failedAt[name] = time.Now()
			}
			if time.Since(v.failedAt[name]) < reasonWait {
				waiting = true
				continue
			}
		}
		v.failed[name] = true
		add("%s %s: %s", name, d.red("FAILED"), reason)
	}
	if st.State != v.state && !waiting {
		switch st.State {
		case rollout.Done:
			add("%s: %s", d.green("rollout done"), strings.TrimPrefix(st.Why, "done: "))
		case rollout.Halted:
			add("%s: %s", d.red("rollout HALTED fleet-wide"), strings.TrimPrefix(st.Why, "halted: "))
		}
		v.state = st.State
	}
	return out
}

// block is the rollout's table: one row per stage, the judge's why, and
// the kernels running the module.
func (v *view) block(st rollout.Status, running int) []string {
	d := v.d
	n := len(d.fleet.Hosts)
	state := st.State
	switch state {
	case rollout.Done:
		state = d.green(state)
	case rollout.Halted:
		state = d.red(state)
	}
	out := []string{
		fmt.Sprintf("  rollout %s as %s judges it: %s, stage %d of %d  %s", st.ID, d.judge.Name, state, st.Open+1, len(st.Stages), v.stamp()),
		fmt.Sprintf("    %-14s %6s %8s %8s %7s %8s", "STAGE", "COHORT", "APPLIED", "HEALTHY", "FAILED", "WAITING"),
	}
	for k, s := range st.Stages {
		var note string
		switch {
		case s.Open && s.Passed:
			note = d.green("passed")
		case s.Open && rollout.Ended(st.State):
			note = d.red("halted")
		case s.Open:
			note = "open"
		case !s.OpensAt.IsZero():
			note = "opens in " + max(0, time.Until(s.OpensAt)).Round(100*time.Millisecond).String()
		default:
			note = "closed"
		}
		out = append(out, fmt.Sprintf("    %-14s %6d %8d %8d %7d %8d  %s", fmt.Sprintf("%d %s", k+1, s.Name),
			s.Cohort, s.Applied, s.Healthy, s.Failed, s.Waiting, note))
	}
	out = append(out, "    why: "+st.Why)
	const width = 20
	full := running * width / max(n, 1)
	out = append(out, fmt.Sprintf("    SIMULATED kernels running %s: %d of %d  [%s%s]", v.spec.module, running, n,
		strings.Repeat("#", full), strings.Repeat(".", width-full)))
	return out
}

// summary is the one-line form of a look, printed when it changes; it
// carries no time, so that an unchanged look is not printed again.
func (v *view) summary(st rollout.Status, running int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, stage %d of %d |", st.State, st.Open+1, len(st.Stages))
	for _, s := range st.Stages {
		if !s.Open {
			continue
		}
		fmt.Fprintf(&b, " %s %d/%d healthy", s.Name, s.Healthy, s.Cohort)
		if w := s.Applied - s.Healthy; w > 0 {
			fmt.Fprintf(&b, ", %d applying", w)
		}
		if s.Failed > 0 {
			fmt.Fprintf(&b, ", %d failed", s.Failed)
		}
		b.WriteString(" |")
	}
	fmt.Fprintf(&b, " kernels running %s: %d of %d", v.spec.module, running, len(v.d.fleet.Hosts))
	return b.String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
