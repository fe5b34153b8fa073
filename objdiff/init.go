package objdiff

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Changed init code. Init code ran once, at boot for vmlinux or when a
// module loaded, and was freed; a livepatch never replaces it. Whether
// its change may be left out of a bundle depends on where it runs and
// why it changed:
//
//   - The change comes only from inlined copies of functions the bundle
//     replaces in code that runs later (an inline, or a static function
//     gcc inlined, whose other, non-init caller changed too or whose own
//     symbol changed), and the rest of the init function refers to the
//     same things in the same order. In vmlinux that init code ran at
//     boot and is gone: leaving it out loses nothing that could still
//     run, and the runtime copies are replaced ([Result.LeaveOutInit]).
//   - A module's init code runs whenever the module loads, after
//     klp_module_coming has patched the module's functions but with its
//     own code unpatched: a module loaded after the bundle would run the
//     old init, so any change to it is new init behaviour that the
//     bundle cannot deliver, and it stays refused.
//   - Anything else (the init function's own code changed, or a copy of
//     a function the bundle does not carry) is what the fix changes in
//     init, and stays refused in both.

// initSideEffects marks, on each init problem of a changed function,
// the inline functions whose copies explain the change (Problem.Inlined)
// when the conditions above hold for vmlinux.
func (c *comparison) initSideEffects(copies map[string]map[string]bool) {
	if !c.res.DebugInfo {
		return
	}
	for i := range c.res.Unsafe {
		p := &c.res.Unsafe[i]
		if p.Kind != KindInit || !c.changed[p.Name] || c.pre.funcs[p.Name] == nil || c.postFuncs[p.Name] == nil {
			continue
		}
		// DWARF names the copies by the function, not by its aliases
		// (module_init's init_module is an alias of the init function).
		a, b := c.pre.funcs[p.Name], c.postFuncs[p.Name]
		set := map[string]bool{}
		for _, alias := range aliases(b) {
			maps.Copy(set, copies[alias])
		}
		inl := slices.Sorted(maps.Keys(set))
		if len(inl) == 0 {
			p.Reason += "; the change is the init function's own, not a copy of code the bundle replaces"
			continue
		}
		carried := true
		for _, x := range inl {
			if !c.carriedOutsideInit(x, copies) {
				carried = false
				p.Reason += fmt.Sprintf("; its inlined copy of %s changed, which no function outside init code that the bundle replaces carries", x)
				break
			}
		}
		if !carried {
			continue
		}
		ra := outsideCopies(c.pre.entityImage(a), a, aliases(a), c.pre.debug, inl)
		rb := outsideCopies(c.postImage(b), b, aliases(b), c.post.debug, inl)
		if !slices.Equal(ra, rb) {
			p.Reason += fmt.Sprintf("; besides its inlined copies of %s, it refers to other things than before: the fix changes what init does", strings.Join(inl, ", "))
			continue
		}
		p.Inlined = inl
		p.Reason += fmt.Sprintf("; the change is only its inlined copies of %s, which the bundle replaces where they run later", strings.Join(inl, ", "))
	}
}

// carriedOutsideInit reports whether the bundle replaces inline
// function x where it runs after init: its own symbol changed, in
// code that is not init, or a changed function outside init holds a
// changed copy of it.
func (c *comparison) carriedOutsideInit(x string, copies map[string]map[string]bool) bool {
	for _, s := range symbolsOf(c.post, x) {
		if e := c.post.funcs[s]; e != nil && c.changed[s] && !isInit(e.sec.name) {
			return true
		}
	}
	for caller, xs := range copies {
		if e := c.postFuncs[caller]; xs[x] && e != nil && !isInit(e.sec.name) {
			return true
		}
	}
	return false
}

// aliases returns the names of the functions at e's place, e's own
// among them.
func aliases(e *entity) []string {
	var out []string
	for _, f := range e.sec.funcs {
		if f.start == e.start {
			out = append(out, f.name)
		}
	}
	return out
}

// outsideCopies lists the references of function e's image, in order,
// that lie outside the inlined copies of the functions inl. names are
// e and its aliases, under which DWARF may name the copies.
func outsideCopies(img image, e *entity, names []string, d *debugInfo, inl []string) []string {
	var spans []span
	for _, x := range inl {
		for _, n := range names {
			spans = append(spans, d.inlined[x][n]...)
		}
	}
	var out []string
	for _, r := range img.relocs {
		at := e.start + r.off
		inside := false
		for _, s := range spans {
			if s.sec == e.sec && at >= s.start && at < s.end {
				inside = true
				break
			}
		}
		if !inside {
			out = append(out, fmt.Sprintf("%d %s", r.typ, r.target))
		}
	}
	return out
}

// LeaveOutInit is for a caller whose object is built into vmlinux: its
// init code ran at boot and was freed. It moves every init problem
// whose change is only inlined copies of functions the bundle replaces
// elsewhere (Problem.Inlined) from Unsafe to LeftOut, drops those init
// functions from Changed (they are not patched) and from the callers of
// inlined-function problems (moving one left without callers to
// LeftOut too: its copies were only in that init code), and returns
// them. Never for a module: its
// init code runs again whenever it loads.
func (r *Result) LeaveOutInit() []Problem {
	out := map[string]bool{}
	var kept, left []Problem
	for _, p := range r.Unsafe {
		if p.Kind == KindInit && len(p.Inlined) > 0 {
			left = append(left, p)
			out[p.Name] = true
		} else {
			kept = append(kept, p)
		}
	}
	if len(left) == 0 {
		return nil
	}
	r.Unsafe = kept
	if r.Unsafe == nil {
		r.Unsafe = []Problem{}
	}
	r.Changed = slices.DeleteFunc(r.Changed, func(f Function) bool { return out[f.Name] })
	// An inline function whose changed copies were only in the init
	// code left out (its own symbol is replaced) is left out with it.
	kept = r.Unsafe[:0]
	for _, p := range r.Unsafe {
		if p.Kind == KindInlined && len(p.Callers) > 0 {
			p.Callers = slices.DeleteFunc(slices.Clone(p.Callers), func(c string) bool { return out[c] })
			if len(p.Callers) == 0 {
				left = append(left, p)
				continue
			}
		}
		kept = append(kept, p)
	}
	r.Unsafe = kept
	r.LeftOut = append(r.LeftOut, left...)
	return left
}
