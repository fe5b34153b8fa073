package agent

// The apply and rollback workflow on this host: apply a rollout's bundle
// and watch the health window, resume a watch cut short by a restart,
// fail and undo, and roll back after a halt.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/splicefleet/splicefleet/metrics"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// bundleAndProbe reads a rollout's stored bundle and records the health
// baseline for its module, before an apply or a renewed watch.
func (a *Agent) bundleAndProbe(ro *rollout.Rollout) (*splice.Bundle, *healthProbe, error) {
	b, err := a.store.Bundle(ro.Plan.Bundle)
	if err != nil {
		return nil, nil, fmt.Errorf("read the bundle: %w", err)
	}
	m, err := splice.ParseManifest(b.Manifest)
	if err != nil {
		return nil, nil, err
	}
	probe, err := a.newHealthProbe(m.Module.Name)
	if err != nil {
		return nil, nil, err
	}
	return b, probe, nil
}

// openHost opens this host's lifecycle; the caller closes it. step, when
// set, hears the lifecycle's steps.
func (a *Agent) openHost(ctx context.Context, window time.Duration, step func(string)) (*splice.Host, error) {
	return splice.OpenHost(ctx, splice.HostConfig{StateDir: a.cfg.StateDir, Kernel: a.kernel, Inspect: InspectModule,
		Now: a.now, Logger: a.log.With("component", "host"), HealthWindow: window, StepHook: step,
		OnCrashLoopGuard: a.crashLoopGuarded, Policy: policyVerifier{a}, OnTrustVerdict: a.storedVerdict})
}

// storedVerdict counts a stored bundle that was refused, or kept although
// expired, when it was loaded again (by `splicefleet boot` before the
// agent started, or by an undo's put-back).
func (a *Agent) storedVerdict(v splice.TrustVerdict) {
	a.log.Warn("stored bundle judged again before a re-apply", "patch", v.ID, "version", v.Version, "verdict", v.Verdict, "reason", v.Reason, "at", v.At)
	a.metrics.StoredBundleVerdict(v.Verdict)
}

// crashLoopGuarded counts a patch the crash-loop guard kept off this host:
// the host restarted while the patch was being applied or watched.
func (a *Agent) crashLoopGuarded(g splice.Guarded) {
	a.log.Warn("crash-loop guard: the host restarted while a patch was being applied or watched; it stays off",
		"patch", g.ID, "version", g.Version, "at", g.At)
	a.metrics.Rollback(metrics.RollbackCrashLoopGuard)
}

// takeGuardVerdicts opens the host once at start-up, so that the
// crash-loop guard's verdicts are counted: `splicefleet boot` usually
// judges them early at boot, before the agent starts, and the journal
// keeps them for it. A host without a journal has nothing to judge.
func (r *rollouts) takeGuardVerdicts(ctx context.Context) {
	defer close(r.guardsTaken)
	a := r.deps
	if _, err := os.Stat(filepath.Join(a.stateDir, splice.JournalFile)); err != nil {
		return
	}
	r.hostMu.Lock()
	defer r.hostMu.Unlock()
	h, err := a.host.openHost(ctx, 0, nil)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("open the host state at start-up", "err", err)
		}
		return
	}
	h.Close()
}

// watching reports whether a health watch runs for the plan.
func (a *Agent) watching(plan string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.watches[plan]
}

func (a *Agent) setWatching(plan string, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if on {
		a.watches[plan] = true
	} else {
		delete(a.watches, plan)
	}
}

// apply takes this host into a rollout: it applies the bundle, watches the
// host for the plan's health window, and reports healthy, or undoes the
// patch and reports the failure to the fleet. It runs in phases: read the
// bundle and the health baseline, open the host, apply under the probe's
// watch (applyWatched), judge the outcome (settleApply).
func (r *rollouts) apply(ctx context.Context, rec *rolloutRecord) {
	defer r.done(rec)
	a := r.deps
	r.hostMu.Lock()
	defer r.hostMu.Unlock()
	ro := rec.Rollout
	b, probe, err := a.host.bundleAndProbe(ro)
	if err != nil {
		r.fail(ctx, rec, nil, err)
		return
	}
	window := ro.Plan.Gates.HealthWindow
	// The patch itself is checked once the apply made it live.
	live := newLiveMark()
	h, err := a.host.openHost(ctx, window, live.step)
	if err != nil {
		r.fail(ctx, rec, nil, fmt.Errorf("open the host state: %w", err))
		return
	}
	defer h.Close()
	r.set(rec, rollout.StateApplying, "")
	a.host.setWatching(ro.Digest, true)
	defer a.host.setWatching(ro.Digest, false)

	out := r.applyWatched(ctx, h, b, probe, window, live)
	r.settleApply(ctx, rec, h, probe, out)
}

// liveMark hears the host lifecycle's steps and marks when an apply made
// the patch live.
type liveMark struct {
	applied atomic.Bool
	live    chan struct{} // closed once the patch is applied
	at      time.Time     // written before live closes
}

func newLiveMark() *liveMark { return &liveMark{live: make(chan struct{})} }

// step is the lifecycle's step hook.
func (l *liveMark) step(step string) {
	if step == "apply:applied" && !l.applied.Swap(true) {
		l.at = time.Now()
		close(l.live)
	}
}

// applyOutcome is what an apply under the probe's watch came to.
type applyOutcome struct {
	patch *splice.Patch
	err   error     // the host's Apply
	probe error     // the probe's watch
	start time.Time // when the apply began
}

// applyWatched applies the bundle with the probe watching alongside, and
// counts the apply's own time, without the health window. The host's
// Apply keeps the crash-loop guard armed for the window; the probe cuts
// the window short on a failure, once the patch is live (the load itself
// is never interrupted).
func (r *rollouts) applyWatched(ctx context.Context, h *splice.Host, b *splice.Bundle, probe *healthProbe, window time.Duration, live *liveMark) applyOutcome {
	a := r.deps
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	probeDone := make(chan error, 1)
	go func() {
		err := probe.watch(wctx, window, live.applied.Load)
		if err != nil {
			select {
			case <-live.live:
				cancel(err)
			case <-wctx.Done():
			}
		}
		probeDone <- err
	}()
	out := applyOutcome{start: time.Now()}
	out.patch, out.err = h.Apply(wctx, b, a.trust())
	cancel(nil)
	out.probe = <-probeDone
	if live.applied.Load() {
		a.metrics.ObserveApply(metrics.ResultOf(nil), live.at.Sub(out.start))
	} else {
		a.metrics.ObserveApply(metrics.ResultOf(out.err), time.Since(out.start))
	}
	return out
}

// settleApply judges an apply's outcome: a failure of the probe or of the
// apply undoes the patch and is reported; an agent stopping inside the
// window leaves the watch to the next start; a patch already applied (or
// newer) is healthy; otherwise a last look at the end of the window
// decides.
func (r *rollouts) settleApply(ctx context.Context, rec *rolloutRecord, h *splice.Host, probe *healthProbe, out applyOutcome) {
	log := r.deps.log.With("rollout", rec.Rollout.Plan.ID, "patch", rec.Patch, "version", rec.Version)
	err := out.err
	switch {
	case out.probe != nil:
		r.fail(ctx, rec, h, out.probe)
	case ctx.Err() != nil:
		log.Info("stopped inside the health window; the watch resumes at the next start")
	case errors.Is(err, splice.ErrAlreadyApplied) || errors.Is(err, splice.ErrDowngrade):
		r.set(rec, rollout.StateHealthy, "already applied: "+err.Error())
	case err != nil:
		r.fail(ctx, rec, h, err)
	default:
		// A last look at the end of the window.
		if err := probe.check(ctx, true); errors.Is(err, errCheckInterrupted) {
			log.Info("stopped inside the health window; the watch resumes at the next start")
			return
		} else if err != nil {
			r.fail(ctx, rec, h, err)
			return
		}
		log.Info("healthy after the health window", "window", rec.Rollout.Plan.Gates.HealthWindow,
			"took", time.Since(out.start).Round(time.Millisecond), "patch_state", out.patch.State)
		r.set(rec, rollout.StateHealthy, "")
	}
}

// rewatch finishes the health window of an apply interrupted by a
// restart: the patch is live, watch it for a whole window again.
func (r *rollouts) rewatch(ctx context.Context, rec *rolloutRecord) {
	defer r.done(rec)
	a := r.deps
	ro := rec.Rollout
	if again, err := r.resumeApply(ctx, rec); err != nil {
		r.fail(ctx, rec, nil, err)
		return
	} else if again {
		return
	}
	_, probe, err := a.host.bundleAndProbe(ro)
	if err != nil {
		r.fail(ctx, rec, nil, err)
		return
	}
	a.host.setWatching(ro.Digest, true)
	defer a.host.setWatching(ro.Digest, false)
	window := ro.Plan.Gates.HealthWindow
	wctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	err = probe.check(ctx, true)
	if err == nil {
		err = probe.watch(wctx, window, func() bool { return true })
	}
	if err == nil && ctx.Err() == nil {
		err = probe.check(ctx, true)
	}
	switch {
	case errors.Is(err, errCheckInterrupted):
		// The agent stops; the watch resumes at the next start.
	case err != nil:
		r.hostMu.Lock()
		defer r.hostMu.Unlock()
		h, herr := a.host.openHost(ctx, 0, nil)
		if herr != nil {
			r.fail(ctx, rec, nil, errors.Join(err, herr))
			return
		}
		defer h.Close()
		r.fail(ctx, rec, h, err)
	case ctx.Err() == nil:
		r.set(rec, rollout.StateHealthy, "")
	}
}

// maxInterrupted bounds the applies of one rollout that the agent
// stopping may cut short before the host gives up on it: an agent killed
// by every apply is itself a failure to report.
const maxInterrupted = 3

// resumeApply looks, for a host that restarted while its state in a
// rollout was "applying", at what the apply left in the host's journal.
// Applied: the watch resumes (false, nil). Never journaled, failed as
// interrupted (splice.Patch.Interrupted: the process stopped before the
// kernel ran the patch, on this boot), or replaced as it was before the
// apply began (splice.Patch.Prior): nothing went wrong with the patch,
// so the host goes back to waiting and the judgement applies it again if
// the rollout still wants it (true, nil). Failed or removed otherwise,
// the crash-loop guard's verdict among them: an error that says so.
func (r *rollouts) resumeApply(ctx context.Context, rec *rolloutRecord) (again bool, err error) {
	a := r.deps
	r.hostMu.Lock()
	h, err := a.host.openHost(ctx, 0, nil)
	if err != nil {
		r.hostMu.Unlock()
		return false, fmt.Errorf("open the host state: %w", err)
	}
	v, err := h.View()
	h.Close()
	r.hostMu.Unlock()
	if err != nil {
		return false, err
	}
	var p *splice.PatchView
	for i := range v.Patches {
		if v.Patches[i].ID == rec.Patch && v.Patches[i].Version == rec.Version {
			p = &v.Patches[i]
		}
	}
	switch {
	case p != nil && p.State == splice.StateApplied:
		return false, nil
	case p == nil || p.Interrupted() || p.State == splice.StateReplaced:
		r.mu.Lock()
		defer r.mu.Unlock()
		if rec.Local.Interrupted >= maxInterrupted {
			return false, fmt.Errorf("the apply of %s version %d was cut short %d times, each time by this agent stopping; not trying again",
				rec.Patch, rec.Version, rec.Local.Interrupted)
		}
		rec.Local.Interrupted++
		r.setLocked(rec, rollout.StateNone, "the apply was cut short when this agent stopped; applying again")
		return true, nil
	default:
		return false, fmt.Errorf("%s version %d is %s on this host: %s", rec.Patch, rec.Version, p.State, p.Reason)
	}
}

// fail undoes the rollout's patch when it is live, marks this host failed
// and tells the fleet at once.
func (r *rollouts) fail(ctx context.Context, rec *rolloutRecord, h *splice.Host, cause error) {
	a := r.deps
	reason := cause.Error()
	if h != nil {
		start := time.Now()
		_, _, err := h.RevertVersion(context.WithoutCancel(ctx), rec.Patch, rec.Version, "rollout "+rec.Rollout.Plan.ID+" failed on this host: "+reason)
		if !errors.Is(err, splice.ErrNotApplied) {
			a.metrics.ObserveUndo(metrics.ResultOf(err), time.Since(start))
			if err == nil && errors.Is(cause, errUnhealthy) {
				a.metrics.Rollback(metrics.RollbackHealthCheck)
			}
		}
		if err != nil && !errors.Is(err, splice.ErrNotApplied) {
			reason += "; undo failed: " + err.Error()
		}
	}
	a.log.Warn("rollout failed on this host", "rollout", rec.Rollout.Plan.ID, "reason", reason)
	// Signed, kept and gossiped with the reason; then the state in the
	// tags.
	r.set(rec, rollout.StateFailed, reason)
}

// rollBack undoes the rollout's patch on this host after a halt.
func (r *rollouts) rollBack(ctx context.Context, rec *rolloutRecord, st rollout.Status) {
	defer r.done(rec)
	a := r.deps
	r.hostMu.Lock()
	defer r.hostMu.Unlock()
	h, err := a.host.openHost(ctx, 0, nil)
	if err != nil {
		a.log.Warn("roll back: open the host state", "err", err)
		return
	}
	defer h.Close()
	start := time.Now()
	// Why it halted, without the progress of the roll back.
	why, _, _ := strings.Cut(st.Why, "; rolling back")
	_, _, err = h.RevertVersion(ctx, rec.Patch, rec.Version, "rolled back: rollout "+rec.Rollout.Plan.ID+" "+why)
	if !errors.Is(err, splice.ErrNotApplied) {
		a.metrics.ObserveUndo(metrics.ResultOf(err), time.Since(start))
		if err == nil {
			reason := metrics.RollbackOperator
			if rec.Rollout.HaltedByGate {
				reason = metrics.RollbackCanaryHalt
			}
			a.metrics.Rollback(reason)
		}
	}
	switch {
	case err == nil || errors.Is(err, splice.ErrNotApplied):
		r.set(rec, rollout.StateRolledBack, st.Why)
	default:
		a.log.Warn("roll back", "rollout", rec.Rollout.Plan.ID, "patch", rec.Patch, "err", err)
	}
}
