package klpgen

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"

	"github.com/splicefleet/splicefleet/internal/elf64"
)

// MaxObjectSize is the largest object file or module, in bytes, that
// Generate and Finalize read.
const MaxObjectSize = elf64.MaxObjectSize

// ELF64 record sizes and the livepatch constants of the kernel's
// include/uapi/linux/elf.h.
const (
	ehdrSize = elf64.EhdrSize
	shdrSize = elf64.ShdrSize
	symSize  = elf64.SymSize
	relaSize = elf64.RelaSize

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

// elfOptions is what openELF accepts: a relocatable x86-64 object of at
// most MaxObjectSize bytes.
var elfOptions = elf64.Options{Limits: elf64.Limits{MaxSize: MaxObjectSize}, Machine: elf.EM_X86_64}

// openELF checks and parses the ELF and section headers of a relocatable
// x86-64 object with internal/elf64: a size over MaxObjectSize is
// ErrTooLarge, anything else wrong (a panic inside debug/elf included)
// ErrMalformed. Nothing after this uses debug/elf's lazy readers: section
// contents are sliced from data with explicit bounds checks
// (sectionBytes).
func openELF(data []byte) (*elf.File, error) {
	f, err := elf64.Open(data, elfOptions)
	if err != nil {
		return nil, elfError(err)
	}
	if len(f.Sections) >= int(elf.SHN_LORESERVE) {
		return nil, malformed("%d sections: extended section numbering is not supported", len(f.Sections))
	}
	return f, nil
}

// elfError gives an error of internal/elf64 this package's sentinel.
func elfError(err error) error {
	var e *elf64.Error
	switch {
	case !errors.As(err, &e):
		return malformed("%v", err)
	case e.Kind == elf64.ErrTooLarge:
		return e.Wrap(ErrTooLarge)
	}
	return e.Wrap(ErrMalformed)
}

// sectionBytes returns the bytes of a section as stored in the file
// (nil for SHT_NOBITS), refusing compressed sections and ones that reach
// past the end of data.
func sectionBytes(data []byte, s *elf.Section) ([]byte, error) {
	b, err := elf64.SectionBytes(data, &s.SectionHeader)
	if err != nil {
		return nil, elfError(err)
	}
	return b, nil
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

// readObject opens a relocatable object and reads its symbol table.
func readObject(data []byte) (*elf.File, *symtab, error) {
	f, err := openELF(data)
	if err != nil {
		return nil, nil, fmt.Errorf("read object: %w", err)
	}
	st, err := readSymtab(data, f)
	if err != nil {
		return nil, nil, fmt.Errorf("read object: %w", err)
	}
	return f, st, nil
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
		e := elf64.DecodeSym(st.raw[i*symSize:])
		sym := symbol{info: e.Info, other: e.Other, shndx: e.Shndx, value: e.Value, size: e.Size}
		if e.Name != 0 {
			if sym.name, err = cstring(st.strings, e.Name); err != nil {
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
		r := elf64.DecodeRela(b[i*relaSize:])
		rs[i] = rela{off: r.Off, sym: r.Sym, typ: r.Type, addend: r.Addend}
	}
	return rs, nil
}

func appendRela(b []byte, r rela) []byte {
	return elf64.AppendRela(b, elf64.Rela{Off: r.off, Sym: r.sym, Type: r.typ, Addend: r.addend})
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
