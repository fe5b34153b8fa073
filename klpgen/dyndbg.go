package klpgen

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// Dynamic debug descriptors (Linux 6.1, include/linux/dynamic_debug.h):
// every pr_debug or dev_dbg site defines a struct _ddebug in section
// __dyndbg, which its code passes to __dynamic_pr_debug and whose static
// key its jump entry names (CONFIG_JUMP_LABEL). The descriptors of the
// copied code are copied into the module's own __dyndbg, their pointers
// to the module, function and file names and the format re-targeted to
// copies of those strings (read-only data, copied like any literal of
// the new code), and the copied code and its jump entries point at the
// copies. kernel/module/main.c finds the section (find_module_sections,
// an array of struct _ddebug) and registers it under the livepatch
// module's name (dynamic_debug_setup -> ddebug_add_module), and
// jump_label_add_module binds the jump entries to the copied keys, which
// lie within the module. Pointing the new code at the kernel's own
// descriptors instead would not work for a module's: their keys would be
// livepatch symbols resolved only when that module loads, after the
// jump entries are registered, and a new pr_debug has none.

// dyndbgSection holds the descriptors.
const dyndbgSection = "__dyndbg"

const (
	// ddebugFlagsWord is the offset of lineno:18, class_id:6, flags:8,
	// after four pointers.
	ddebugFlagsWord = 32
	// ddebugClassDefault is _DPRINTK_CLASS_DFLT: a site of no class.
	ddebugClassDefault = 63
)

// isDescriptor reports whether symbol idx is a descriptor in __dyndbg.
func (g *generator) isDescriptor(idx int) bool {
	s := &g.st.syms[idx]
	return s.defined() && s.typ() == elf.STT_OBJECT && g.f.Sections[s.shndx].Name == dyndbgSection
}

// copyDescriptor copies descriptor idx into the module's __dyndbg once
// and returns where a reference at addend from it points in the copy.
func (g *generator) copyDescriptor(owner *function, idx int, addend int64) (*outSym, int64, error) {
	if off, ok := g.descs[idx]; ok {
		return g.dyndbg.sym, addend + int64(off), nil
	}
	s := &g.st.syms[idx]
	sec := g.f.Sections[s.shndx]
	refuse := func(format string, args ...any) error {
		return &UnsupportedError{Function: owner.name, Section: dyndbgSection, Reason: fmt.Sprintf(format, args...)}
	}
	if s.size < ddebugFlagsWord+8 || s.size%8 != 0 || s.value%8 != 0 || s.value > sec.Size || s.size > sec.Size-s.value ||
		g.dyndbg != nil && s.size != g.descSize {
		return nil, 0, refuse("descriptor %s (%d bytes at %#x) does not have the layout of struct _ddebug", s.name, s.size, s.value)
	}
	data, err := sectionBytes(g.data, sec)
	if err != nil {
		return nil, 0, err
	}
	desc := data[s.value : s.value+s.size]
	if class := binary.LittleEndian.Uint32(desc[ddebugFlagsWord:]) >> 18 & 0x3f; class != ddebugClassDefault {
		return nil, 0, refuse("debug print %s has class %d: dynamic debug selects classed sites through their module's class map (DECLARE_DYNDBG_CLASSMAP), which the livepatch module does not have", s.name, class)
	}
	if g.dyndbg == nil {
		g.dyndbg = g.w.addSection(&outSection{name: dyndbgSection, typ: elf.SHT_PROGBITS, flags: sec.Flags &^ elf.SHF_GROUP, align: 8})
		g.descSize = s.size
	}
	out := g.dyndbg
	off := uint64(len(out.data))
	out.data = append(out.data, desc...)
	out.size = uint64(len(out.data))
	g.descs[idx] = off
	g.tables[int(s.shndx)] = true

	ri, ok := g.relaOf[int(s.shndx)]
	if !ok {
		return nil, 0, refuse("descriptor %s has no relocations: its names and format are missing", s.name)
	}
	rs, err := g.relas(ri)
	if err != nil {
		return nil, 0, err
	}
	for _, r := range rs {
		if r.off < s.value || r.off >= s.value+s.size {
			continue
		}
		width, ok := relocWidth(r.typ)
		if !ok || r.off+width > s.value+s.size {
			return nil, 0, refuse("descriptor %s has a relocation of type %v at %#x", s.name, elf.R_X86_64(r.typ), r.off)
		}
		for _, b := range data[r.off : r.off+width] {
			if b != 0 {
				return nil, 0, malformed("relocation at %s+%#x covers non-zero bytes", dyndbgSection, r.off)
			}
		}
		if r.sym == 0 || int(r.sym) >= len(g.st.syms) {
			return nil, 0, malformed("relocation at %s+%#x refers to symbol %d of %d", dyndbgSection, r.off, r.sym, len(g.st.syms))
		}
		t := &g.st.syms[r.sym]
		if !t.defined() {
			return nil, 0, refuse("descriptor %s refers to %s, which is not defined in the unit", s.name, t.name)
		}
		ts := g.f.Sections[t.shndx]
		if !copyableData(ts.Name, ts.Flags&elf.SHF_WRITE != 0, ts.Flags&elf.SHF_EXECINSTR != 0, ts.Flags&elf.SHF_ALLOC != 0, ts.Type == elf.SHT_NOBITS) {
			return nil, 0, refuse("descriptor %s refers to section %s, not the read-only names and format the module can carry", s.name, ts.Name)
		}
		target, err := g.copyData(owner, int(t.shndx))
		if err != nil {
			return nil, 0, err
		}
		a := r.addend
		if t.typ() != elf.STT_SECTION {
			a += int64(t.value)
		}
		out.relas = append(out.relas, outRela{off: off + r.off - s.value, typ: r.typ, sym: target.sym, addend: a})
	}
	return out.sym, addend + int64(off), nil
}
