package objdiff

import (
	"errors"
	"fmt"
	"strings"
)

// Errors callers test with errors.Is.
var (
	// ErrMalformed means an input is not a well-formed ELF object: bad
	// headers, a section or symbol outside the file, a relocation outside
	// its section, or a panic inside the ELF or DWARF parser.
	ErrMalformed = errors.New("malformed object")
	// ErrTooLarge means an input exceeds a [Limits] bound: its size, or
	// its number of sections, symbols or relocations.
	ErrTooLarge = errors.New("object exceeds a limit")
	// ErrUnsupported means a well-formed ELF file that objdiff does not
	// compare: not a 64-bit little-endian x86-64 relocatable object, or one
	// that uses SHT_REL relocations or compressed code or data sections.
	ErrUnsupported = errors.New("unsupported object")
	// ErrUnsafe is what an [*UnsafeError] wraps: the difference between
	// the two objects cannot be carried by a livepatch safely.
	ErrUnsafe = errors.New("cannot be livepatched safely")
)

// Kind names the class of a [Problem].
type Kind string

// Problem kinds.
const (
	// KindData is changed or new static or global data. A livepatch
	// replaces functions, not data: the kernel keeps its copy of every
	// variable, with the values it has now.
	KindData Kind = "data"
	// KindInit is changed or new code or data in an init section. Init
	// code ran at boot (or module load) and was freed; patching it changes
	// nothing, and whatever it should have set up is missing.
	KindInit Kind = "init"
	// KindInlined is a function whose code is also inlined into its
	// callers: its change reaches the kernel only if every caller, in
	// every object, is patched too.
	KindInlined Kind = "inlined"
	// KindSignature is a changed function whose prototype changed:
	// callers that are not patched would pass the old arguments.
	KindSignature Kind = "signature"
	// KindSection is a change in a section objdiff does not understand or
	// cannot carry (alternatives, jump labels, exception tables, ...).
	KindSection Kind = "section"
)

// Result is the difference between two objects. Every list is sorted by
// name and never nil, so it prints as JSON arrays.
type Result struct {
	// Pre and Post are the names the objects were opened with.
	Pre  string `json:"pre"`
	Post string `json:"post"`
	// DebugInfo reports whether both objects carried DWARF debug info,
	// which the inline and signature checks need.
	DebugInfo bool `json:"debug_info"`
	// Changed are functions in both objects whose code or references
	// differ; Added only in Post; Removed only in Pre.
	Changed []Function `json:"changed"`
	Added   []Function `json:"added"`
	Removed []Function `json:"removed"`
	// AddedData are variables only in Post, outside init sections: no
	// code of the running kernel refers to them, so a patch module can
	// carry their only copy (a new once-flag or ratelimit state).
	AddedData []Function `json:"added_data"`
	// AddedExports are added functions that Post also exports
	// (EXPORT_SYMBOL): their export entries are not refused, since no
	// unpatched code knows the name, but a livepatch module does not
	// carry the export itself: only the bundle's own new code can call
	// them.
	AddedExports []string `json:"added_exports,omitempty"`
	// RemovedExports are removed functions that Pre exported: the
	// running kernel keeps them and their exports, unpatched (a
	// livepatch removes nothing), for the modules bound to them; only
	// the code the bundle replaces stops calling them.
	RemovedExports []string `json:"removed_exports,omitempty"`
	// Unsafe are the differences a livepatch cannot carry safely.
	Unsafe []Problem `json:"unsafe"`
	// Carried are inlined-function problems that [Result.CarryInlined]
	// found carried by patching their callers.
	Carried []Problem `json:"carried,omitempty"`
	// LeftOut are init problems that [Result.LeaveOutInit] found safe
	// to leave out of a bundle for vmlinux.
	LeftOut []Problem `json:"left_out,omitempty"`
	// Notes say what could not be checked.
	Notes []string `json:"notes,omitempty"`

	externs map[string]string // for CallsFromReplaced (externCalls)
}

// Function is one function symbol.
type Function struct {
	Name    string `json:"name"`
	Section string `json:"section"`
	Binding string `json:"binding"` // "local", "global" or "weak"
	Size    uint64 `json:"size"`
	// Reason is, for a changed function, its first difference.
	Reason string `json:"reason,omitempty"`
	// Callers are, for an added function, the functions and data that
	// refer to it in Post.
	Callers []string `json:"callers,omitempty"`
	// Private is, for a changed function, true when no code the patch
	// leaves in place can call it: it is static, its address is never
	// taken and every function that refers to it, before and after, is
	// changed or added and calls it (a call, not a tail-call jump,
	// which leaves no frame of the caller on the stack; calls.go). A
	// bundle may then carry its new
	// version as a copy only the replaced callers call, instead of
	// redirecting the kernel's copy to it. Exposed says, otherwise, why
	// not ("before: one calls it and is not replaced by the patch").
	// Neither is set for a cold part (F.cold), which goes with F.
	Private bool   `json:"private,omitempty"`
	Exposed string `json:"exposed,omitempty"`
	// Forked is, for a changed function whose prototype changed so that
	// callers compiled against the old one would pass other bits, true
	// when every reference to it in Post is a direct call from a
	// function the patch replaces or adds (not a tail call), apart from
	// its export entry. A bundle then carries its new version as a new
	// function beside the kernel's copy, which it does not redirect: the
	// replaced callers, in this object and in the other objects of the
	// bundle, call the new one with the new arguments, and every caller
	// the bundle leaves in place (in Pre, in objects the patch does not
	// reach, in other modules linked to its export) keeps calling the
	// kernel's copy with the arguments it was compiled for, and keeps
	// its old behaviour. Private is then false.
	Forked bool `json:"forked,omitempty"`
	// Unredirectable is, for a Forked function, true when it is forked
	// not for its prototype but because it is global and livepatch cannot
	// redirect the kernel's copy: it calls no __fentry__ at its entry
	// (notrace, or its file is built without ftrace, as all of lib/ is
	// in 6.1). Every function of the kernel and its modules that calls
	// it must then be replaced, so that their copies call the bundle's
	// copy; another object's callers are found by comparing it with
	// Options.CallersOf naming the function. A caller left in place
	// would keep running the kernel's copy, without the fix.
	Unredirectable bool `json:"unredirectable,omitempty"`
}

// Problem is one difference a livepatch cannot carry safely.
type Problem struct {
	Kind    Kind   `json:"kind"`
	Name    string `json:"name"`              // symbol or section name
	Section string `json:"section,omitempty"` // where Name lives, if a symbol
	Reason  string `json:"reason"`
	// Callers are the changed functions that must be patched together
	// with an inlined function.
	Callers []string `json:"callers,omitempty"`
	// Inlined are, for changed init code, the inline functions whose
	// changed copies are all that changed in it, each replaced by the
	// bundle where it runs after init (see [Result.LeaveOutInit]).
	Inlined []string `json:"inlined,omitempty"`
}

func (p Problem) String() string {
	return fmt.Sprintf("%s %s: %s", p.Kind, p.Name, p.Reason)
}

// CarryInlined is for a caller that compared every object whose source
// changed: a patch to .c files only, each compiled before and after. An
// inline function's copies then changed only inside these objects, each
// copy in a caller that is itself a changed function, and patching those
// callers carries the change; copies in objects not compared (a header's
// inline) are the case it must not be used for. It moves every
// [KindInlined] problem whose callers are all changed or added functions
// from Unsafe to Carried, and returns them, except for a global function
// that went away (inlined into its callers here, while other objects may
// still call the kernel's copy of it).
func (r *Result) CarryInlined() []Problem {
	patched := map[string]bool{}
	for _, f := range r.Changed {
		patched[f.Name] = true
	}
	for _, f := range r.Added {
		patched[f.Name] = true
	}
	goneGlobal := map[string]bool{}
	for _, f := range r.Removed {
		if f.Binding != "local" {
			goneGlobal[f.Name] = true
		}
	}
	var kept, carried []Problem
	for _, p := range r.Unsafe {
		ok := p.Kind == KindInlined && len(p.Callers) > 0 && !goneGlobal[p.Name]
		for _, c := range p.Callers {
			ok = ok && patched[c]
		}
		if ok {
			carried = append(carried, p)
		} else {
			kept = append(kept, p)
		}
	}
	if kept == nil {
		kept = []Problem{}
	}
	r.Unsafe = kept
	r.Carried = append(r.Carried, carried...)
	return carried
}

// Safe reports whether a livepatch can carry the difference.
func (r *Result) Safe() bool { return len(r.Unsafe) == 0 }

// Err returns nil when the difference is safe to livepatch and an
// [*UnsafeError] listing every problem otherwise.
func (r *Result) Err() error {
	if r.Safe() {
		return nil
	}
	return &UnsafeError{Pre: r.Pre, Post: r.Post, Problems: append([]Problem(nil), r.Unsafe...)}
}

// UnsafeError refuses a difference that a livepatch cannot carry. It is a
// verdict on the input, not a transient failure: rebuilding will not
// change it. It wraps [ErrUnsafe].
type UnsafeError struct {
	Pre, Post string
	Problems  []Problem
}

func (e *UnsafeError) Error() string {
	reasons := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		reasons[i] = p.String()
	}
	return fmt.Sprintf("objdiff: %s -> %s %v: %s", e.Pre, e.Post, ErrUnsafe, strings.Join(reasons, "; "))
}

func (e *UnsafeError) Unwrap() error { return ErrUnsafe }
