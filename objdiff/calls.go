package objdiff

import (
	"debug/elf"
	"fmt"
	"slices"
	"strings"

	"github.com/splicefleet/splicefleet/internal/x86insn"
)

// directCalls returns "" when only code the patch replaces can call a
// changed function, and says why not otherwise. That takes, in both
// objects: the function is static, so no other object calls it; every
// reference to it is the target of a direct call or jump (call, jmp or
// jcc rel32) at its entry, from a function's code, so its address is
// never taken (a reference from data, or from an instruction such as
// lea or mov, could end in an indirect call from anywhere); and every
// function that calls it is replaced by the patch (changed, or added
// after). Entries of the kernel's instruction tables (__ex_table,
// __jump_table, ...) that point inside the function describe its own
// instructions and do not count as references.
//
// A new prototype of such a function is safe: no unpatched caller
// reaches the new code with the old arguments through the ftrace
// redirection. tail names, when why is "", a caller that jumps to it
// (a tail call) rather than calls it, for reach.
func (c *comparison) directCalls(name string) (why, tail string) {
	a, b := c.pre.funcs[name], c.postFuncs[name]
	if a == nil || b == nil {
		return "it is not a function of both objects", ""
	}
	if a.sym.bind != elf.STB_LOCAL || b.sym.bind != elf.STB_LOCAL {
		return "it is global: other objects may call it", ""
	}
	preReplaced := func(n string) bool { return c.changed[n] }
	preWhy, preTail := callsTo(c.pre, a, preReplaced, c.opts.InitRan)
	if preWhy != "" {
		return "before: " + preWhy, ""
	}
	postWhy, postTail := callsTo(c.post, b, c.postReplaced, c.opts.InitRan)
	if postWhy != "" {
		return "after: " + postWhy, ""
	}
	switch {
	case preTail != "":
		tail = "before: " + preTail
	case postTail != "":
		tail = "after: " + postTail
	}
	return "", tail
}

// reach marks every changed function but a cold part Private, or says
// why it is not (Function.Exposed). Private takes directCalls, and
// that every caller calls it rather than jumps to it: a task then
// runs either version of it only below a replaced caller's frame,
// which livepatch's stack check sees (kernel/livepatch/transition.c
// klp_check_stack), so the task is never switched to the other
// version while it runs one, and undo never frees the module's copy
// under it. A tail call leaves no frame of the caller behind.
func (c *comparison) reach() {
	for i := range c.res.Changed {
		f := &c.res.Changed[i]
		if coldParentOf(f.Name) != "" {
			continue
		}
		why, tail := c.directCalls(f.Name)
		if why == "" && tail != "" {
			why = tail + " (a tail call): a task running it has no replaced function on its stack, " +
				"so livepatch may switch the task, or undo free the module's copy, while it runs"
		}
		f.Private, f.Exposed = why == "", why
	}
}

// callsTo checks every reference to f in o (see directCalls); replaced
// says whether the patch replaces a function of o. tail says, when why
// is "", which caller jumps to f rather than calls it, if any. f may be
// a function another object defines (a symbol of SHN_UNDEF), named by
// its symbol.
func callsTo(o *Object, f *entity, replaced func(string) bool, initRan bool) (why, tail string) {
	rc := refChecker{o: o, replaced: replaced, initRan: initRan}
	extern := f.sym.shndx == elf.SHN_UNDEF
	for _, s := range o.sections {
		if s.class == classMeta {
			continue
		}
		for i := range s.relocs {
			r := &s.relocs[i]
			if extern && rc.externName(r) != f.sym.name || !extern && r.ref != f.sym.name {
				continue
			}
			why, jumps := rc.check(s, r, f)
			if why != "" {
				return why, ""
			}
			if jumps != "" && tail == "" {
				tail = jumps + " jumps to it"
			}
		}
	}
	return "", tail
}

// externCalls says, for every function another object defines that o
// refers to, why a reference to it is not a direct call at its entry
// from a function the patch replaces (replaced), or that a replaced
// function jumps to it (a tail call); names whose every reference is a
// call from a replaced function are absent. It keeps these few words
// instead of the objects for [Result.CallsFromReplaced].
func externCalls(o *Object, replaced func(string) bool, initRan bool) map[string]string {
	rc := refChecker{o: o, replaced: replaced, initRan: initRan}
	out := map[string]string{}
	for _, s := range o.sections {
		if s.class == classMeta {
			continue
		}
		for i := range s.relocs {
			r := &s.relocs[i]
			name := rc.externName(r)
			if _, done := out[name]; done || name == "" {
				continue
			}
			why, jumps := rc.check(s, r, &entity{name: name, sym: &symbol{name: name, shndx: elf.SHN_UNDEF}})
			if why == "" && jumps != "" {
				why = jumps + " jumps to it" + tailToCopy
			}
			if why != "" {
				out[name] = why
			}
		}
	}
	return out
}

// tailToCopy says why a tail call to a function the bundle carries as a
// new function beside the kernel's (Function.Forked) is refused.
const tailToCopy = " (a tail call): a task running the copy would have no replaced function on its stack"

// refChecker tells a direct call from a replaced function from other
// references, decoding each calling function once.
type refChecker struct {
	o        *Object
	replaced func(string) bool
	// initRan: the object's init code ran at boot and was freed
	// (Options.InitRan), so its references reach nothing.
	initRan  bool
	branches map[*entity]map[uint64]x86insn.Branch
}

// externName is the name of the undefined symbol r refers to, or "".
func (rc *refChecker) externName(r *reloc) string {
	if r.sym == 0 {
		return ""
	}
	if s := &rc.o.syms[r.sym]; s.shndx == elf.SHN_UNDEF {
		return s.name
	}
	return ""
}

// check judges one reference r in s to f: why it is not a direct call
// at f's entry from a replaced function, or, when it is one by a jump
// (a tail call), the caller that jumps.
func (rc *refChecker) check(s *section, r *reloc, f *entity) (why, jumps string) {
	entry := f.sym.name + "-4"
	if f.sym.shndx == elf.SHN_UNDEF {
		entry = "extern " + entry // as targets.go describes it
	}
	if s.class != classCode {
		_, table := entryTables[s.name]
		if (table || s.name == altSection) && r.target != f.sym.name {
			return "", "" // an entry about its own code
		}
		if isExportOf(s.name, f.sym.name) {
			return "", "" // the kernel's export entry, which no patch changes
		}
		return fmt.Sprintf("%s refers to it from %s: its address is taken", nameAt(s, r.off), s.name), ""
	}
	if rc.initRan && strings.HasPrefix(s.name, ".init.") {
		// vmlinux's init code ran at boot and was freed (not
		// .meminit.text, which memory hotplug keeps).
		return "", ""
	}
	caller := s.funcCovering(r.off)
	if caller == nil {
		return fmt.Sprintf("code outside any function in %s refers to it", s.name), ""
	}
	if caller == f || coldParentOf(caller.name) == f.name {
		return "", "" // its own code, replaced with it
	}
	if rc.branches == nil {
		rc.branches = map[*entity]map[uint64]x86insn.Branch{}
	}
	br, ok := rc.branches[caller]
	if !ok {
		br = decodeBranches(caller)
		rc.branches[caller] = br
	}
	if br == nil {
		return fmt.Sprintf("the code of %s, which refers to it, cannot be decoded to tell a call from a use of its address", caller.name), ""
	}
	kind, ok := br[r.off-caller.start]
	if !ok {
		return fmt.Sprintf("%s refers to it at +%#x other than by a direct call or jump: its address is taken", caller.name, r.off-caller.start), ""
	}
	if r.target != entry || r.typ != elf.R_X86_64_PC32 && r.typ != elf.R_X86_64_PLT32 {
		return fmt.Sprintf("%s jumps to %s, not to its entry", caller.name, r.target), ""
	}
	verb := "calls"
	if kind == x86insn.Jump {
		verb = "jumps to"
	}
	if parent := coldParentOf(caller.name); !rc.replaced(caller.name) && (parent == "" || !rc.replaced(parent)) {
		return fmt.Sprintf("%s %s it and is not replaced by the patch", caller.name, verb), ""
	}
	if kind == x86insn.Jump {
		return "", caller.name
	}
	return "", ""
}

// CallsFromReplaced says whether Post's every reference to name, a
// function another object of the bundle defines and carries as a new
// function ([Function.Forked]), is a direct call at its entry from a
// function the patch replaces or adds, and not a tail call: it returns
// "" when it is (or Post does not refer to name), and why not
// otherwise. A reference of another kind, such as the function's address
// in a table, would reach the kernel's copy, which the bundle leaves in
// place, from code that passes the new arguments.
func (r *Result) CallsFromReplaced(name string) string {
	return r.externs[name]
}

// postReplaced says whether the patch replaces or adds the function of
// Post named n.
func (c *comparison) postReplaced(n string) bool {
	if m, ok := c.rename[n]; ok {
		n = m
	}
	return c.changed[n] || c.pre.funcs[n] == nil
}

// decodeBranches decodes a function's code and returns the offsets of
// the rel32 targets of its direct calls and jumps, or nil if the code
// cannot be decoded.
func decodeBranches(e *entity) map[uint64]x86insn.Branch {
	if e.sec == nil || e.sec.data == nil {
		return nil
	}
	code := e.sec.data[e.start:e.end]
	out := map[uint64]x86insn.Branch{}
	for off := 0; off < len(code); {
		in, err := x86insn.Decode(code[off:])
		if err != nil {
			return nil
		}
		if in.Branch != x86insn.NoBranch && in.ImmSize == 4 {
			out[uint64(off+in.ImmOff)] = in.Branch
		}
		off += in.Len
	}
	return out
}

// funcCovering returns the function of s whose code holds offset off.
func (s *section) funcCovering(off uint64) *entity {
	i, _ := slices.BinarySearchFunc(s.funcs, off+1, func(e *entity, v uint64) int { return cmpUint(e.start, v) })
	for i--; i >= 0; i-- {
		if e := s.funcs[i]; off < e.end {
			return e
		}
	}
	return nil
}

// nameAt names what holds offset off of a section: a symbol, or the
// section and offset.
func nameAt(s *section, off uint64) string {
	if n := s.symbolAt(int64(off)); n != nil {
		return n.name
	}
	return fmt.Sprintf("%s+%#x", s.name, off)
}

// coldParentOf returns the function gcc split a cold part off (F for
// F.cold or F.cold.N), or "". Only F jumps into it, and the bundle
// replaces it together with F.
func coldParentOf(name string) string {
	i := strings.LastIndex(name, ".cold")
	if i <= 0 {
		return ""
	}
	rest := name[i+len(".cold"):]
	if rest != "" && rest[0] != '.' {
		return ""
	}
	return name[:i]
}
