package splice

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/splicefleet/splicefleet/internal/atomicfile"
	"github.com/splicefleet/splicefleet/internal/fileperm"
)

// State is where one patch is on one host.
type State string

// The states of a patch on a host. Only Host.move changes a patch's
// state: along the edges in allowedTransitions (Host.transition), back to
// the state an apply recorded before it (Patch.Prior), or to failed by the
// crash-loop guard.
const (
	StateApplying      State = "applying"       // journaled before the kernel is asked to load it
	StateApplied       State = "applied"        // the kernel has it enabled
	StateReverting     State = "reverting"      // journaled before the kernel is asked to disable it
	StateReverted      State = "reverted"       // undone: disabled and unloaded
	StateReplaced      State = "replaced"       // superseded by an atomic-replace patch or a newer version
	StateFailed        State = "failed"         // refused by the kernel, stalled, or stopped by the crash-loop guard
	StateNotApplicable State = "not_applicable" // the host now runs another kernel build
)

// allowedTransitions is the lifecycle's state machine.
var allowedTransitions = map[State][]State{
	"":                 {StateApplying},
	StateApplying:      {StateApplied, StateFailed},
	StateApplied:       {StateReverting, StateReplaced, StateNotApplicable, StateApplying, StateReverted, StateFailed},
	StateReverting:     {StateReverted, StateApplied, StateFailed},
	StateReverted:      {StateApplying},
	StateReplaced:      {StateApplying, StateReverted, StateFailed},
	StateFailed:        {StateApplying, StateReverted},
	StateNotApplicable: {StateApplying, StateApplied},
}

func canTransition(from, to State) bool {
	return slices.Contains(allowedTransitions[from], to)
}

// Patch is the journal's record of one bundle on this host.
type Patch struct {
	ID             string   `json:"id"`
	Version        uint64   `json:"version"`
	Module         string   `json:"module"`
	ManifestDigest string   `json:"manifest_digest"`
	ModuleDigest   string   `json:"module_sha256"`
	Replace        bool     `json:"replace"`
	Functions      []string `json:"functions"`
	CVEs           []string `json:"cves,omitempty"`
	Description    string   `json:"description,omitempty"`
	Signers        []string `json:"signers,omitempty"`
	// SourcePatch and OnTopOf are the manifest's: the digest of the
	// source patch the module was made from, and the earlier updates
	// it was built on top of.
	SourcePatch string      `json:"source_patch,omitempty"`
	OnTopOf     []UpdateRef `json:"on_top_of,omitempty"`
	State       State       `json:"state"`
	Reason      string      `json:"reason,omitempty"` // why it failed, was replaced or is not applicable
	Stack       int         `json:"stack"`            // position in this host's stack, 1 is the oldest
	// ReplacedBy names the patch that replaced this one ("id@version"),
	// so that undoing that patch puts this one back.
	ReplacedBy string `json:"replaced_by,omitempty"`
	// Supersedes names the patches ("id@version") this apply retires: an
	// older version of its id, or what an atomic-replace patch replaces.
	// It is journaled with the applying write and cleared by the write
	// that records them replaced, so that a crash in between leaves the
	// intent on disk and reconciliation finishes the retire.
	Supersedes []string `json:"supersedes,omitempty"`
	// Prior is what a patch that was replaced had recorded before an
	// apply of it started (journaled with the applying write): an apply
	// that fails, or that a crash cuts short before the kernel ran it,
	// puts it back, so that the patch that replaced it still puts it
	// back when undone. Cleared when the apply succeeds.
	Prior     *Prior    `json:"prior,omitempty"`
	AppliedAt time.Time `json:"applied_at,omitzero"`
	// VerifiedAt is when the bundle was verified for its first apply on
	// this host: Boot and put-back judge expiry as of then (see
	// docs/host.md, "Trust at boot").
	VerifiedAt time.Time `json:"verified_at,omitzero"`
	// TrustNote says why the patch was last loaded again although its
	// bundle, a signature or a key on it had expired since it was
	// applied; empty when it was still valid.
	TrustNote string    `json:"trust_note,omitempty"`
	Updated   time.Time `json:"updated"`
	// Kernel is the build the patch was applied to.
	Kernel KernelInfo `json:"kernel"`
}

// Live reports whether the patch is meant to be in the kernel.
func (p *Patch) Live() bool {
	return p.State == StateApplied || p.State == StateApplying || p.State == StateReverting
}

// Prior is a patch's record before an apply of it started.
type Prior struct {
	State      State  `json:"state"`
	Reason     string `json:"reason,omitempty"`
	ReplacedBy string `json:"replaced_by,omitempty"`
	Stack      int    `json:"stack"`
}

// The reasons reconciliation records for an apply that the process
// running it did not finish (it was killed or the machine stopped), on
// the same boot (see Patch.Interrupted); an apply of a replaced patch goes
// back to what it was instead (Patch.Prior).
const (
	ReasonInterruptedBeforeLoad = "interrupted before the kernel loaded it"
	ReasonInterruptedDisabled   = "interrupted: the kernel disabled the patch"
)

// Interrupted reports whether the patch failed only because the apply
// was interrupted on this boot, before the kernel ran it: nothing about
// the patch itself went wrong, and applying it again is what the
// interrupted caller meant to do. A patch the crash-loop guard stopped
// (the host restarted during the apply) is not interrupted: it failed.
func (p *Patch) Interrupted() bool {
	return p.State == StateFailed && (p.Reason == ReasonInterruptedBeforeLoad || p.Reason == ReasonInterruptedDisabled)
}

// journal is the host's persistent state.
type journal struct {
	Format  int        `json:"format"`
	Kernel  KernelInfo `json:"kernel"` // the kernel at the last write
	Patches []*Patch   `json:"patches"`
	// NextStack is the next stack position to hand out.
	NextStack int `json:"next_stack"`
	// Pending is the crash-loop guard's marker, set in the same write that
	// journals an apply and cleared after its health window.
	Pending *pending `json:"pending,omitempty"`
	// Guarded are the crash-loop guard's verdicts not yet handed to an
	// OnCrashLoopGuard callback (see HostConfig), oldest first, at most
	// maxGuarded.
	Guarded []Guarded `json:"guarded,omitempty"`
	// Verdicts are the trust checks of stored bundles (refused, or kept
	// although expired) not yet handed to an OnTrustVerdict callback,
	// oldest first, at most maxVerdicts.
	Verdicts []TrustVerdict `json:"trust_verdicts,omitempty"`
	// Restoring names the patch ("id@version") an undo is taking off,
	// journaled with the reverting write when it had replaced patches, and
	// cleared once they are put back: a crash in between leaves the
	// put-back for reconciliation to finish.
	Restoring string `json:"restoring,omitempty"`
}

// Guarded is one verdict of the crash-loop guard: the host restarted while
// the patch was being applied or in its health window, so the patch was
// marked failed instead of being re-applied.
type Guarded struct {
	ID      string    `json:"id"`
	Version uint64    `json:"version"`
	BootID  string    `json:"boot_id"` // the boot that found the marker
	At      time.Time `json:"at"`
}

// maxGuarded bounds the verdicts the journal keeps for a callback: a host
// whose agent never runs gains one at most per boot.
const maxGuarded = 32

// journalFormat 1. Fields added since (supersedes, restoring) are
// optional and only set while an operation is under way, so older journals
// read as before.
const journalFormat = 1

// pending is the crash-loop guard's marker: journaled before a load,
// cleared after the health window. Found at start-up on a new boot, it
// means the host went down while the patch was being applied or watched.
type pending struct {
	ID      string    `json:"id"`
	Version uint64    `json:"version"`
	Module  string    `json:"module"`
	BootID  string    `json:"boot_id"`
	Started time.Time `json:"started"`
}

func loadJSON(path string, v any, limit int64) (bool, error) {
	f, err := fileperm.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	if st.Size() > limit {
		return false, fmt.Errorf("%s is %d bytes, more than the %d byte limit", path, st.Size(), limit)
	}
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return true, nil
}

// saveJSON writes v to path atomically and returns the bytes written.
func saveJSON(path string, v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	return data, atomicfile.WriteFile(path, data, 0o600)
}

func (j *journal) find(id string, version uint64) *Patch {
	for _, p := range j.Patches {
		if p.ID == id && p.Version == version {
			return p
		}
	}
	return nil
}

// findKey finds the patch a key ("id@version") names.
func (j *journal) findKey(key string) *Patch {
	for _, p := range j.Patches {
		if patchKey(p) == key {
			return p
		}
	}
	return nil
}

// stack returns the live patches, oldest first.
func (j *journal) stack() []*Patch {
	var live []*Patch
	for _, p := range j.Patches {
		if p.Live() {
			live = append(live, p)
		}
	}
	slices.SortFunc(live, func(a, b *Patch) int { return a.Stack - b.Stack })
	return live
}

func statePaths(dir string) (journalPath, lockPath string) {
	return filepath.Join(dir, JournalFile), filepath.Join(dir, "lock")
}

// sortViews orders live patches by stack position, then the rest by id and
// version.
func sortViews(v []PatchView) {
	slices.SortStableFunc(v, func(a, b PatchView) int {
		if a.Live() != b.Live() {
			if a.Live() {
				return -1
			}
			return 1
		}
		if a.Live() {
			return a.Stack - b.Stack
		}
		if a.ID != b.ID {
			return strings.Compare(a.ID, b.ID)
		}
		return int(a.Version) - int(b.Version)
	})
}
