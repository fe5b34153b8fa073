package klpgen

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// MaxObjectSize is the largest object file or module, in bytes, that
// Generate and Finalize read.
const MaxObjectSize = 256 << 20

// ELF64 record sizes and the livepatch constants of the kernel's
// include/uapi/linux/elf.h.
const (
	ehdrSize = 64 // Elf64_Ehdr
	shdrSize = 64 // Elf64_Shdr
	symSize  = 24 // Elf64_Sym
	relaSize = 24 // Elf64_Rela

	// shnLivepatch marks a symbol that livepatch resolves (SHN_LIVEPATCH).
	shnLivepatch = 0xff20
	// shfRelaLivepatch marks a relocation section that livepatch applies
	// (SHF_RELA_LIVEPATCH).
	shfRelaLivepatch = 0x00100000

	// maxSymbolName is the longest symbol name kallsyms handles
	// (KSYM_NAME_LEN is 512 including the NUL; livepatch scans "%511[^,]").
	maxSymbolName = 511
	// maxObjectName is the longest object name livepatch scans
	// ("%55[^.]", from MODULE_NAME_LEN).
	maxObjectName = 55
	// maxNameRead bounds how far a string table is scanned for a NUL.
	maxNameRead = 4096
)

// Offsets of the ELF64 header fields Finalize rewrites.
const (
	ehShoff     = 0x28
	ehShentsize = 0x3a
	ehShnum     = 0x3c
	ehShstrndx  = 0x3e
)

// openELF parses the ELF and section headers of a relocatable x86-64
// object. Go's debug/elf is not hardened against hostile input, so a
// panic inside it becomes an ErrMalformed error. Nothing after this uses
// debug/elf's lazy readers: section contents are sliced from data with
// explicit bounds checks (sectionBytes).
func openELF(data []byte) (f *elf.File, err error) {
	if len(data) > MaxObjectSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxObjectSize)
	}
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, malformed("elf parser panic: %v", r)
		}
	}()
	f, err = elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, malformed("%v", err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Type != elf.ET_REL || f.Machine != elf.EM_X86_64 {
		return nil, malformed("want a relocatable x86-64 ELF64 little-endian object, got %v %v %v %v",
			f.Class, f.Data, f.Type, f.Machine)
	}
	if len(f.Sections) >= int(elf.SHN_LORESERVE) {
		return nil, malformed("%d sections: extended section numbering is not supported", len(f.Sections))
	}
	return f, nil
}

// sectionBytes returns the bytes of a section as stored in the file
// (nil for SHT_NOBITS), refusing compressed sections and ones that reach
// past the end of data.
func sectionBytes(data []byte, s *elf.Section) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	if s.Flags&elf.SHF_COMPRESSED != 0 {
		return nil, malformed("section %s is compressed", s.Name)
	}
	off, n := s.Offset, s.FileSize
	if off > uint64(len(data)) || n > uint64(len(data))-off {
		return nil, malformed("section %s (offset %#x, size %#x) lies outside the file", s.Name, off, n)
	}
	return data[off : off+n], nil
}

// cstring returns the NUL-terminated string at off in a string table.
func cstring(tab []byte, off uint32) (string, error) {
	if uint64(off) >= uint64(len(tab)) {
		return "", malformed("string offset %#x outside a table of %d bytes", off, len(tab))
	}
	rest := tab[off:]
	if len(rest) > maxNameRead {
		rest = rest[:maxNameRead]
	}
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return "", malformed("string at %#x is not terminated within %d bytes", off, maxNameRead)
	}
	return string(rest[:i]), nil
}

// symbol is one Elf64_Sym with its name.
type symbol struct {
	name  string
	info  uint8
	other uint8
	shndx uint16
	value uint64
	size  uint64
}

func (s *symbol) typ() elf.SymType  { return elf.ST_TYPE(s.info) }
func (s *symbol) bind() elf.SymBind { return elf.ST_BIND(s.info) }

// defined reports whether the symbol lives in a section of this file.
func (s *symbol) defined() bool {
	return s.shndx != uint16(elf.SHN_UNDEF) && s.shndx < uint16(elf.SHN_LORESERVE)
}

// symtab is a parsed symbol table: its section index, its entries (index
// 0 included, so indices match relocations) and its raw bytes.
type symtab struct {
	index   int
	strtab  int
	syms    []symbol
	raw     []byte
	strings []byte
}

// readSymtab finds the one SHT_SYMTAB of f and parses it.
func readSymtab(data []byte, f *elf.File) (*symtab, error) {
	st := &symtab{index: -1}
	for i, s := range f.Sections {
		if s.Type != elf.SHT_SYMTAB {
			continue
		}
		if st.index >= 0 {
			return nil, malformed("more than one symbol table")
		}
		st.index = i
	}
	if st.index < 0 {
		return nil, malformed("no symbol table")
	}
	s := f.Sections[st.index]
	if s.Entsize != symSize {
		return nil, malformed("symbol table entry size %d, want %d", s.Entsize, symSize)
	}
	if int(s.Link) <= 0 || int(s.Link) >= len(f.Sections) || f.Sections[s.Link].Type != elf.SHT_STRTAB {
		return nil, malformed("symbol table links to section %d, not a string table", s.Link)
	}
	st.strtab = int(s.Link)
	var err error
	if st.raw, err = sectionBytes(data, s); err != nil {
		return nil, err
	}
	if len(st.raw)%symSize != 0 || len(st.raw) == 0 {
		return nil, malformed("symbol table of %d bytes", len(st.raw))
	}
	if st.strings, err = sectionBytes(data, f.Sections[st.strtab]); err != nil {
		return nil, err
	}
	n := len(st.raw) / symSize
	st.syms = make([]symbol, n)
	for i := range n {
		b := st.raw[i*symSize : (i+1)*symSize]
		sym := symbol{
			info:  b[4],
			other: b[5],
			shndx: binary.LittleEndian.Uint16(b[6:]),
			value: binary.LittleEndian.Uint64(b[8:]),
			size:  binary.LittleEndian.Uint64(b[16:]),
		}
		if nameOff := binary.LittleEndian.Uint32(b[0:]); nameOff != 0 {
			if sym.name, err = cstring(st.strings, nameOff); err != nil {
				return nil, fmt.Errorf("symbol %d name: %w", i, err)
			}
		}
		st.syms[i] = sym
	}
	return st, nil
}

// rela is one Elf64_Rela entry.
type rela struct {
	off    uint64
	sym    uint32
	typ    uint32
	addend int64
}

func parseRelas(b []byte, name string) ([]rela, error) {
	if len(b)%relaSize != 0 {
		return nil, malformed("relocation section %s has %d bytes, not a multiple of %d", name, len(b), relaSize)
	}
	rs := make([]rela, len(b)/relaSize)
	for i := range rs {
		e := b[i*relaSize:]
		info := binary.LittleEndian.Uint64(e[8:])
		rs[i] = rela{
			off:    binary.LittleEndian.Uint64(e),
			sym:    uint32(info >> 32),
			typ:    uint32(info),
			addend: int64(binary.LittleEndian.Uint64(e[16:])),
		}
	}
	return rs, nil
}

func appendRela(b []byte, r rela) []byte {
	b = binary.LittleEndian.AppendUint64(b, r.off)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.sym)<<32|uint64(r.typ))
	return binary.LittleEndian.AppendUint64(b, uint64(r.addend))
}

// relocWidth is how many bytes an x86-64 relocation writes; ok is false
// for types the generator does not handle (the ones the kernel's
// apply_relocate_add handles, minus R_X86_64_NONE).
func relocWidth(t uint32) (width uint64, ok bool) {
	switch elf.R_X86_64(t) {
	case elf.R_X86_64_64, elf.R_X86_64_PC64:
		return 8, true
	case elf.R_X86_64_PC32, elf.R_X86_64_PLT32, elf.R_X86_64_32, elf.R_X86_64_32S:
		return 4, true
	}
	return 0, false
}

// pcRelative reports whether a relocation type is relative to the place
// it patches, so that its addend folds in the distance from the patched
// field to the end of the instruction.
func pcRelative(t uint32) bool {
	switch elf.R_X86_64(t) {
	case elf.R_X86_64_PC32, elf.R_X86_64_PLT32, elf.R_X86_64_PC64:
		return true
	}
	return false
}
