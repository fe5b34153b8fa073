package klpgen

import (
	"debug/elf"
	"fmt"
	"slices"
)

// Alternative instructions (x86-64, Linux 6.1). An alternative is an
// instruction sequence in a function (stac and clac around a user access,
// a barrier, a static_cpu_has test) that the kernel overwrites once with
// a replacement when the CPU has a feature: apply_alternatives
// (arch/x86/kernel/alternative.c) walks a table of struct alt_instr
// (arch/x86/include/asm/alternative.h) and copies each replacement over
// its instruction. It does so for every module it loads, in
// module_finalize (arch/x86/kernel/module.c), after apply_relocations
// applied the module's relocations, .klp.rela.vmlinux.* included
// (kernel/module/main.c hands those to klp_apply_section_relocs).
//
// So the entries of the copied functions are copied into the module's
// own .altinstructions, and their replacement bytes into its own
// .altinstr_replacement, and the kernel picks the same alternatives for
// the new code as it did for the old. What cannot work is a livepatch
// relocation against a module's symbol in a replacement or under an
// instruction that may be replaced: kernel/livepatch/core.c applies
// .klp.rela.MODULE.* only when that module is patched
// (klp_apply_object_relocs), after the alternatives were applied, so a
// replacement would be copied with a hole, or the relocation would be
// written over a replacement. Such entries are refused.
//
// static_cpu_has (arch/x86/include/asm/cpufeature.h _static_cpu_has)
// also puts code in .altinstr_aux: the function jumps there until the
// alternative is applied, and that code tests the feature bit and jumps
// back into the function. A piece of it that copied code jumps to is
// copied into the module's .altinstr_aux, from the place jumped to up to
// the next place any code of the object jumps to; it must end in a jump
// and jump only into the function that reaches it.
const (
	altSection     = ".altinstructions"
	altReplacement = ".altinstr_replacement"
	altAux         = ".altinstr_aux"
	// struct alt_instr: s32 instr_offset, s32 repl_offset, u16 cpuid,
	// u8 instrlen, u8 replacementlen.
	altEntrySize   = 12
	altInstrLen    = 10
	altReplLen     = 11
	altRepl        = 4
	opJmpRel32     = 0xe9
	jmpRel32Length = 5
)

// altCopy is the module's copy of parts of one alternative code section
// of the object (.altinstr_replacement or .altinstr_aux).
type altCopy struct {
	out    *outSection
	starts map[uint64]uint64 // aux: start in the object -> start in out
	ranges [][2]uint64       // copied ranges of the object's section
}

// copyAlternatives copies the .altinstructions entries of copied code,
// with their replacements, and drops the others. A table without the
// kernel's layout is left to checkReferences, which refuses it when
// copied code has an entry.
func (g *generator) copyAlternatives() error {
	for i, s := range g.f.Sections {
		if s.Name != altSection {
			continue
		}
		data, rs, ok, err := g.table(i)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		entries, ok := altEntries(data, rs)
		if !ok {
			continue
		}
		out := &outSection{name: s.Name, typ: elf.SHT_PROGBITS, flags: s.Flags &^ elf.SHF_GROUP, align: s.Addralign, entsize: s.Entsize}
		for e, er := range entries {
			fn := g.codeTarget(er[0])
			if fn == nil {
				continue // an entry of code that is not copied
			}
			entry := data[e*altEntrySize : (e+1)*altEntrySize]
			instr, instrAddend, err := g.resolve(copyJob{src: i, owner: fn}, er[0])
			if err != nil {
				return err
			}
			if err := g.checkSite(fn, altSection, er[0], uint64(entry[altInstrLen])); err != nil {
				return err
			}
			repl, replAddend, err := g.copyReplacement(fn, er[1], uint64(entry[altReplLen]))
			if err != nil {
				return err
			}
			base := uint64(len(out.data))
			out.data = append(out.data, entry...)
			out.relas = append(out.relas,
				outRela{off: base, typ: er[0].typ, sym: instr, addend: instrAddend},
				outRela{off: base + altRepl, typ: er[1].typ, sym: repl, addend: replAddend})
		}
		g.tables[i] = true
		if len(out.data) > 0 {
			out.size = uint64(len(out.data))
			g.w.addSection(out)
		}
	}
	return nil
}

// altEntries splits .altinstructions into entries, each with its two
// relocations (instruction, replacement), or reports that the table does
// not have the kernel's layout.
func altEntries(data []byte, rs []rela) ([][2]rela, bool) {
	if len(data)%altEntrySize != 0 {
		return nil, false
	}
	entries := make([][2]rela, len(data)/altEntrySize)
	seen := make([][2]bool, len(entries))
	for _, r := range rs {
		e, at := r.off/altEntrySize, r.off%altEntrySize
		if e >= uint64(len(entries)) || elf.R_X86_64(r.typ) != elf.R_X86_64_PC32 || (at != 0 && at != altRepl) {
			return nil, false
		}
		k := at / altRepl
		if seen[e][k] {
			return nil, false
		}
		seen[e][k] = true
		entries[e][k] = r
	}
	for _, s := range seen {
		if !s[0] || !s[1] {
			return nil, false
		}
	}
	return entries, true
}

// lateObject reports the module whose livepatch relocation sections
// would hold a relocation against sym, if it is a placeholder resolved
// only when that module is patched.
func lateObject(sym *outSym) (KLPSymbol, string, bool) {
	k, ok, _ := parsePlaceholder(sym.name)
	if !ok {
		return k, "", false
	}
	obj := k.Object
	if k.Section != "" {
		obj = k.Section
	}
	return k, obj, obj != "vmlinux"
}

// lateReason explains why a module's livepatch relocation cannot meet
// an alternative.
func lateReason(k KLPSymbol, obj string) string {
	return fmt.Sprintf("it refers to %s of %s through a livepatch relocation, which kernel/livepatch/core.c applies only when %s is patched (klp_apply_object_relocs), "+
		"after module_finalize (arch/x86/kernel/module.c) patched the livepatch module's code with apply_alternatives and apply_paravirt", k.Name, k.Object, obj)
}

// checkSite refuses an alternative or paravirt site (an entry of table,
// relocation r, of an n-byte instruction) whose instruction, in the copy
// of fn, is covered by a relocation the kernel applies after it patched
// the site in module_finalize: it would be written over the patched
// instruction.
func (g *generator) checkSite(fn *function, table string, r rela, n uint64) error {
	sym := &g.st.syms[r.sym]
	out := g.copies[int(sym.shndx)]
	if out == nil || r.addend < 0 {
		return &UnsupportedError{Function: fn.name, Section: table,
			Reason: fmt.Sprintf("an entry at %#x names an instruction outside the copied code", r.off)}
	}
	start := sym.value + uint64(r.addend)
	if start > uint64(len(out.data)) || n > uint64(len(out.data))-start {
		return malformed("%s entry at %#x: instruction of %d bytes at %s+%#x lies outside the section", table, r.off, n, out.name, start)
	}
	for _, or := range out.relas {
		width, _ := relocWidth(or.typ)
		if or.off+width <= start || or.off >= start+n {
			continue
		}
		if k, obj, late := lateObject(or.sym); late {
			return &UnsupportedError{Function: fn.name, Section: table,
				Reason: fmt.Sprintf("the instruction the kernel may rewrite at %s+%#x holds a relocation that would be written over the new instruction: %s", out.name, start, lateReason(k, obj))}
		}
	}
	return nil
}

// altCopyOf returns the module's copy of alternative code section sec,
// creating it.
func (g *generator) altCopyOf(sec int) *altCopy {
	if c := g.alts[sec]; c != nil {
		return c
	}
	s := g.f.Sections[sec]
	c := &altCopy{starts: map[uint64]uint64{}, out: &outSection{name: s.Name, typ: elf.SHT_PROGBITS,
		flags: s.Flags &^ elf.SHF_GROUP, align: max(s.Addralign, 1)}}
	g.w.addSection(c.out)
	g.alts[sec] = c
	return c
}

// copyReplacement copies the n replacement bytes an entry of fn refers
// to (relocation r) into the module's .altinstr_replacement and returns
// where the copy is.
func (g *generator) copyReplacement(fn *function, r rela, n uint64) (*outSym, int64, error) {
	sym := &g.st.syms[r.sym]
	if !sym.defined() || g.f.Sections[sym.shndx].Name != altReplacement || r.addend < 0 {
		return nil, 0, &UnsupportedError{Function: fn.name, Section: altSection,
			Reason: fmt.Sprintf("the replacement of the entry at %#x is not in %s", r.off, altReplacement)}
	}
	start := sym.value + uint64(r.addend)
	to, err := g.copyAltCode(fn, int(sym.shndx), start, start+n, true)
	if err != nil {
		return nil, 0, err
	}
	return g.alts[int(sym.shndx)].out.sym, int64(to), nil
}

// copyAltCode appends [start, end) of alternative code section sec to
// the module's copy, with its relocations re-targeted for fn, and
// returns where it starts in the copy. For a replacement (patched in by
// apply_alternatives), a relocation resolved only after the alternatives
// were applied is refused.
func (g *generator) copyAltCode(fn *function, sec int, start, end uint64, replacement bool) (uint64, error) {
	s := g.f.Sections[sec]
	code, err := sectionBytes(g.data, s)
	if err != nil {
		return 0, err
	}
	if start > end || end > uint64(len(code)) {
		return 0, malformed("%s: code at [%#x, %#x) lies outside the section", s.Name, start, end)
	}
	var rs []rela
	if ri, ok := g.relaOf[sec]; ok {
		if rs, err = g.relas(ri); err != nil {
			return 0, err
		}
	}
	c := g.altCopyOf(sec)
	base := uint64(len(c.out.data))
	c.out.data = append(c.out.data, code[start:end]...)
	c.out.size = uint64(len(c.out.data))
	c.ranges = append(c.ranges, [2]uint64{start, end})
	for _, r := range rs {
		width, ok := relocWidth(r.typ)
		if elf.R_X86_64(r.typ) == elf.R_X86_64_NONE || r.off+max(width, 1) <= start || r.off >= end {
			continue
		}
		if !ok {
			return 0, &UnsupportedError{Function: fn.name, Section: s.Name,
				Reason: fmt.Sprintf("relocation type %v at %#x", elf.R_X86_64(r.typ), r.off)}
		}
		if r.off < start || r.off+width > end {
			return 0, &UnsupportedError{Function: fn.name, Section: s.Name,
				Reason: fmt.Sprintf("the relocation at %#x straddles the end of the code at [%#x, %#x)", r.off, start, end)}
		}
		if slices.ContainsFunc(code[r.off:r.off+width], func(b byte) bool { return b != 0 }) {
			return 0, malformed("relocation at %s+%#x covers non-zero bytes", s.Name, r.off)
		}
		sym, addend, err := g.resolve(copyJob{src: sec, owner: fn}, r)
		if err != nil {
			return 0, err
		}
		if k, obj, late := lateObject(sym); late && replacement {
			return 0, &UnsupportedError{Function: fn.name, Section: s.Name,
				Reason: fmt.Sprintf("the replacement at %#x would be patched in with a hole: %s", r.off, lateReason(k, obj))}
		}
		if t := &g.st.syms[r.sym]; !replacement && t.defined() && int(t.shndx) < len(g.f.Sections) &&
			g.f.Sections[t.shndx].Flags&elf.SHF_EXECINSTR != 0 && g.owner[int(t.shndx)] != fn && int(t.shndx) != sec {
			return 0, &UnsupportedError{Function: fn.name, Section: s.Name,
				Reason: fmt.Sprintf("the code at %#x refers to %s, which is not code of %s", r.off, g.f.Sections[t.shndx].Name, fn.name)}
		}
		c.out.relas = append(c.out.relas, outRela{off: base + r.off - start, typ: r.typ, sym: sym, addend: addend})
	}
	return base, nil
}

// auxTarget handles a jump of copied code into .altinstr_aux (section
// sec): the piece of code jumped to is copied once, and the jump goes to
// the copy.
func (g *generator) auxTarget(job copyJob, r rela, sec int) (*outSym, int64, error) {
	src := g.f.Sections[job.src]
	code := g.copies[job.src]
	if job.owner == nil || code == nil || !pcRelative(r.typ) || r.off == 0 || r.off > uint64(len(code.data)) || code.data[r.off-1] != opJmpRel32 {
		return nil, 0, &UnsupportedError{Function: ownerName(job.owner), Section: altAux,
			Reason: fmt.Sprintf("%s+%#x refers to static_cpu_has code other than by a jump", src.Name, r.off)}
	}
	start := r.addend + 4 // rel32 ends its instruction
	entries, err := g.auxEntries(sec)
	if err != nil {
		return nil, 0, err
	}
	size := g.f.Sections[sec].Size
	if start < 0 || uint64(start) >= size {
		return nil, 0, malformed("%s+%#x jumps outside %s", src.Name, r.off, altAux)
	}
	end := size
	if i, _ := slices.BinarySearch(entries, uint64(start)+1); i < len(entries) {
		end = entries[i]
	}
	c := g.altCopyOf(sec)
	to, ok := c.starts[uint64(start)]
	if !ok {
		aux, err := sectionBytes(g.data, g.f.Sections[sec])
		if err != nil {
			return nil, 0, err
		}
		if end-uint64(start) < jmpRel32Length || aux[end-jmpRel32Length] != opJmpRel32 {
			return nil, 0, &UnsupportedError{Function: job.owner.name, Section: altAux,
				Reason: fmt.Sprintf("the static_cpu_has code at %#x does not end in a jump where the next piece begins (%#x), so where it ends is not known", start, end)}
		}
		if to, err = g.copyAltCode(job.owner, sec, uint64(start), end, false); err != nil {
			return nil, 0, err
		}
		c.starts[uint64(start)] = to
	}
	return c.out.sym, r.addend - start + int64(to), nil
}

// auxEntries lists, sorted, the offsets of .altinstr_aux (section sec)
// that code of the object jumps to: where each piece of static_cpu_has
// code begins.
func (g *generator) auxEntries(sec int) ([]uint64, error) {
	if e, ok := g.auxStarts[sec]; ok {
		return e, nil
	}
	var starts []uint64
	for target, ri := range sortedMap(g.relaOf) {
		if target == sec || g.f.Sections[target].Flags&elf.SHF_EXECINSTR == 0 {
			continue
		}
		rs, err := g.relas(ri)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.sym == 0 || int(r.sym) >= len(g.st.syms) || !pcRelative(r.typ) {
				continue
			}
			if s := &g.st.syms[r.sym]; s.defined() && int(s.shndx) == sec {
				starts = append(starts, uint64(int64(s.value)+r.addend+4))
			}
		}
	}
	slices.Sort(starts)
	starts = slices.Compact(starts)
	g.auxStarts[sec] = starts
	return starts, nil
}

// altCopied reports whether offset off of section sec lies in code
// copied by copyAltCode.
func (g *generator) altCopied(sec int, off uint64) bool {
	c := g.alts[sec]
	return c != nil && slices.ContainsFunc(c.ranges, func(r [2]uint64) bool { return off >= r[0] && off < r[1] })
}

func ownerName(fn *function) string {
	if fn == nil {
		return ""
	}
	return fn.name
}
