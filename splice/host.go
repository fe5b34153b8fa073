package splice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/splicefleet/splicefleet/internal/fileperm"
)

// Errors of the host lifecycle that callers branch on.
var (
	ErrDowngrade = errors.New("not newer than the version applied")
	ErrStack     = errors.New("refused by the patch stack")
	// ErrStateWrite: the state directory could not be written (full,
	// read-only) before the kernel was touched; nothing changed.
	ErrStateWrite     = errors.New("cannot write the host's state directory")
	ErrAlreadyApplied = errors.New("already applied")
	ErrNotApplied     = errors.New("not applied on this host")
	ErrNoLivepatch    = errors.New("this kernel has no livepatch support (no /sys/kernel/livepatch; it needs CONFIG_LIVEPATCH)")
	ErrStore          = errors.New("the host's bundle store is damaged")
)

// HostConfig configures a Host.
type HostConfig struct {
	// StateDir holds the journal, the lock and the store of bundles and
	// modules. It is created with mode 0700 when missing. It, its
	// folders and its files must belong to root or to this process's
	// user and not be writable by group or others (package fileperm);
	// files are opened without following symbolic links.
	StateDir string
	// Policy is the host's trust policy. Boot and undo's put-back verify
	// every stored bundle against it before loading it again (see
	// docs/host.md, "Trust at boot"); without it they load nothing and
	// return ErrNoPolicy.
	Policy StoredVerifier
	// OnTrustVerdict, when set, is called for every stored bundle that
	// was refused, or kept although expired, when loaded again. Without
	// it the journal keeps the verdicts (the last 32) for a Host that has
	// one, as with OnCrashLoopGuard.
	OnTrustVerdict func(TrustVerdict)
	// Kernel is the kernel to act on.
	Kernel Kernel
	// Inspect reads a verified module's metadata.
	Inspect Inspector
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives the lifecycle's structured logs (default: discard).
	Logger *slog.Logger
	// LockWait is how long to wait for another process to release the
	// state directory (default 10 s).
	LockWait time.Duration
	// HealthWindow is how long after an apply the crash-loop guard's
	// marker stays: a host that goes down within it does not re-apply the
	// patch by itself.
	HealthWindow time.Duration
	// StepHook, when set, is called with the name of each step of apply
	// and undo, right after the step's journal write ("apply:journaled"
	// to "apply:done", "undo:journaled" to "undo:done", which follows the
	// put-back of what the undone patch had replaced). Crash tests use it
	// to kill the process at every step.
	StepHook func(step string)
	// OnCrashLoopGuard, when set, is called once for every patch the
	// crash-loop guard stopped, after the journal recorded it. The guard
	// acts when a Host is opened on a new boot, usually in `splicefleet
	// boot` early at boot, which sets no callback: the journal keeps the
	// verdicts (the last 32) until a Host with a callback is opened, as
	// the agent's are, and hands each over once.
	OnCrashLoopGuard func(Guarded)
}

// Host is one machine's patch lifecycle: apply, undo, view and boot
// re-apply, journaled so that it survives crashes and reboots. A Host holds
// the state directory's lock from Open to Close.
type Host struct {
	cfg     HostConfig
	lock    *dirLock
	journal *journal
	log     *slog.Logger
	paths   struct{ journal string }
	bundles *Store
	// saved is the journal as last written to (or read from) disk. A
	// write that fails before the kernel is touched puts the journal in
	// memory back to it, so a refused operation leaves the host's state
	// as it was, in memory as on disk.
	saved []byte
	// timing of the last load, for the log line that reports the agent's
	// own overhead beside the kernel's work.
	timing struct{ load, transition time.Duration }
}

// OpenHost locks the state directory, loads the journal and reconciles it
// with the kernel, which is the truth.
func OpenHost(ctx context.Context, cfg HostConfig) (*Host, error) {
	if cfg.Kernel == nil || cfg.Inspect == nil || cfg.StateDir == "" {
		return nil, errors.New("open host: StateDir, Kernel and Inspect are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LockWait == 0 {
		cfg.LockWait = 10 * time.Second
	}
	h := &Host{cfg: cfg, log: cfg.Logger}
	var lockPath string
	h.paths.journal, lockPath = statePaths(cfg.StateDir)
	if err := CheckStateDir(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("open host: %w", err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("open host: %w", err)
	}
	if err := CheckStateDir(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("open host: %w", err)
	}
	lock, err := lockDir(lockPath, cfg.LockWait)
	if err != nil {
		return nil, fmt.Errorf("open host: %w", err)
	}
	h.lock = lock
	if h.bundles, err = OpenStore(cfg.StateDir, h.log); err != nil {
		lock.unlock()
		return nil, fmt.Errorf("open host: %w", err)
	}
	j := &journal{Format: journalFormat, NextStack: 1}
	if _, err := loadJSON(h.paths.journal, j, 16<<20); err != nil {
		lock.unlock()
		return nil, fmt.Errorf("open host: %w", err)
	}
	if j.Format != journalFormat {
		lock.unlock()
		return nil, fmt.Errorf("open host: journal format %d; this splicefleet reads %d", j.Format, journalFormat)
	}
	h.journal = j
	if h.saved, err = json.Marshal(j); err != nil {
		lock.unlock()
		return nil, fmt.Errorf("open host: %w", err)
	}
	if err := h.reconcile(ctx); err != nil {
		lock.unlock()
		return nil, fmt.Errorf("open host: reconcile with the kernel: %w", err)
	}
	return h, nil
}

// Close releases the state directory.
func (h *Host) Close() { h.lock.unlock() }

func (h *Host) step(name string) {
	if h.cfg.StepHook != nil {
		h.cfg.StepHook(name)
	}
}

// save writes the journal atomically, with the kernel it was judged by.
func (h *Host) save(info KernelInfo) error {
	h.journal.Kernel = info
	saved, err := saveJSON(h.paths.journal, h.journal)
	if err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	h.saved = saved
	return nil
}

// begin is the write that journals an operation before the kernel is
// asked anything. When it fails (a full or read-only state directory),
// the journal in memory goes back to what is on disk, and the error says
// that nothing changed.
func (h *Host) begin(info KernelInfo) error {
	err := h.save(info)
	if err == nil {
		return nil
	}
	j := &journal{}
	if jerr := json.Unmarshal(h.saved, j); jerr != nil {
		return errors.Join(err, jerr)
	}
	h.journal = j
	return fmt.Errorf("%w (the kernel was not touched): %w", ErrStateWrite, err)
}

// edge is why a patch changes state.
type edge int

const (
	// edgeLifecycle moves along allowedTransitions.
	edgeLifecycle edge = iota
	// edgeRestorePrior goes back to the state an apply recorded before
	// it (Patch.Prior) when that apply failed or was cut short.
	edgeRestorePrior
	// edgeGuard is the crash-loop guard failing a patch, whatever its
	// state: the host restarted while it was applied or watched.
	edgeGuard
)

// transition moves a patch along the lifecycle.
func (h *Host) transition(p *Patch, to State, reason string) error {
	return h.move(p, to, reason, edgeLifecycle)
}

// move is the one place a patch's state changes: it checks the edge,
// logs the change and records it.
func (h *Host) move(p *Patch, to State, reason string, e edge) error {
	switch e {
	case edgeLifecycle:
		if !canTransition(p.State, to) && p.State != to {
			return fmt.Errorf("internal error: %s version %d cannot go from %q to %q", p.ID, p.Version, p.State, to)
		}
	case edgeRestorePrior:
		if p.Prior == nil || p.Prior.State != to {
			return fmt.Errorf("internal error: %s version %d has no prior state %q to go back to", p.ID, p.Version, to)
		}
	case edgeGuard:
		if to != StateFailed {
			return fmt.Errorf("internal error: the crash-loop guard fails patches; %s version %d to %q", p.ID, p.Version, to)
		}
	}
	level := slog.LevelInfo
	if e == edgeGuard {
		level = slog.LevelWarn
	}
	h.log.Log(context.Background(), level, "patch state", "patch", p.ID, "version", p.Version, "from", string(p.State), "to", string(to), "reason", reason)
	p.State, p.Reason, p.Updated = to, reason, h.cfg.Now().UTC()
	if e != edgeLifecycle {
		p.Prior = nil
	}
	return nil
}

// Apply verifies a bundle, checks it against this host and its stack,
// stores it, and applies it to the kernel. Every refusal happens before
// any state or kernel change.
func (h *Host) Apply(ctx context.Context, b *Bundle, v Verifier) (*Patch, error) {
	start := time.Now()
	verified, err := Verify(b, v, h.cfg.Now())
	if err != nil {
		return nil, err
	}
	info, err := h.cfg.Kernel.Info()
	if err != nil {
		return nil, fmt.Errorf("read kernel identity: %w", err)
	}
	upgrades, err := h.check(verified, info)
	if err != nil {
		return nil, err
	}
	m := verified.Manifest
	if err := h.store(verified); err != nil {
		return nil, err
	}
	p := h.journal.find(m.ID, m.Version)
	if p == nil {
		p = &Patch{ID: m.ID, Version: m.Version}
		h.journal.Patches = append(h.journal.Patches, p)
	}
	p.Module, p.ManifestDigest, p.ModuleDigest = m.Module.Name, verified.ManifestDigest, m.Module.SHA256
	p.Replace, p.Functions, p.CVEs, p.Description, p.Signers = m.Replace, m.Functions, m.CVEs, m.Description, verified.Signers
	p.SourcePatch, p.OnTopOf = m.SourcePatch, m.OnTopOf
	p.VerifiedAt, p.TrustNote = h.cfg.Now().UTC(), ""
	// What this apply retires is journaled with it, so that a crash
	// between the load and the retire leaves the intent on disk.
	p.Supersedes = nil
	for _, q := range upgrades {
		p.Supersedes = append(p.Supersedes, patchKey(q))
	}
	if err := h.load(ctx, p, info); err != nil {
		if errors.Is(err, ErrStateWrite) {
			return nil, err // not journaled: the host is as it was
		}
		return p, err
	}
	if err := h.retire(ctx, p, upgrades, info); err != nil {
		return p, err
	}
	total := time.Since(start)
	h.log.Info("applied", "patch", p.ID, "version", p.Version, "module", p.Module,
		"total_ms", ms(total), "finit_module_ms", ms(h.timing.load), "transition_ms", ms(h.timing.transition),
		"agent_ms", ms(total-h.timing.load-h.timing.transition))
	return p, h.healthWindow(ctx, info)
}

// check runs every check that needs no kernel change, in order. It returns
// the live patches a successful apply supersedes.
func (h *Host) check(v *Verified, info KernelInfo) (supersedes []*Patch, err error) {
	m := v.Manifest
	if !info.Livepatch {
		return nil, ErrNoLivepatch
	}
	facts, err := h.cfg.Inspect(v.Module)
	if err != nil {
		return nil, &RejectError{Reason: ErrNotLivepatch, Err: err}
	}
	switch {
	case !facts.Livepatch:
		return nil, reject(ErrNotLivepatch, "module %q is not a livepatch module", facts.Name)
	case facts.Name != m.Module.Name:
		return nil, reject(ErrManifest, "module is named %q, manifest says %q", facts.Name, m.Module.Name)
	case m.Target.Release != info.Release:
		return nil, reject(ErrTargetMismatch, "%s version %d is for kernel %s; this host runs %s", m.ID, m.Version, m.Target.Release, info.Release)
	case m.Target.Arch != info.Arch:
		return nil, reject(ErrTargetMismatch, "%s version %d is for %s; this host is %s", m.ID, m.Version, m.Target.Arch, info.Arch)
	case m.Target.BuildID != "" && m.Target.BuildID != info.BuildID:
		return nil, reject(ErrTargetMismatch, "%s version %d is for kernel build %s; this host runs build %s", m.ID, m.Version, m.Target.BuildID, orUnknown(info.BuildID))
	case facts.Release != "" && facts.Release != info.Release:
		return nil, reject(ErrTargetMismatch, "module vermagic is for kernel %s; this host runs %s", facts.Release, info.Release)
	case facts.Arch != "" && facts.Arch != info.Arch:
		return nil, reject(ErrTargetMismatch, "module is built for %s; this host is %s", facts.Arch, info.Arch)
	}
	if len(facts.Depends) > 0 {
		loaded, err := h.cfg.Kernel.Modules()
		if err != nil {
			return nil, fmt.Errorf("list kernel modules: %w", err)
		}
		for _, d := range facts.Depends {
			if !slices.Contains(loaded, d) {
				return nil, reject(ErrTargetMismatch, "module %s depends on module %s, which is not loaded", facts.Name, d)
			}
		}
	}
	if err := h.checkOnTopOf(&m); err != nil {
		return nil, err
	}
	for _, p := range h.journal.stack() {
		switch {
		case p.ID == m.ID && p.Version == m.Version:
			return nil, fmt.Errorf("%s version %d: %w", m.ID, m.Version, ErrAlreadyApplied)
		case p.ID == m.ID && p.Version > m.Version:
			return nil, &RejectError{Reason: ErrDowngrade, Err: fmt.Errorf("%s version %d is applied; version %d is older (undo version %d first to go back)", m.ID, p.Version, m.Version, p.Version)}
		case p.ID == m.ID && p.Module == m.Module.Name:
			return nil, &RejectError{Reason: ErrStack, Err: fmt.Errorf("%s version %d uses module name %s, as version %d does, which is loaded; the kernel cannot load two modules of one name: build each version with its own module name (for example %s_v%d)",
				m.ID, m.Version, m.Module.Name, p.Version, strings.TrimSuffix(m.Module.Name, fmt.Sprintf("_v%d", p.Version)), m.Version)}
		case p.ID == m.ID:
			if !m.Replace && !covers(m.Functions, p.Functions) {
				return nil, &RejectError{Reason: ErrStack, Err: fmt.Errorf("%s version %d replaces %s but not %s, which version %d replaces; undo version %d first or publish an atomic-replace bundle",
					m.ID, m.Version, strings.Join(m.Functions, ", "), strings.Join(missing(m.Functions, p.Functions), ", "), p.Version, p.Version)}
			}
			if q := h.builtOnTopOf(p); q != nil && q.ID != m.ID {
				return nil, &RejectError{Reason: ErrStack, Err: fmt.Errorf("%s version %d would take off version %d, on top of which %s version %d is built (it carries version %d's changes to the functions it replaces); undo %s first",
					m.ID, m.Version, p.Version, q.ID, q.Version, p.Version, q.ID)}
			}
			supersedes = append(supersedes, p)
		case p.Module == m.Module.Name:
			return nil, &RejectError{Reason: ErrStack, Err: fmt.Errorf("module name %s is in use by %s version %d", p.Module, p.ID, p.Version)}
		}
	}
	if m.Replace {
		supersedes = nil
		for _, p := range h.journal.stack() {
			if p.State == StateApplied {
				supersedes = append(supersedes, p)
			}
		}
	}
	return supersedes, nil
}

// checkOnTopOf refuses a bundle built on top of earlier updates on a
// host where one of them is not applied: its functions carry the earlier
// updates' changes to them, and applied alone it would drop those
// changes and run code nobody tested.
func (h *Host) checkOnTopOf(m *Manifest) error {
	for _, u := range m.OnTopOf {
		applied := slices.ContainsFunc(h.journal.stack(), func(p *Patch) bool {
			return p.State == StateApplied && p.SourcePatch == u.SourcePatch
		})
		if !applied {
			name := u.Name
			if name == "" {
				name = "an earlier update"
			}
			return &RejectError{Reason: ErrStack, Err: fmt.Errorf("%s version %d is built on top of %s (source patch %s), which is not applied on this host: apply that update first (without it, the functions this bundle replaces would lose its changes)",
				m.ID, m.Version, name, u.SourcePatch)}
		}
	}
	return nil
}

// builtOnTopOf returns a live patch built on top of p, or nil.
func (h *Host) builtOnTopOf(p *Patch) *Patch {
	if p.SourcePatch == "" {
		return nil
	}
	for _, q := range h.journal.stack() {
		if q != p && slices.ContainsFunc(q.OnTopOf, func(u UpdateRef) bool { return u.SourcePatch == p.SourcePatch }) {
			return q
		}
	}
	return nil
}

// store keeps the verified bundle and module in the host's bundle store
// (once, content-addressed, shared with distribution), so boot can
// re-apply them and the kernel loads exactly the verified bytes.
func (h *Host) store(v *Verified) error {
	if err := h.bundles.Keep(v); err != nil {
		return fmt.Errorf("%w: %w", ErrStateWrite, err)
	}
	return nil
}

// openModule opens a stored module and checks its digest through the same
// file descriptor the kernel will load from.
func (h *Host) openModule(p *Patch) (*os.File, error) {
	if !ValidDigest(p.ModuleDigest) {
		return nil, fmt.Errorf("%w: the journal names module %q", ErrStore, p.ModuleDigest)
	}
	f, err := fileperm.Open(h.bundles.modulePath(p.ModuleDigest))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	hash := sha256.New()
	if _, err := io.Copy(hash, io.LimitReader(f, MaxModuleSize+1)); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: read module: %v", ErrStore, err)
	}
	if got := hex.EncodeToString(hash.Sum(nil)); got != p.ModuleDigest {
		f.Close()
		return nil, fmt.Errorf("%w: stored module %s has sha256 %s", ErrStore, p.ModuleDigest, got)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// load journals, marks and loads one patch, and waits for its transition.
func (h *Host) load(ctx context.Context, p *Patch, info KernelInfo) error {
	p.Prior = nil
	if p.State == StateReplaced {
		p.Prior = &Prior{State: p.State, Reason: p.Reason, ReplacedBy: p.ReplacedBy, Stack: p.Stack}
	}
	if p.State != StateApplied || p.Stack == 0 {
		// A new place on top of the stack; a re-apply at boot keeps its own.
		p.Stack = h.journal.NextStack
		h.journal.NextStack++
	}
	if err := h.transition(p, StateApplying, ""); err != nil {
		return err
	}
	p.Kernel = info
	h.journal.Pending = &pending{ID: p.ID, Version: p.Version, Module: p.Module, BootID: info.BootID, Started: h.cfg.Now().UTC()}
	if err := h.begin(info); err != nil {
		return err
	}
	h.step("apply:journaled")
	f, err := h.openModule(p)
	if err != nil {
		return h.fail(p, info, err)
	}
	t0 := time.Now()
	err = h.cfg.Kernel.Load(ctx, f, p.Module, p.Replace)
	f.Close()
	if err != nil {
		return h.fail(p, info, fmt.Errorf("load %s: %w", p.Module, err))
	}
	h.step("apply:loaded")
	t1 := time.Now()
	if err := h.cfg.Kernel.WaitTransition(ctx, p.Module); err != nil {
		return h.fail(p, info, fmt.Errorf("enable %s: %w", p.Module, err))
	}
	h.timing.load, h.timing.transition = t1.Sub(t0), time.Since(t1)
	h.step("apply:transitioned")
	if err := h.transition(p, StateApplied, ""); err != nil {
		return err
	}
	p.Prior = nil
	p.AppliedAt = h.cfg.Now().UTC()
	if h.cfg.HealthWindow <= 0 {
		h.journal.Pending = nil // no window to watch: the guard's job is done
	}
	if err := h.save(info); err != nil {
		return err
	}
	h.step("apply:applied")
	return nil
}

// fail records a failed apply and clears the crash-loop marker: the
// failure is known, not a crash.
func (h *Host) fail(p *Patch, info KernelInfo, cause error) error {
	if p.Prior != nil {
		// It was replaced before this apply: it stays so.
		if err := h.restorePrior(p, cause.Error()); err != nil {
			return err
		}
	} else if err := h.transition(p, StateFailed, cause.Error()); err != nil {
		return err
	}
	h.journal.Pending = nil
	p.Supersedes = nil // it retires nothing
	if err := h.save(info); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// restorePrior puts back what a patch recorded before an apply of it that
// failed or was cut short (Patch.Prior); why says what became of that
// apply.
func (h *Host) restorePrior(p *Patch, why string) error {
	pr := p.Prior
	if pr == nil {
		return fmt.Errorf("internal error: %s version %d has no prior state to go back to (%s)", p.ID, p.Version, why)
	}
	h.log.Info("apply did not complete; the patch goes back to its state before it", "patch", p.ID, "version", p.Version, "apply", why)
	p.ReplacedBy, p.Stack = pr.ReplacedBy, pr.Stack
	return h.move(p, pr.State, pr.Reason, edgeRestorePrior)
}

// retire disables and unloads the patches a new one supersedes: with
// atomic replace the kernel has already disabled them; an upgrade of the
// same id is taken off the stack here.
func (h *Host) retire(ctx context.Context, by *Patch, old []*Patch, info KernelInfo) error {
	for _, p := range old {
		if err := h.retireOne(ctx, by, p, !by.Replace, true); err != nil {
			return err
		}
	}
	by.Supersedes = nil // done: the same write records them replaced
	if len(old) > 0 {
		if err := h.save(info); err != nil {
			return err
		}
		h.step("apply:retired")
	}
	return nil
}

// retireOne takes one superseded patch off the kernel (disabling it first
// when the kernel still runs it) and marks it replaced by the patch that
// superseded it, so that undoing that patch puts it back. A patch the
// kernel will not disable stays applied, with a warning.
func (h *Host) retireOne(ctx context.Context, by, p *Patch, enabled, loaded bool) error {
	if enabled {
		if err := h.cfg.Kernel.Disable(ctx, p.Module); err != nil {
			h.log.Warn("retire superseded patch", "patch", p.ID, "version", p.Version, "err", err)
			return nil
		}
		if err := h.cfg.Kernel.WaitTransition(ctx, p.Module); err != nil {
			h.log.Warn("retire superseded patch", "patch", p.ID, "version", p.Version, "err", err)
			return nil
		}
	}
	if loaded {
		if err := h.cfg.Kernel.Unload(ctx, p.Module); err != nil {
			h.log.Warn("unload replaced module", "module", p.Module, "err", err)
		}
	}
	if err := h.transition(p, StateReplaced, fmt.Sprintf("replaced by %s version %d", by.ID, by.Version)); err != nil {
		return err
	}
	p.ReplacedBy = patchKey(by)
	return nil
}

// healthWindow keeps the crash-loop marker for the health window, then
// clears it.
func (h *Host) healthWindow(ctx context.Context, info KernelInfo) error {
	if h.journal.Pending == nil {
		h.step("apply:done")
		return nil
	}
	t := time.NewTimer(h.cfg.HealthWindow)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	h.journal.Pending = nil
	if err := h.save(info); err != nil {
		return fmt.Errorf("clear crash-loop marker: %w", err)
	}
	h.step("apply:done")
	return nil
}

// Undo takes the patch with this id off the kernel and puts back what it
// had replaced (an older version of it, or the patches an atomic-replace
// patch superseded), so that undoing an upgrade returns the host to where
// it was before it. Only the top of the stack may be undone, like Ksplice.
// It returns the patch undone and the patches put back.
func (h *Host) Undo(ctx context.Context, id string) (*Patch, []*Patch, error) {
	return h.undoTop(ctx, id, func(*Patch) bool { return true }, "")
}

// UndoVersion is Undo of exactly this version: ErrNotApplied when the
// live patch of id is another version (already rolled back, or replaced
// since), so that a repeated rollback never takes off what it put back.
func (h *Host) UndoVersion(ctx context.Context, id string, version uint64) (*Patch, []*Patch, error) {
	return h.undoTop(ctx, id, func(p *Patch) bool { return p.Version == version }, "")
}

// RevertVersion is UndoVersion for a reason that the journal keeps with
// the reverted patch, for view to show: why a rollout took it off (a
// failed health check, a halt, a revoke).
func (h *Host) RevertVersion(ctx context.Context, id string, version uint64, why string) (*Patch, []*Patch, error) {
	return h.undoTop(ctx, id, func(p *Patch) bool { return p.Version == version }, why)
}

func (h *Host) undoTop(ctx context.Context, id string, match func(*Patch) bool, why string) (*Patch, []*Patch, error) {
	info, err := h.cfg.Kernel.Info()
	if err != nil {
		return nil, nil, fmt.Errorf("read kernel identity: %w", err)
	}
	stack := h.journal.stack()
	var p *Patch
	for _, q := range stack {
		if q.ID == id {
			p = q
		}
	}
	if p == nil || !match(p) {
		return nil, nil, fmt.Errorf("%s: %w", id, ErrNotApplied)
	}
	if top := stack[len(stack)-1]; top != p {
		var above []string
		for _, q := range stack[slices.Index(stack, p)+1:] {
			above = append(above, fmt.Sprintf("%s version %d", q.ID, q.Version))
		}
		why := ""
		if q := h.builtOnTopOf(p); q != nil {
			why = fmt.Sprintf(" (%s version %d is built on top of it: it carries its changes to the functions it replaces)", q.ID, q.Version)
		}
		return nil, nil, &RejectError{Reason: ErrStack, Err: fmt.Errorf("%s is not on top of the stack; undo %s first (or use --all)%s", id, strings.Join(above, ", "), why)}
	}
	key := patchKey(p)
	for _, q := range h.journal.Patches {
		if q.State == StateReplaced && q.ReplacedBy == key && h.cfg.Policy == nil {
			// Refuse before the kernel is touched rather than undo
			// and then be unable to put back what it replaced.
			return nil, nil, fmt.Errorf("undo %s: it replaced %s version %d, which would be put back: %w (give the host's configuration or --keyring)", id, q.ID, q.Version, ErrNoPolicy)
		}
		if q.State == StateReplaced && q.ReplacedBy == key {
			// Journaled with the reverting write: a crash before what
			// it replaced is back leaves the put-back to reconcile.
			h.journal.Restoring = key
		}
	}
	if err := h.undo(ctx, p, info, why); err != nil {
		if h.journal.Restoring != "" {
			// The undo stopped short: nothing is put back.
			h.journal.Restoring = ""
			if serr := h.save(info); serr != nil {
				err = errors.Join(err, serr)
			}
		}
		return p, nil, err
	}
	restored, err := h.restore(ctx, key, info, nil)
	h.step("undo:done")
	return p, restored, err
}

// restore loads again, oldest first, the patches that the patch key
// names ("id@version") had replaced, now that it is off the kernel, and
// those in retry (a put-back a crash interrupted). A patch that cannot be
// loaded again is marked failed with the reason, and the others are still
// restored. It clears the journal's Restoring marker for key.
func (h *Host) restore(ctx context.Context, key string, info KernelInfo, retry []*Patch) ([]*Patch, error) {
	var back []*Patch
	for _, q := range h.journal.Patches {
		if q.ReplacedBy == key && (q.State == StateReplaced || slices.Contains(retry, q)) {
			back = append(back, q)
		}
	}
	slices.SortFunc(back, func(a, b *Patch) int { return a.Stack - b.Stack })
	var restored []*Patch
	var errs []error
	for _, q := range back {
		ok, err := h.judgeStored(q, info, "put back after "+key)
		if errors.Is(err, ErrNoPolicy) {
			errs = append(errs, err) // nothing judged: it stays replaced
			continue
		}
		if !ok {
			q.ReplacedBy = ""
			if serr := h.save(info); serr != nil {
				err = errors.Join(err, serr)
			}
			errs = append(errs, err)
			continue
		}
		if err := h.load(ctx, q, info); err != nil {
			errs = append(errs, fmt.Errorf("put back %s version %d: %w", q.ID, q.Version, err))
			continue
		}
		q.ReplacedBy = ""
		q.Reason = fmt.Sprintf("put back: %s, which had replaced it, is off the kernel", key)
		// It ran healthy before: no crash-loop watch for it.
		h.journal.Pending = nil
		if err := h.save(info); err != nil {
			return restored, errors.Join(append(errs, err)...)
		}
		h.log.Info("put back a replaced patch", "patch", q.ID, "version", q.Version, "after", key)
		restored = append(restored, q)
	}
	if h.journal.Restoring == key {
		h.journal.Restoring = ""
		if err := h.save(info); err != nil {
			errs = append(errs, err)
		}
	}
	return restored, errors.Join(errs...)
}

// patchKey names one version of a patch, as ReplacedBy records it.
func patchKey(p *Patch) string { return fmt.Sprintf("%s@%d", p.ID, p.Version) }

// UndoAll unwinds the whole stack, newest first.
func (h *Host) UndoAll(ctx context.Context) ([]*Patch, error) {
	info, err := h.cfg.Kernel.Info()
	if err != nil {
		return nil, fmt.Errorf("read kernel identity: %w", err)
	}
	// Nothing comes back after undo --all, at boot either: what the
	// undone patches replaced stays off.
	for _, q := range h.journal.Patches {
		if q.State == StateReplaced {
			q.ReplacedBy = ""
		}
	}
	stack := h.journal.stack()
	var done []*Patch
	for i := len(stack) - 1; i >= 0; i-- {
		if err := h.undo(ctx, stack[i], info, ""); err != nil {
			return done, err
		}
		done = append(done, stack[i])
	}
	h.step("undo:done")
	return done, nil
}

// undo takes p off the kernel; the reverted patch keeps why as its
// reason.
func (h *Host) undo(ctx context.Context, p *Patch, info KernelInfo, why string) error {
	if err := h.transition(p, StateReverting, ""); err != nil {
		return err
	}
	if err := h.begin(info); err != nil {
		return err
	}
	h.step("undo:journaled")
	if err := h.cfg.Kernel.Disable(ctx, p.Module); err != nil {
		return h.undoFailed(p, info, fmt.Errorf("disable %s: %w", p.Module, err))
	}
	h.step("undo:disabling")
	if err := h.cfg.Kernel.WaitTransition(ctx, p.Module); err != nil {
		return h.undoFailed(p, info, fmt.Errorf("disable %s: %w", p.Module, err))
	}
	h.step("undo:disabled")
	unloadErr := h.cfg.Kernel.Unload(ctx, p.Module)
	if unloadErr != nil {
		unloadErr = fmt.Errorf("unload %s: %w (the patch is disabled; the module stays loaded)", p.Module, unloadErr)
	}
	h.step("undo:unloaded")
	reason := why
	if unloadErr != nil {
		reason = strings.TrimPrefix(why+"; "+unloadErr.Error(), "; ")
	}
	if err := h.transition(p, StateReverted, reason); err != nil {
		return err
	}
	if err := h.save(info); err != nil {
		return err
	}
	h.step("undo:reverted")
	return unloadErr
}

// undoFailed puts a patch whose undo did not happen back to applied: the
// kernel still runs it.
func (h *Host) undoFailed(p *Patch, info KernelInfo, cause error) error {
	if err := h.transition(p, StateApplied, "undo failed: "+cause.Error()); err != nil {
		return err
	}
	h.journal.Restoring = "" // nothing to put back: it still runs
	if err := h.save(info); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

func covers(have, want []string) bool {
	return len(missing(have, want)) == 0
}

func missing(have, want []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

// ms is a duration in milliseconds, for log fields.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
