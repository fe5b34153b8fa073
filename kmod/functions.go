package kmod

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"slices"
)

// Sizes of the ELF64 records parsed by hand here.
const (
	sym64Size  = 24 // Elf64_Sym
	rela64Size = 24 // Elf64_Rela
	// maxFuncName bounds a replaced function's name (KSYM_NAME_LEN is 512
	// including the NUL).
	maxFuncName = 511
)

// sym64 is the part of an Elf64_Sym the heuristic needs.
type sym64 struct {
	info  uint8
	shndx uint16
	value uint64
}

func (s sym64) typ() elf.SymType { return elf.ST_TYPE(s.info) }

// rela64 is one Elf64_Rela entry.
type rela64 struct {
	off    uint64
	sym    uint32
	typ    uint32
	addend int64
}

// livepatchFunctions returns the names of the kernel functions a livepatch
// module replaces, sorted and unique, or nil if none are found.
//
// A livepatch built from C has arrays of struct klp_func, whose first two
// fields are
//
//	const char *old_name; // the function being replaced
//	void *new_func;       // its replacement
//
// In a relocatable module both pointers are absolute 64-bit relocations in
// a data section: one at offset X that points into a string section
// (SHF_STRINGS, e.g. .rodata.str1.1) and one at X+8 that points at a
// function (an STT_FUNC symbol, or the section symbol of an executable
// section plus an addend, which is what GCC emits for static functions).
// The string at the first target is old_name.
//
// This is a heuristic over untrusted bytes: every index and offset is
// checked, unsupported files (not ELF64 little endian x86_64 or aarch64)
// simply yield nil, and nothing here returns an error.
func livepatchFunctions(module []byte, f *elf.File) []string {
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		return nil
	}
	var abs64 uint32
	switch f.Machine {
	case elf.EM_X86_64:
		abs64 = uint32(elf.R_X86_64_64)
	case elf.EM_AARCH64:
		abs64 = uint32(elf.R_AARCH64_ABS64)
	default:
		return nil
	}

	secs := f.Sections
	symtabs := make(map[uint32][]sym64) // by section index, parsed lazily
	seen := make(map[string]bool)
	var names []string

	for _, rs := range secs {
		if rs.Type != elf.SHT_RELA {
			continue
		}
		// The section the relocations apply to must be plain data.
		if int64(rs.Info) <= 0 || int64(rs.Info) >= int64(len(secs)) {
			continue
		}
		target := secs[rs.Info]
		if target.Type != elf.SHT_PROGBITS || target.Flags&elf.SHF_ALLOC == 0 || target.Flags&elf.SHF_EXECINSTR != 0 {
			continue
		}
		syms, ok := symtabs[rs.Link]
		if !ok {
			syms = readSymtab(module, secs, rs.Link)
			symtabs[rs.Link] = syms
		}
		if len(syms) == 0 {
			continue
		}
		data, err := sectionBytes(module, &rs.SectionHeader)
		if err != nil {
			continue
		}

		byOff := make(map[uint64]rela64)
		for i := 0; i+rela64Size <= len(data); i += rela64Size {
			r := parseRela64(data[i : i+rela64Size])
			if r.typ == abs64 {
				byOff[r.off] = r
			}
		}
		for off, nameRel := range byOff {
			if off > ^uint64(0)-8 {
				continue
			}
			funcRel, ok := byOff[off+8]
			if !ok || !isFunctionTarget(secs, syms, funcRel) {
				continue
			}
			name, ok := stringTarget(module, secs, syms, nameRel)
			if !ok || seen[name] {
				continue
			}
			seen[name] = true
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func parseRela64(b []byte) rela64 {
	info := binary.LittleEndian.Uint64(b[8:16])
	return rela64{
		off:    binary.LittleEndian.Uint64(b[0:8]),
		sym:    uint32(info >> 32),
		typ:    uint32(info),
		addend: int64(binary.LittleEndian.Uint64(b[16:24])),
	}
}

// readSymtab parses the SHT_SYMTAB section at index idx, or returns nil.
func readSymtab(module []byte, secs []*elf.Section, idx uint32) []sym64 {
	if int64(idx) <= 0 || int64(idx) >= int64(len(secs)) {
		return nil
	}
	st := secs[idx]
	if st.Type != elf.SHT_SYMTAB {
		return nil
	}
	data, err := sectionBytes(module, &st.SectionHeader)
	if err != nil {
		return nil
	}
	syms := make([]sym64, 0, len(data)/sym64Size)
	for i := 0; i+sym64Size <= len(data); i += sym64Size {
		b := data[i : i+sym64Size]
		syms = append(syms, sym64{
			info:  b[4],
			shndx: binary.LittleEndian.Uint16(b[6:8]),
			value: binary.LittleEndian.Uint64(b[8:16]),
		})
	}
	return syms
}

// symSection returns the section a relocation's symbol is defined in.
func symSection(secs []*elf.Section, syms []sym64, r rela64) (sym64, *elf.Section, bool) {
	if r.sym == 0 || uint64(r.sym) >= uint64(len(syms)) {
		return sym64{}, nil, false
	}
	s := syms[r.sym]
	if s.shndx == uint16(elf.SHN_UNDEF) || s.shndx >= uint16(elf.SHN_LORESERVE) || int(s.shndx) >= len(secs) {
		return sym64{}, nil, false
	}
	return s, secs[s.shndx], true
}

// isFunctionTarget reports whether r points at code: an STT_FUNC symbol or
// the section symbol of an executable section.
func isFunctionTarget(secs []*elf.Section, syms []sym64, r rela64) bool {
	s, sec, ok := symSection(secs, syms, r)
	if !ok {
		return false
	}
	switch s.typ() {
	case elf.STT_FUNC:
		return true
	case elf.STT_SECTION:
		return sec.Flags&elf.SHF_EXECINSTR != 0
	}
	return false
}

// stringTarget returns the NUL-terminated string r points at, if r points
// into a string section and the string looks like a symbol name.
func stringTarget(module []byte, secs []*elf.Section, syms []sym64, r rela64) (string, bool) {
	s, sec, ok := symSection(secs, syms, r)
	if !ok || sec.Flags&elf.SHF_STRINGS == 0 || r.addend < 0 {
		return "", false
	}
	// Section symbols have value 0 in a relocatable file, so value+addend
	// covers both "section + addend" and "string symbol + addend".
	pos := s.value + uint64(r.addend)
	if pos < s.value { // overflow
		return "", false
	}
	data, err := sectionBytes(module, &sec.SectionHeader)
	if err != nil || pos >= uint64(len(data)) {
		return "", false
	}
	rest := data[pos:]
	end := bytes.IndexByte(rest, 0)
	if end <= 0 || end > maxFuncName {
		return "", false
	}
	name := rest[:end]
	for _, c := range name {
		if !isSymbolChar(c) {
			return "", false
		}
	}
	return string(name), true
}

// isSymbolChar reports whether c may appear in a kernel symbol name
// (including compiler suffixes such as ".isra.0" or ".cold").
func isSymbolChar(c byte) bool {
	return c == '_' || c == '.' || c == '$' ||
		'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
