package kmod

import (
	"bytes"
	"debug/elf"
	"slices"

	"github.com/splicefleet/splicefleet/internal/elf64"
)

// maxFuncName bounds a replaced function's name (KSYM_NAME_LEN is 512
// including the NUL).
const maxFuncName = 511

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
	symtabs := make(map[uint32][]elf64.Sym) // by section index, parsed lazily
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

		byOff := make(map[uint64]elf64.Rela)
		for i := 0; i+elf64.RelaSize <= len(data); i += elf64.RelaSize {
			r := elf64.DecodeRela(data[i:])
			if r.Type == abs64 {
				byOff[r.Off] = r
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

// readSymtab parses the SHT_SYMTAB section at index idx, or returns nil.
func readSymtab(module []byte, secs []*elf.Section, idx uint32) []elf64.Sym {
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
	syms := make([]elf64.Sym, 0, len(data)/elf64.SymSize)
	for i := 0; i+elf64.SymSize <= len(data); i += elf64.SymSize {
		syms = append(syms, elf64.DecodeSym(data[i:]))
	}
	return syms
}

// symSection returns the section a relocation's symbol is defined in.
func symSection(secs []*elf.Section, syms []elf64.Sym, r elf64.Rela) (elf64.Sym, *elf.Section, bool) {
	if r.Sym == 0 || uint64(r.Sym) >= uint64(len(syms)) {
		return elf64.Sym{}, nil, false
	}
	s := syms[r.Sym]
	if s.Shndx == uint16(elf.SHN_UNDEF) || s.Shndx >= uint16(elf.SHN_LORESERVE) || int(s.Shndx) >= len(secs) {
		return elf64.Sym{}, nil, false
	}
	return s, secs[s.Shndx], true
}

// isFunctionTarget reports whether r points at code: an STT_FUNC symbol or
// the section symbol of an executable section.
func isFunctionTarget(secs []*elf.Section, syms []elf64.Sym, r elf64.Rela) bool {
	s, sec, ok := symSection(secs, syms, r)
	if !ok {
		return false
	}
	switch s.Type() {
	case elf.STT_FUNC:
		return true
	case elf.STT_SECTION:
		return sec.Flags&elf.SHF_EXECINSTR != 0
	}
	return false
}

// stringTarget returns the NUL-terminated string r points at, if r points
// into a string section and the string looks like a symbol name.
func stringTarget(module []byte, secs []*elf.Section, syms []elf64.Sym, r elf64.Rela) (string, bool) {
	s, sec, ok := symSection(secs, syms, r)
	if !ok || sec.Flags&elf.SHF_STRINGS == 0 || r.Addend < 0 {
		return "", false
	}
	// Section symbols have value 0 in a relocatable file, so value+addend
	// covers both "section + addend" and "string symbol + addend".
	pos := s.Value + uint64(r.Addend)
	if pos < s.Value { // overflow
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
