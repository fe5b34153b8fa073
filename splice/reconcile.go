package splice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
)

// reconcile makes the journal agree with the kernel, which is the truth. It
// runs whenever a Host is opened, before any action. It changes the kernel
// only to finish what the journal shows half-done: waiting for a
// transition in progress, unloading the module of a patch the kernel
// already disabled, retiring what an interrupted apply superseded (its
// Supersedes), and putting back what an interrupted undo had to put back
// (the journal's Restoring).
func (h *Host) reconcile(ctx context.Context) (err error) {
	info, err := h.cfg.Kernel.Info()
	if err != nil {
		return fmt.Errorf("read kernel identity: %w", err)
	}
	kp, err := h.kernelPatches(ctx)
	if err != nil {
		return err
	}
	before, err := json.Marshal(h.journal)
	if err != nil {
		return err
	}
	// Whether the host restarted since the journal was last written.
	restarted := h.journal.Kernel.BootID != "" && info.BootID != "" && h.journal.Kernel.BootID != info.BootID
	if err := h.guardCrashLoop(info); err != nil {
		return err
	}
	// The verdicts go to the callback once the journal no longer holds
	// them: a failed write keeps them for the next Host.
	var guarded []Guarded
	if h.cfg.OnCrashLoopGuard != nil {
		guarded, h.journal.Guarded = h.journal.Guarded, nil
	}
	var verdicts []TrustVerdict
	if h.cfg.OnTrustVerdict != nil {
		verdicts, h.journal.Verdicts = h.journal.Verdicts, nil
	}
	defer func() {
		if err == nil {
			for _, g := range guarded {
				h.cfg.OnCrashLoopGuard(g)
			}
			for _, v := range verdicts {
				h.cfg.OnTrustVerdict(v)
			}
		}
	}()

	// The kernel lists a patch while it is enabled or in a transition;
	// a disabled or replaced patch vanishes from the list while its module
	// may stay loaded.
	modules, err := h.cfg.Kernel.Modules()
	if err != nil {
		return fmt.Errorf("list kernel modules: %w", err)
	}
	k := kernelView{info: info, patches: kp, loaded: map[string]bool{}}
	for _, m := range modules {
		k.loaded[m] = true
	}
	interrupted, err := h.settleAll(ctx, k)
	if err != nil {
		return err
	}
	// Whatever the marker guarded has been judged above.
	h.journal.Pending = nil
	if finished, err := h.finishUndo(ctx, info, restarted, interrupted); finished || err != nil {
		return err // restore wrote the journal
	}
	after, err := json.Marshal(h.journal)
	if err != nil {
		return err
	}
	if _, err := os.Stat(h.paths.journal); err == nil && string(before) == string(after) {
		return nil // nothing to record: a read-only command leaves the journal alone
	}
	return h.save(info)
}

// kernelView is what reconcile read of the kernel.
type kernelView struct {
	info    KernelInfo
	patches map[string]KernelPatch // by module name: enabled or in transition
	loaded  map[string]bool        // module names loaded
}

// guardCrashLoop fails the patch the journal's marker names when the host
// went down while it was being applied or watched: it is not tried again
// by itself.
func (h *Host) guardCrashLoop(info KernelInfo) error {
	pend := h.journal.Pending
	if pend == nil || pend.BootID == info.BootID {
		return nil
	}
	p := h.journal.find(pend.ID, pend.Version)
	if p == nil || p.State == StateFailed {
		return nil
	}
	reason := fmt.Sprintf("crash-loop guard: the host restarted while %s version %d was being applied or in its health window; it is not re-applied automatically (apply it again by hand once the cause is known)", p.ID, p.Version)
	if err := h.move(p, StateFailed, reason, edgeGuard); err != nil {
		return err
	}
	h.journal.Guarded = append(h.journal.Guarded, Guarded{ID: p.ID, Version: p.Version, BootID: info.BootID, At: p.Updated})
	if n := len(h.journal.Guarded); n > maxGuarded {
		h.journal.Guarded = slices.Clone(h.journal.Guarded[n-maxGuarded:])
	}
	return nil
}

// settleAll brings every journaled patch in line with the kernel and
// returns the applies the kernel never finished.
//
// The patches an apply journaled as superseded are judged after the patch
// that supersedes them: if it took effect, the apply stopped between the
// load and the retire, and the retire is finished here (an atomic-replace
// patch's kernel has already disabled them; they are not "removed outside
// splicefleet").
func (h *Host) settleAll(ctx context.Context, k kernelView) (interrupted []*Patch, err error) {
	retiring := map[string]*Patch{}
	for _, p := range h.journal.Patches {
		for _, key := range p.Supersedes {
			retiring[key] = p
		}
	}
	settle := func(p *Patch) error {
		cut, err := h.settle(ctx, p, k)
		if cut {
			interrupted = append(interrupted, p)
		}
		return err
	}
	var later []*Patch
	for _, p := range h.journal.Patches {
		if retiring[patchKey(p)] != nil {
			later = append(later, p)
			continue
		}
		if err := settle(p); err != nil {
			return nil, err
		}
	}
	for _, q := range later {
		// by took effect when the journal says applied (or, after a
		// reboot on another build, not applicable): q was to go.
		by := retiring[patchKey(q)]
		if q.State == StateApplied && (by.State == StateApplied || by.State == StateNotApplicable) {
			enabled := k.patches[q.Module].Enabled
			if err := h.retireOne(ctx, by, q, enabled, enabled || k.loaded[q.Module]); err != nil {
				return nil, err
			}
			continue
		}
		if err := settle(q); err != nil {
			return nil, err
		}
	}
	for _, p := range h.journal.Patches {
		p.Supersedes = nil // judged above
		if p.Live() && p.ReplacedBy != "" {
			// Back in the kernel (a put-back the crash cut short after
			// the load): nothing replaces it any more.
			p.ReplacedBy = ""
		}
	}
	return interrupted, nil
}

// settle brings one patch's journaled state in line with the kernel. It
// reports whether the patch was an apply the kernel never finished.
func (h *Host) settle(ctx context.Context, p *Patch, k kernelView) (interrupted bool, err error) {
	info := k.info
	kpatch, listed := k.patches[p.Module]
	enabled := listed && kpatch.Enabled
	// Whether the host restarted since this patch was loaded, and
	// whether it came back on the build the patch was applied to.
	rebooted := p.Kernel.BootID != "" && info.BootID != "" && p.Kernel.BootID != info.BootID
	sameBuild := p.Kernel.Release == info.Release && p.Kernel.Arch == info.Arch && p.Kernel.BuildID == info.BuildID
	if !enabled && k.loaded[p.Module] {
		// A module whose patch the kernel disabled: finish the unload.
		h.unloadQuietly(ctx, p.Module)
	}
	switch p.State {
	case StateApplying:
		switch {
		case enabled:
			if p.AppliedAt.IsZero() {
				p.AppliedAt = h.cfg.Now().UTC()
			}
			return false, h.transition(p, StateApplied, "")
		case p.Prior != nil:
			return true, h.restorePrior(p, "interrupted before the kernel ran it")
		case k.loaded[p.Module]:
			return true, h.transition(p, StateFailed, ReasonInterruptedDisabled)
		default:
			return true, h.transition(p, StateFailed, ReasonInterruptedBeforeLoad)
		}
	case StateApplied:
		switch {
		case enabled:
		case rebooted && !sameBuild:
			return false, h.transition(p, StateNotApplicable, fmt.Sprintf("the host now runs %s build %s; the patch was applied to %s build %s",
				info.Release, orUnknown(info.BuildID), p.Kernel.Release, orUnknown(p.Kernel.BuildID)))
		case rebooted:
			// Same build: boot re-applies it.
		default:
			return false, h.transition(p, StateReverted, "removed outside splicefleet: the kernel no longer runs it")
		}
	case StateReverting:
		if enabled {
			return false, h.transition(p, StateApplied, "undo interrupted before the kernel disabled the patch")
		}
		return false, h.transition(p, StateReverted, "")
	case StateNotApplicable:
		if sameBuild {
			// Back on the build it was made for: boot may re-apply it.
			return false, h.transition(p, StateApplied, "")
		}
	}
	return false, nil
}

// finishUndo finishes an undo that stopped before putting back what the
// undone patch had replaced (after a restart, boot does). It reports
// whether it did, and so wrote the journal.
func (h *Host) finishUndo(ctx context.Context, info KernelInfo, restarted bool, interrupted []*Patch) (bool, error) {
	key := h.journal.Restoring
	if key == "" {
		return false, nil
	}
	undone := h.journal.findKey(key)
	if restarted || undone == nil || undone.State != StateReverted {
		h.journal.Restoring = ""
		return false, nil
	}
	var retry []*Patch
	for _, q := range interrupted {
		if q.ReplacedBy == key {
			retry = append(retry, q)
		}
	}
	if _, err := h.restore(ctx, key, info, retry); err != nil {
		h.log.Warn("put back what an interrupted undo took off", "after", key, "err", err)
	}
	return true, nil
}

// kernelPatches reads the kernel's patches by name, first waiting out any
// transition in progress so that what follows sees a settled kernel.
func (h *Host) kernelPatches(ctx context.Context) (map[string]KernelPatch, error) {
	list, err := h.cfg.Kernel.Patches()
	if err != nil {
		return nil, fmt.Errorf("read kernel livepatches: %w", err)
	}
	waited := false
	for _, k := range list {
		if k.Transition {
			waited = true
			if err := h.cfg.Kernel.WaitTransition(ctx, k.Name); err != nil {
				h.log.Warn("transition in progress at start-up did not complete", "patch", k.Name, "err", err)
			}
		}
	}
	if waited {
		if list, err = h.cfg.Kernel.Patches(); err != nil {
			return nil, fmt.Errorf("read kernel livepatches: %w", err)
		}
	}
	m := make(map[string]KernelPatch, len(list))
	for _, k := range list {
		m[k.Name] = k
	}
	return m, nil
}

func (h *Host) unloadQuietly(ctx context.Context, module string) {
	if err := h.cfg.Kernel.Unload(ctx, module); err != nil {
		h.log.Warn("unload disabled module", "module", module, "err", err)
	}
}

// Boot re-applies, in stack order, the patches that were applied before
// the host restarted on the same kernel build. Patches stopped by the
// crash-loop guard stay failed. It returns the patches it applied.
func (h *Host) Boot(ctx context.Context) ([]*Patch, error) {
	info, err := h.cfg.Kernel.Info()
	if err != nil {
		return nil, fmt.Errorf("read kernel identity: %w", err)
	}
	if !info.Livepatch {
		return nil, ErrNoLivepatch
	}
	kp, err := h.kernelPatches(ctx)
	if err != nil {
		return nil, err
	}
	var done []*Patch
	var errs []error
	// The source patches of the updates in the kernel, for the bundles
	// built on top of them.
	present := map[string]bool{}
	for _, p := range h.journal.stack() {
		if p.State != StateApplied {
			continue
		}
		if _, ok := kp[p.Module]; ok {
			present[p.SourcePatch] = true
			continue
		}
		if u, ok := missingBase(p, present); !ok {
			cause := fmt.Errorf("not loaded at boot: it is built on top of %s (source patch %s), which is not in the kernel", orUnknown(u.Name), u.SourcePatch)
			errs = append(errs, fmt.Errorf("%s version %d: %w", p.ID, p.Version, h.fail(p, info, cause)))
			continue
		}
		ok, err := h.judgeStored(p, info, "boot")
		if errors.Is(err, ErrNoPolicy) {
			return done, err // nothing judged, nothing marked
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s version %d: %w", p.ID, p.Version, err))
			continue
		}
		if err := h.load(ctx, p, info); err != nil {
			errs = append(errs, fmt.Errorf("%s version %d: %w", p.ID, p.Version, err))
			continue
		}
		if err := h.healthWindow(ctx, info); err != nil {
			return done, err
		}
		present[p.SourcePatch] = true
		done = append(done, p)
	}
	// A patch replaced by one that is no longer live (the crash-loop guard
	// stopped it, or the host went down between an undo and putting back
	// what it had replaced) comes back, as an undo would have put it.
	back, err := h.restoreOrphans(ctx, info)
	return append(done, back...), errors.Join(append(errs, err)...)
}

// missingBase returns the first earlier update p is built on top of that
// is not present, and false; or true when all are.
func missingBase(p *Patch, present map[string]bool) (UpdateRef, bool) {
	for _, u := range p.OnTopOf {
		if !present[u.SourcePatch] {
			return u, false
		}
	}
	return UpdateRef{}, true
}

// restoreOrphans puts back the replaced patches whose replacer is not live.
func (h *Host) restoreOrphans(ctx context.Context, info KernelInfo) ([]*Patch, error) {
	live := map[string]bool{}
	for _, p := range h.journal.Patches {
		if p.Live() {
			live[patchKey(p)] = true
		}
	}
	var keys []string
	for _, q := range h.journal.Patches {
		if q.State == StateReplaced && q.ReplacedBy != "" && !live[q.ReplacedBy] && !slices.Contains(keys, q.ReplacedBy) {
			keys = append(keys, q.ReplacedBy)
		}
	}
	var restored []*Patch
	var errs []error
	for _, key := range keys {
		back, err := h.restore(ctx, key, info, nil)
		restored = append(restored, back...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return restored, errors.Join(errs...)
}

// HostView is what `splicefleet view` shows.
type HostView struct {
	Kernel  KernelInfo    `json:"kernel"`
	Patches []PatchView   `json:"patches"`
	Foreign []KernelPatch `json:"foreign,omitempty"` // livepatches splicefleet did not load
}

// PatchView is a journal entry beside what the kernel says of it.
type PatchView struct {
	Patch
	InKernel         bool `json:"in_kernel"`
	KernelEnabled    bool `json:"kernel_enabled"`
	KernelTransition bool `json:"kernel_transition"`
	// Kernel is the kernel's own record of the patch, when it lists it.
	Kernel *KernelPatch `json:"kernel_patch,omitempty"`
}

// View reports every patch this host knows, newest stack position last,
// with the kernel's own view of each.
func (h *Host) View() (*HostView, error) {
	info, err := h.cfg.Kernel.Info()
	if err != nil {
		return nil, fmt.Errorf("read kernel identity: %w", err)
	}
	list, err := h.cfg.Kernel.Patches()
	if err != nil {
		return nil, fmt.Errorf("read kernel livepatches: %w", err)
	}
	v := &HostView{Kernel: info, Patches: []PatchView{}}
	known := map[string]bool{}
	for _, p := range h.journal.Patches {
		pv := PatchView{Patch: *p}
		for _, k := range list {
			if k.Name == p.Module {
				pv.InKernel, pv.KernelEnabled, pv.KernelTransition = true, k.Enabled, k.Transition
				pv.Kernel = &k
			}
		}
		known[p.Module] = true
		v.Patches = append(v.Patches, pv)
	}
	sortViews(v.Patches)
	for _, k := range list {
		if !known[k.Name] {
			v.Foreign = append(v.Foreign, k)
		}
	}
	return v, nil
}

// LiveSummary reads the journal in stateDir without taking its lock (the
// journal is replaced atomically, so a reader sees a whole one) and
// returns the patches meant to be in the kernel, oldest first, as
// "id@version". A state directory without a journal has none.
func LiveSummary(stateDir string) ([]string, error) {
	journalPath, _ := statePaths(stateDir)
	j := &journal{}
	if _, err := loadJSON(journalPath, j, 16<<20); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range j.stack() {
		out = append(out, fmt.Sprintf("%s@%d", p.ID, p.Version))
	}
	return out, nil
}
