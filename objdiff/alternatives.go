package objdiff

import (
	"debug/elf"
	"fmt"
	"slices"
	"strings"
)

// Alternative instructions (x86-64, Linux 6.1): .altinstructions holds a
// struct alt_instr per alternative (arch/x86/include/asm/alternative.h:
// s32 instr_offset, s32 repl_offset, u16 cpuid, u8 instrlen, u8
// replacementlen), naming an instruction in a function and its
// replacement in .altinstr_replacement, which apply_alternatives copies
// over the instruction once when the kernel or a module loads. The
// replacements, and the feature tests static_cpu_has puts in
// .altinstr_aux, are code without symbols: objdiff compares them only
// through what refers to them (a function's jump into .altinstr_aux, an
// entry's replacement), as literal pools.
//
// The entries are compared function by function, as the entry tables
// are: a changed or added function's entries go with its code into the
// patch module (package klpgen copies them, and the kernel applies them
// when it loads the module); an unchanged function's entries must say
// the same as before, instruction, feature, lengths and replacement
// (bytes and references), since the kernel keeps the ones it applied to
// the code that is not replaced.
const (
	altSection     = ".altinstructions"
	altEntrySize   = 12
	altRepl        = 4  // offset of repl_offset
	altKind        = 8  // cpuid, instrlen, replacementlen
	altReplLen     = 11 // offset of replacementlen
	altMaxReplSize = 255
)

// alternativeCode are the sections of alternative code, compared through
// the references to them.
var alternativeCode = []string{".altinstr_replacement", ".altinstr_aux"}

// alternatives compares .altinstructions function by function, or
// returns false when the sections do not have the kernel's layout, for
// the caller to compare them whole.
func (c *comparison) alternatives(a, b []*section) bool {
	pre, ok := c.pre.altEntriesByFunction(a, storedTarget, func(ref string) string { return ref })
	if !ok {
		return false
	}
	post, ok := c.post.altEntriesByFunction(b, c.postTarget, c.postRef)
	if !ok {
		return false
	}
	for _, fn := range sortedKeys(pre, post) {
		if fn != "" && (c.changed[fn] || c.pre.funcs[fn] == nil || c.postFuncs[fn] == nil) {
			continue // goes with replaced or added code, or stays with removed code
		}
		if slices.Equal(pre[fn], post[fn]) {
			continue
		}
		who := "function " + fn
		if fn == "" {
			who = "code outside any function"
		}
		c.problem(Problem{Kind: KindSection, Name: altSection, Reason: fmt.Sprintf(
			"alternative instructions of %s changed (%d entries, now %d) while its code did not: the kernel applied the old entries to its code once, at boot or module load, "+
				"and only the code of replaced functions is patched with new ones", who, len(pre[fn]), len(post[fn]))})
	}
	return true
}

// altEntriesByFunction describes the entries of .altinstructions
// sections by the function their instruction is in: the instruction's
// place, the feature and lengths, and the replacement's bytes and
// references.
func (o *Object) altEntriesByFunction(secs []*section, target func(*reloc) string, ref func(string) string) (map[string][]string, bool) {
	out := map[string][]string{}
	for _, s := range secs {
		if s.data == nil || s.size%altEntrySize != 0 {
			return nil, false
		}
		n := s.size / altEntrySize
		instr, repl := make([]*reloc, n), make([]*reloc, n)
		for i := range s.relocs {
			r := &s.relocs[i]
			e, at := r.off/altEntrySize, r.off%altEntrySize
			if r.typ != elf.R_X86_64_PC32 || e >= n {
				return nil, false
			}
			switch {
			case at == 0 && instr[e] == nil:
				instr[e] = r
			case at == altRepl && repl[e] == nil:
				repl[e] = r
			default:
				return nil, false
			}
		}
		for e := range n {
			if instr[e] == nil || repl[e] == nil {
				return nil, false
			}
			entry := s.data[e*altEntrySize : (e+1)*altEntrySize]
			replacement, ok := o.replacement(repl[e], uint64(entry[altReplLen]), target)
			if !ok {
				return nil, false
			}
			fn := ref(instr[e].ref)
			out[fn] = append(out[fn], fmt.Sprintf("at %s feature %x: %s", target(instr[e]), entry[altKind:], replacement))
		}
	}
	return out, true
}

// replacement describes the n bytes of replacement code relocation r of
// an entry points at.
func (o *Object) replacement(r *reloc, n uint64, target func(*reloc) string) (string, bool) {
	s := &o.syms[r.sym]
	if r.sym == 0 || s.shndx == elf.SHN_UNDEF || s.shndx >= elf.SHN_LORESERVE || n > altMaxReplSize {
		return "", false
	}
	t := o.sections[s.shndx]
	at := int64(s.value) + r.addend
	if at < 0 || uint64(at) > t.size || n > t.size-uint64(at) || t.data == nil {
		return "", false
	}
	img := o.image(t, uint64(at), uint64(at)+n, target)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %x", t.name, img.bytes)
	for _, ir := range img.relocs {
		fmt.Fprintf(&b, " +%#x %v %s", ir.off, ir.typ, ir.target)
	}
	return b.String(), true
}
