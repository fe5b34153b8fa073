package objdiff

import (
	"debug/elf"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// A function that does not call __fentry__ at its entry (notrace,
// noinstr, or an inline function gcc still emitted out of line, such as
// virtio_net_hdr_to_skb.constprop.0) cannot be redirected: livepatch
// redirects through ftrace. When it changed, its callers in the kernel
// keep calling the kernel's copy, however identical their own code is.
// kpatch leaves it to the patch author to change a caller; here the
// callers are replaced too, so that their copies call the module's copy
// of the changed function (reach then finds it called only by replaced
// functions, and klpgen carries it as a copy only they call). A caller
// that cannot be redirected itself brings its own callers, in turn.
// Init code is not replaced this way: its refusal stands.

// maxCallerRounds bounds how far up the call graph replaceCallers goes.
const maxCallerRounds = 8

// replaceCallers marks changed the functions of both objects that
// call a changed function that cannot be redirected.
func (c *comparison) replaceCallers() {
	if !callsFentry(c.pre) {
		return // not compiled for ftrace: nothing to tell traceable from not
	}
	for round := 0; round < maxCallerRounds; round++ {
		var add []Function
		for _, f := range c.res.Changed {
			a := c.pre.funcs[f.Name]
			if a == nil || a.sec == nil || isInit(a.sec.name) || coldParentOf(f.Name) != "" || entryCallsFentry(a) {
				continue
			}
			for _, caller := range c.pre.referrer[a.sym.name] {
				g, b := c.pre.funcs[caller], c.postFuncs[caller]
				if g == nil || b == nil || g == a || c.changed[caller] || isInit(g.sec.name) || coldParentOf(caller) != "" ||
					slices.ContainsFunc(add, func(x Function) bool { return x.Name == caller }) {
					continue
				}
				add = append(add, function(b, fmt.Sprintf("calls %s, which changed and cannot be redirected (no __fentry__ call at its entry): "+
					"replaced so that its copy calls the new %s", f.Name, f.Name)))
			}
		}
		if len(add) == 0 {
			return
		}
		for _, f := range add {
			c.changed[f.Name] = true
		}
		c.res.Changed = append(c.res.Changed, add...)
	}
}

// callsFentry reports whether any code of o calls __fentry__: o was
// compiled for ftrace.
func callsFentry(o *Object) bool {
	for _, s := range o.sections {
		if s.class != classCode {
			continue
		}
		for _, r := range s.relocs {
			if isFentry(r) {
				return true
			}
		}
	}
	return false
}

// entryCallsFentry reports whether a function calls __fentry__ at its
// entry: a call whose operand is at offset 1, or 5 after an ENDBR64.
func entryCallsFentry(e *entity) bool {
	for _, r := range e.sec.relocsIn(e.start, e.start+6) {
		if isFentry(r) && (r.off-e.start == 1 || r.off-e.start == 5) {
			return true
		}
	}
	return false
}

// isFentry reports whether a relocation is a call to __fentry__, which
// the kernel defines.
func isFentry(r reloc) bool {
	return strings.HasPrefix(r.target, "extern __fentry__")
}

// callersOf takes as changed every function of the objects that refers
// to a function Options.CallersOf names: another object's global
// function that the bundle carries as a new function, because
// livepatch cannot redirect the kernel's copy (Function.Unredirectable).
// Their code is the same before and after; the bundle replaces them so
// that their copies call its copy. Init code is not taken: it is left
// calling the kernel's copy, and CallsFromReplaced says so.
func (c *comparison) callersOf() {
	if len(c.opts.CallersOf) == 0 {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(c.pre.funcs)) {
		a, b := c.pre.funcs[name], c.postFuncs[name]
		if b == nil || a.sec == nil || c.changed[name] || isInit(a.sec.name) {
			continue
		}
		callee := ""
		for _, r := range a.sec.relocsIn(a.start, a.end) {
			if r.sym == 0 || int(r.sym) >= len(c.pre.syms) {
				continue
			}
			if s := &c.pre.syms[r.sym]; s.shndx == elf.SHN_UNDEF && slices.Contains(c.opts.CallersOf, s.name) {
				callee = s.name
				break
			}
		}
		if callee == "" {
			continue
		}
		c.changed[name] = true
		c.res.Changed = append(c.res.Changed, function(b, fmt.Sprintf("refers to %s, which the bundle carries as a new function "+
			"because livepatch cannot redirect the kernel's copy: replaced so that its copy calls the bundle's", callee)))
	}
}

// forkUnredirectable marks Forked and Unredirectable every changed
// global function livepatch cannot redirect (no __fentry__ call at its
// entry) whose every reference in Post is a direct call from a function
// the patch replaces or adds, as forkable checks for a new prototype.
// The bundle carries it as a new function beside the kernel's copy; the
// other objects' callers are then compiled and replaced (callersOf).
// Only an object of the kernel's build says which functions cannot be
// redirected: one that calls __fentry__, or any with Options.Kernel.
func (c *comparison) forkUnredirectable() {
	if !c.opts.Kernel && !callsFentry(c.pre) {
		return
	}
	for i := range c.res.Changed {
		f := &c.res.Changed[i]
		if f.Private || f.Forked || f.Binding != "global" || coldParentOf(f.Name) != "" {
			continue
		}
		a := c.pre.funcs[f.Name]
		if a == nil || a.sec == nil || isInit(a.sec.name) || entryCallsFentry(a) {
			continue
		}
		if why := c.forkable(f.Name); why != "" {
			f.Exposed = "it is global, and it cannot be carried as a new function beside the kernel's copy that only replaced code calls: " + why
			continue
		}
		f.Forked, f.Unredirectable, f.Exposed = true, true, ""
		c.res.Notes = append(c.res.Notes, fmt.Sprintf("%s cannot be redirected (no __fentry__ call at its entry) and is global: "+
			"carried as a new function beside the kernel's copy; every function of this object that calls it is replaced, "+
			"and every other object's callers must be too", f.Name))
	}
}
