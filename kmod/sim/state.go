package sim

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/splicefleet/splicefleet/internal/atomicfile"
	"github.com/splicefleet/splicefleet/internal/bounded"
	"github.com/splicefleet/splicefleet/kmod"
)

// Files in a kernel's folder.
const (
	stateFile  = "kernel.json"
	faultsFile = "faults.json"
	lockFile   = "lock"
)

// stateFormat is the version of kernel.json; a file of another version is
// refused rather than guessed at.
const stateFormat = 1

// maxLog bounds the log, like the kernel's ring buffer: the oldest records
// are dropped first.
const maxLog = 4096

// maxStateSize bounds the reads of kernel.json and faults.json.
const maxStateSize = 16 << 20

// Log priorities (syslog levels) of the records the simulation writes.
const (
	prioEmerg  = 0
	prioAlert  = 1
	prioErr    = 3
	prioWarn   = 4
	prioNotice = 5
	prioInfo   = 6
)

// Taint bits a loaded module or an injected fault sets.
const (
	taintDie      kmod.Taint = 1 << 7
	taintWarn     kmod.Taint = 1 << 9
	taintOOT      kmod.Taint = 1 << 12
	taintUnsigned kmod.Taint = 1 << 13
)

// state is the whole simulated kernel, as kept in kernel.json.
type state struct {
	Format   int              `json:"format"`
	Identity kmod.Identity    `json:"identity"`
	Boot     time.Time        `json:"boot"`  // wall-clock time of the last boot
	Boots    int              `json:"boots"` // 1 after Init, +1 per Reboot
	Taint    kmod.Taint       `json:"taint"`
	NextSeq  uint64           `json:"next_seq"`  // sequence number of the next log record
	NextAddr uint64           `json:"next_addr"` // load address of the next module
	Modules  []module         `json:"modules"`   // load order
	Patches  []patch          `json:"patches"`   // the klp_patches list: enabled or in transition, oldest first
	Log      []kmod.LogRecord `json:"log"`

	dirty bool // changed since read; write it back
}

// module is one loaded module.
type module struct {
	Name      string   `json:"name"`
	Size      int64    `json:"size"`
	Addr      uint64   `json:"addr"`
	Taints    string   `json:"taints"`
	Functions []string `json:"functions,omitempty"`
	// BusyFailures counts the injected EBUSY failures Unload has returned
	// for this module (see Fault.UnloadBusy).
	BusyFailures int `json:"busy_failures,omitempty"`
}

// patch is one entry of /sys/kernel/livepatch.
type patch struct {
	Name       string      `json:"name"`
	Enabled    bool        `json:"enabled"`
	Replace    bool        `json:"replace"`
	Patched    bool        `json:"patched"` // the vmlinux object
	Transition *transition `json:"transition,omitempty"`
}

// transition is a patch's transition in progress, toward Enabled of its
// patch. Its parameters are fixed when it starts.
type transition struct {
	Start            time.Time     `json:"start"`
	Duration         time.Duration `json:"duration"`
	Never            bool          `json:"never,omitempty"`
	CompleteOnSignal bool          `json:"complete_on_signal,omitempty"`
	Signalled        time.Time     `json:"signalled,omitzero"` // zero until the blocking tasks were signalled
}

// done reports whether the transition has completed by now, and when.
func (t *transition) done(now time.Time) (time.Time, bool) {
	if t.CompleteOnSignal && !t.Signalled.IsZero() {
		return t.Signalled, true
	}
	if t.Never {
		return time.Time{}, false
	}
	end := t.Start.Add(t.Duration)
	return end, !now.Before(end)
}

// newState is a kernel just booted with identity id.
func newState(id kmod.Identity, now time.Time) *state {
	s := &state{Format: stateFormat, Identity: id, NextSeq: 1}
	s.boot(now)
	return s
}

// boot empties the kernel as a (re)boot does. The log sequence continues.
func (s *state) boot(now time.Time) {
	s.Boot = now
	s.Boots++
	s.Identity.BootID = newBootID()
	s.Taint = 0
	s.NextAddr = 0xffffffffc0a00000
	s.Modules = nil
	s.Patches = nil
	s.Log = nil
	lp := "without livepatch"
	if s.Identity.Livepatch {
		lp = "with livepatch"
	}
	s.logf(now, prioNotice, "Linux version %s (SIMULATED kernel, %s, build id %s) boot #%d",
		s.Identity.Release, lp, s.Identity.BuildID, s.Boots)
	s.dirty = true
}

// newBootID makes a random boot id in the kernel's format.
func newBootID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// logf appends a log record stamped at (wall-clock time) at.
func (s *state) logf(at time.Time, prio int, format string, args ...any) {
	since := max(at.Sub(s.Boot), 0)
	if n := len(s.Log); n > 0 {
		since = max(since, s.Log[n-1].Time) // records never go back in time
	}
	s.Log = append(s.Log, kmod.LogRecord{Seq: s.NextSeq, Priority: prio, Time: since, Message: fmt.Sprintf(format, args...)})
	s.NextSeq++
	if len(s.Log) > maxLog {
		s.Log = append(s.Log[:0:0], s.Log[len(s.Log)-maxLog:]...)
	}
	s.dirty = true
}

// taint sets bits; msg, when not empty, is logged if they were not all set.
func (s *state) taint(at time.Time, bits kmod.Taint, prio int, msg string) {
	if s.Taint&bits == bits {
		return
	}
	s.Taint |= bits
	s.dirty = true
	if msg != "" {
		s.logf(at, prio, "%s", msg)
	}
}

func (s *state) module(name string) *module {
	for i := range s.Modules {
		if s.Modules[i].Name == name {
			return &s.Modules[i]
		}
	}
	return nil
}

func (s *state) patch(name string) *patch {
	for i := range s.Patches {
		if s.Patches[i].Name == name {
			return &s.Patches[i]
		}
	}
	return nil
}

// inTransition returns the patch in a transition, or nil.
func (s *state) inTransition() *patch {
	for i := range s.Patches {
		if s.Patches[i].Transition != nil {
			return &s.Patches[i]
		}
	}
	return nil
}

func (s *state) removeModule(name string) {
	for i := range s.Modules {
		if s.Modules[i].Name == name {
			s.Modules = append(s.Modules[:i], s.Modules[i+1:]...)
			s.dirty = true
			return
		}
	}
}

// freePatch takes a patch off the list (klp_free_patch): its sysfs entry
// goes and its module is no longer held.
func (s *state) freePatch(name string) {
	for i := range s.Patches {
		if s.Patches[i].Name == name {
			s.Patches = append(s.Patches[:i], s.Patches[i+1:]...)
			s.dirty = true
			return
		}
	}
}

// settle applies what time has done since the state was last looked at:
// a transition whose time is up completes.
func (s *state) settle(now time.Time) {
	p := s.inTransition()
	if p == nil {
		return
	}
	if at, ok := p.Transition.done(now); ok {
		s.complete(p.Name, at)
	}
}

// complete finishes the transition of the patch named name at time at
// (klp_complete_transition and what follows it).
func (s *state) complete(name string, at time.Time) {
	p := s.patch(name)
	p.Transition = nil
	s.dirty = true
	if !p.Enabled {
		s.logf(at, prioNotice, "livepatch: '%s': unpatching complete", name)
		s.freePatch(name)
		return
	}
	s.logf(at, prioNotice, "livepatch: '%s': patching complete", name)
	if p.Replace {
		// Every older patch is replaced: disabled and freed.
		for i := range s.Patches {
			if s.Patches[i].Name == name {
				s.Patches = append(s.Patches[:0:0], s.Patches[i:]...)
				break
			}
		}
	}
}

// startTransition starts p's transition toward its Enabled.
func (s *state) startTransition(p *patch, f Fault, now time.Time) {
	dir := "unpatching"
	if p.Enabled {
		dir = "patching"
	}
	s.logf(now, prioNotice, "livepatch: '%s': starting %s transition", p.Name, dir)
	p.Transition = &transition{
		Start:            now,
		Duration:         time.Duration(f.TransitionMillis) * time.Millisecond,
		Never:            f.Never,
		CompleteOnSignal: f.CompleteOnSignal,
	}
	s.dirty = true
	s.settle(now) // a zero duration completes at once
}

// reverse reverses p's transition (writing the opposite value to its
// enabled file); the reversal completes at once.
func (s *state) reverse(p *patch, now time.Time) {
	from := "unpatching"
	if p.Enabled {
		from = "patching"
	}
	s.logf(now, prioNotice, "livepatch: '%s': reversing transition from %s", p.Name, from)
	p.Enabled = !p.Enabled
	s.complete(p.Name, now)
}

// readState reads kernel.json of dir.
func readState(dir string) (*state, error) {
	data, err := readBounded(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	var s state
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("decode %s: %w", stateFile, err)
	}
	if s.Format != stateFormat {
		return nil, fmt.Errorf("decode %s: format %d, want %d", stateFile, s.Format, stateFormat)
	}
	return &s, nil
}

// writeState writes kernel.json of dir atomically.
func writeState(dir string, s *state) error {
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("encode %s: %w", stateFile, err)
	}
	return writeAtomic(dir, stateFile, append(data, '\n'))
}

// readBounded reads a file of at most maxStateSize bytes.
func readBounded(path string) ([]byte, error) {
	return bounded.ReadFile(path, maxStateSize)
}

// writeAtomic replaces dir/name with data: temporary file, fsync, rename,
// fsync of the folder. A reader sees the old file or the new one, and a
// crash leaves one of them.
func writeAtomic(dir, name string, data []byte) error {
	return atomicfile.WriteFileAs(filepath.Join(dir, name), data, 0o600, "."+name+".*.tmp")
}
