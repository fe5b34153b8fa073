package objdiff

import (
	"debug/elf"
	"fmt"
	"slices"
	"strings"

	"github.com/splicefleet/splicefleet/internal/x86insn"
)

// directCalls returns "" when a function whose prototype changed can
// only be reached with the new arguments, and says why not otherwise.
// That takes, in both objects: the function is static, so no other
// object calls it; every reference to it is the target of a direct call
// or jump (call, jmp or jcc rel32) at its entry, from a function's code,
// so its address is never taken (a reference from data, or from an
// instruction such as lea or mov, could end in an indirect call that
// passes the old arguments); and every function that calls it is
// replaced by the patch (changed, or added after), so no unpatched
// caller reaches the new code through the ftrace redirection. Entries
// of the kernel's instruction tables (__ex_table, __jump_table, ...)
// that point inside the function describe its own instructions and do
// not count as references.
func (c *comparison) directCalls(name string) string {
	a, b := c.pre.funcs[name], c.postFuncs[name]
	if a == nil || b == nil {
		return "it is not a function of both objects"
	}
	if a.sym.bind != elf.STB_LOCAL || b.sym.bind != elf.STB_LOCAL {
		return "it is global: other objects may call it"
	}
	preReplaced := func(n string) bool { return c.changed[n] }
	postReplaced := func(n string) bool {
		if m, ok := c.rename[n]; ok {
			n = m
		}
		return c.changed[n] || c.pre.funcs[n] == nil
	}
	if why := callsTo(c.pre, a, preReplaced); why != "" {
		return "before: " + why
	}
	if why := callsTo(c.post, b, postReplaced); why != "" {
		return "after: " + why
	}
	return ""
}

// callsTo checks every reference to f in o (see directCalls); replaced
// says whether the patch replaces a function of o.
func callsTo(o *Object, f *entity, replaced func(string) bool) string {
	entry := f.sym.name + "-4"
	branches := map[*entity]map[uint64]x86insn.Branch{}
	for _, s := range o.sections {
		if s.class == classMeta {
			continue
		}
		for _, r := range s.relocs {
			if r.ref != f.sym.name {
				continue
			}
			if s.class != classCode {
				_, table := entryTables[s.name]
				if (table || s.name == altSection) && r.target != f.sym.name {
					continue
				}
				return fmt.Sprintf("%s refers to it from %s: its address is taken", nameAt(s, r.off), s.name)
			}
			caller := s.funcCovering(r.off)
			if caller == nil {
				return fmt.Sprintf("code outside any function in %s refers to it", s.name)
			}
			if caller == f || coldParentOf(caller.name) == f.name {
				continue // its own code, replaced with it
			}
			br, ok := branches[caller]
			if !ok {
				br = decodeBranches(caller)
				branches[caller] = br
			}
			if br == nil {
				return fmt.Sprintf("the code of %s, which refers to it, cannot be decoded to tell a call from a use of its address", caller.name)
			}
			kind, ok := br[r.off-caller.start]
			if !ok {
				return fmt.Sprintf("%s refers to it at +%#x other than by a direct call or jump: its address is taken", caller.name, r.off-caller.start)
			}
			if r.target != entry || r.typ != elf.R_X86_64_PC32 && r.typ != elf.R_X86_64_PLT32 {
				return fmt.Sprintf("%s jumps to %s, not to its entry", caller.name, r.target)
			}
			if parent := coldParentOf(caller.name); !replaced(caller.name) && (parent == "" || !replaced(parent)) {
				verb := "calls"
				if kind == x86insn.Jump {
					verb = "jumps to"
				}
				return fmt.Sprintf("%s %s it and is not replaced by the patch", caller.name, verb)
			}
		}
	}
	return ""
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
