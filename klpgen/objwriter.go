package klpgen

import (
	"debug/elf"
	"encoding/binary"
	"sort"
)

// objWriter assembles a relocatable x86-64 ELF64 object: content
// sections with their relocations, a symbol table (locals first, as the
// ELF specification requires), string tables and a .note.GNU-stack so
// the linker does not assume an executable stack.
type objWriter struct {
	sections []*outSection
	locals   []*outSym
	globals  []*outSym
}

type outSection struct {
	name    string
	typ     elf.SectionType
	flags   elf.SectionFlag
	align   uint64
	entsize uint64
	data    []byte // nil for SHT_NOBITS
	size    uint64
	relas   []outRela
	sym     *outSym // the section symbol
	index   int     // section header index, set by bytes
}

type outRela struct {
	off    uint64
	typ    uint32
	sym    *outSym
	addend int64
}

type outSym struct {
	name    string
	typ     elf.SymType
	bind    elf.SymBind
	section *outSection // nil: undefined
	value   uint64
	size    uint64
	index   int // symbol table index, set by bytes
}

// addSection adds a content section and its section symbol.
func (w *objWriter) addSection(s *outSection) *outSection {
	w.sections = append(w.sections, s)
	s.sym = &outSym{typ: elf.STT_SECTION, bind: elf.STB_LOCAL, section: s}
	w.locals = append(w.locals, s.sym)
	return s
}

// addSymbol adds a defined or undefined symbol.
func (w *objWriter) addSymbol(s *outSym) *outSym {
	if s.bind == elf.STB_LOCAL {
		w.locals = append(w.locals, s)
	} else {
		w.globals = append(w.globals, s)
	}
	return s
}

// bytes lays the object out: ELF header, section contents, relocation
// sections, symbol and string tables, then the section header table.
func (w *objWriter) bytes() []byte {
	type shdr struct {
		name           uint32
		typ            elf.SectionType
		flags          elf.SectionFlag
		off, size      uint64
		link, info     uint32
		align, entsize uint64
	}
	shstrtab := newStrtab()
	strtab := newStrtab()
	out := make([]byte, ehdrSize)
	var headers []shdr
	headers = append(headers, shdr{}) // SHN_UNDEF

	place := func(b []byte, align uint64) uint64 {
		if align > 1 {
			for uint64(len(out))%align != 0 {
				out = append(out, 0)
			}
		}
		off := uint64(len(out))
		out = append(out, b...)
		return off
	}

	for _, s := range w.sections {
		s.index = len(headers)
		h := shdr{name: shstrtab.add(s.name), typ: s.typ, flags: s.flags, align: s.align, entsize: s.entsize, size: s.size}
		if s.typ == elf.SHT_NOBITS {
			h.off = uint64(len(out))
		} else {
			h.off = place(s.data, s.align)
			h.size = uint64(len(s.data))
		}
		headers = append(headers, h)
	}

	// Symbol indices: null, locals, globals. Undefined globals are sorted
	// by name so the output does not depend on discovery order.
	sort.SliceStable(w.globals, func(i, j int) bool {
		ui, uj := w.globals[i].section == nil, w.globals[j].section == nil
		if ui != uj {
			return !ui
		}
		if ui {
			return w.globals[i].name < w.globals[j].name
		}
		return false
	})
	all := append(append([]*outSym{{}}, w.locals...), w.globals...)
	for i, s := range all {
		s.index = i
	}

	symtabIndex := len(headers) + countRela(w.sections) + 1 // after the relocation sections and .note.GNU-stack
	for _, s := range w.sections {
		if len(s.relas) == 0 {
			continue
		}
		var b []byte
		for _, r := range s.relas {
			b = appendRela(b, rela{off: r.off, sym: uint32(r.sym.index), typ: r.typ, addend: r.addend})
		}
		headers = append(headers, shdr{
			name: shstrtab.add(".rela" + s.name), typ: elf.SHT_RELA, flags: elf.SHF_INFO_LINK,
			off: place(b, 8), size: uint64(len(b)), link: uint32(symtabIndex), info: uint32(s.index),
			align: 8, entsize: relaSize,
		})
	}
	headers = append(headers, shdr{name: shstrtab.add(".note.GNU-stack"), typ: elf.SHT_PROGBITS, off: uint64(len(out)), align: 1})

	var syms []byte
	for _, s := range all {
		var e [symSize]byte
		if s.name != "" {
			binary.LittleEndian.PutUint32(e[0:], strtab.add(s.name))
		}
		e[4] = byte(s.bind)<<4 | byte(s.typ)&0xf
		if s.section != nil {
			binary.LittleEndian.PutUint16(e[6:], uint16(s.section.index))
		}
		binary.LittleEndian.PutUint64(e[8:], s.value)
		binary.LittleEndian.PutUint64(e[16:], s.size)
		syms = append(syms, e[:]...)
	}
	headers = append(headers, shdr{
		name: shstrtab.add(".symtab"), typ: elf.SHT_SYMTAB, off: place(syms, 8), size: uint64(len(syms)),
		link: uint32(symtabIndex + 1), info: uint32(1 + len(w.locals)), align: 8, entsize: symSize,
	})
	headers = append(headers, shdr{name: shstrtab.add(".strtab"), typ: elf.SHT_STRTAB, off: place(strtab.b, 1), size: uint64(len(strtab.b)), align: 1})
	shstrIndex := len(headers)
	shstrName := shstrtab.add(".shstrtab")
	headers = append(headers, shdr{name: shstrName, typ: elf.SHT_STRTAB, off: place(shstrtab.b, 1), size: uint64(len(shstrtab.b)), align: 1})

	shoff := place(nil, 8)
	for _, h := range headers {
		var e [shdrSize]byte
		binary.LittleEndian.PutUint32(e[0:], h.name)
		binary.LittleEndian.PutUint32(e[4:], uint32(h.typ))
		binary.LittleEndian.PutUint64(e[8:], uint64(h.flags))
		binary.LittleEndian.PutUint64(e[24:], h.off)
		binary.LittleEndian.PutUint64(e[32:], h.size)
		binary.LittleEndian.PutUint32(e[40:], h.link)
		binary.LittleEndian.PutUint32(e[44:], h.info)
		binary.LittleEndian.PutUint64(e[48:], h.align)
		binary.LittleEndian.PutUint64(e[56:], h.entsize)
		out = append(out, e[:]...)
	}

	copy(out[0:], []byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT), byte(elf.ELFOSABI_NONE)})
	le := binary.LittleEndian
	le.PutUint16(out[0x10:], uint16(elf.ET_REL))
	le.PutUint16(out[0x12:], uint16(elf.EM_X86_64))
	le.PutUint32(out[0x14:], uint32(elf.EV_CURRENT))
	le.PutUint64(out[ehShoff:], shoff)
	le.PutUint16(out[0x34:], ehdrSize)
	le.PutUint16(out[ehShentsize:], shdrSize)
	le.PutUint16(out[ehShnum:], uint16(len(headers)))
	le.PutUint16(out[ehShstrndx:], uint16(shstrIndex))
	return out
}

func countRela(secs []*outSection) int {
	n := 0
	for _, s := range secs {
		if len(s.relas) > 0 {
			n++
		}
	}
	return n
}

// strtabBuilder builds an ELF string table, sharing equal strings.
type strtabBuilder struct {
	b   []byte
	off map[string]uint32
}

func newStrtab() *strtabBuilder {
	return &strtabBuilder{b: []byte{0}, off: map[string]uint32{"": 0}}
}

func (t *strtabBuilder) add(s string) uint32 {
	if off, ok := t.off[s]; ok {
		return off
	}
	off := uint32(len(t.b))
	t.b = append(append(t.b, s...), 0)
	t.off[s] = off
	return off
}
