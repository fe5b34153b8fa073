package elf64

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxObjectSize is the largest object or module, in bytes, that klpgen
// and objdiff read.
const MaxObjectSize = 256 << 20

// maxSections is the most sections a file may have: more need extended
// section numbering (e_shnum 0, the count in section 0), which is
// refused.
const maxSections = 0xff00

// Errors, the kinds of an [*Error].
var (
	// ErrMalformed means the input is not an ELF file or is damaged.
	ErrMalformed = errors.New("malformed ELF file")
	// ErrUnsupported means a valid ELF file of a kind the caller does
	// not read (class, byte order, type, machine, SHT_REL, compression).
	ErrUnsupported = errors.New("unsupported ELF file")
	// ErrTooLarge means the input exceeds one of [Limits].
	ErrTooLarge = errors.New("ELF file too large")
)

// Error is an error of this package: a kind and what was wrong.
type Error struct {
	// Kind is ErrMalformed, ErrUnsupported or ErrTooLarge.
	Kind error
	// Detail says what was wrong, e.g. "section 3 (offset 64, size 9)
	// exceeds the 70-byte input".
	Detail string
}

func (e *Error) Error() string { return e.Kind.Error() + ": " + e.Detail }

// Unwrap returns the kind.
func (e *Error) Unwrap() error { return e.Kind }

// Wrap returns an error that reads as sentinel followed by the detail
// and matches both sentinel and e's kind with errors.Is.
func (e *Error) Wrap(sentinel error) error { return &wrapped{sentinel, e} }

type wrapped struct {
	sentinel error
	e        *Error
}

func (w *wrapped) Error() string   { return w.sentinel.Error() + ": " + w.e.Detail }
func (w *wrapped) Unwrap() []error { return []error{w.sentinel, w.e} }

func fail(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// Limits bound what a file may hold before it is parsed. A zero field
// sets no bound beyond the input's size, except MaxSections, which is
// always at most 0xff00.
type Limits struct {
	// MaxSize is the largest input in bytes.
	MaxSize int
	// MaxSections is the most sections.
	MaxSections int
	// MaxSymbols is the most symbol table entries, in all tables.
	MaxSymbols int
	// MaxRelocations is the most Elf64_Rela entries, in all sections.
	MaxRelocations int
}

// Options say what [Check] accepts. Every file must be an ELF64
// little-endian relocatable file (ET_REL) within Limits.
type Options struct {
	Limits
	// Machine is the one machine accepted; 0 accepts any.
	Machine elf.Machine
	// RelaOnly refuses SHT_REL sections (x86-64 uses SHT_RELA only).
	RelaOnly bool
}

// Record sizes of ELF64.
const (
	EhdrSize = 64 // Elf64_Ehdr
	ShdrSize = 64 // Elf64_Shdr
	SymSize  = 24 // Elf64_Sym
	RelaSize = 24 // Elf64_Rela
)

// Check verifies data before anything parses it, reading the ELF header
// and the section headers by hand: the size, the kind of file, that the
// section header table and every section with contents lie inside data,
// and the counts Limits bound.
func Check(data []byte, o Options) error {
	l := o.Limits
	if l.MaxSections <= 0 || l.MaxSections > maxSections {
		l.MaxSections = maxSections
	}
	if l.MaxSize > 0 && len(data) > l.MaxSize {
		return fail(ErrTooLarge, "%d bytes, limit %d", len(data), l.MaxSize)
	}
	if len(data) < EhdrSize || !bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return fail(ErrMalformed, "not an ELF file")
	}
	if c, d := elf.Class(data[elf.EI_CLASS]), elf.Data(data[elf.EI_DATA]); c != elf.ELFCLASS64 || d != elf.ELFDATA2LSB {
		return fail(ErrUnsupported, "%v %v, want ELFCLASS64 ELFDATA2LSB", c, d)
	}
	le := binary.LittleEndian
	if t := elf.Type(le.Uint16(data[16:])); t != elf.ET_REL {
		return fail(ErrUnsupported, "%v, want a relocatable object (ET_REL)", t)
	}
	if m := elf.Machine(le.Uint16(data[18:])); o.Machine != 0 && m != o.Machine {
		return fail(ErrUnsupported, "machine %v, want %v", m, o.Machine)
	}
	shoff := le.Uint64(data[40:])
	shentsize := le.Uint16(data[58:])
	shnum := uint64(le.Uint16(data[60:]))
	shstrndx := uint64(le.Uint16(data[62:]))
	if shoff == 0 || shnum == 0 {
		if shoff != 0 {
			return fail(ErrTooLarge, "extended section numbering (more than %d sections)", l.MaxSections)
		}
		return fail(ErrMalformed, "no section headers")
	}
	if shentsize != ShdrSize {
		return fail(ErrMalformed, "section header size %d, want %d", shentsize, ShdrSize)
	}
	if shnum > uint64(l.MaxSections) {
		return fail(ErrTooLarge, "%d sections, limit %d", shnum, l.MaxSections)
	}
	if shstrndx >= shnum {
		return fail(ErrMalformed, "section name table index %d of %d sections", shstrndx, shnum)
	}
	n := uint64(len(data))
	if shoff > n || shnum*ShdrSize > n-shoff {
		return fail(ErrMalformed, "section headers (offset %d, %d entries) exceed the %d-byte input", shoff, shnum, n)
	}
	var syms, relocs uint64
	for i := range shnum {
		h := data[shoff+i*ShdrSize:]
		typ := elf.SectionType(le.Uint32(h[4:]))
		off, size := le.Uint64(h[24:]), le.Uint64(h[32:])
		if typ != elf.SHT_NOBITS && typ != elf.SHT_NULL && (off > n || size > n-off) {
			return fail(ErrMalformed, "section %d (offset %d, size %d) exceeds the %d-byte input", i, off, size, n)
		}
		switch typ {
		case elf.SHT_SYMTAB:
			syms += size / SymSize
		case elf.SHT_RELA:
			relocs += size / RelaSize
		case elf.SHT_REL:
			if o.RelaOnly {
				return fail(ErrUnsupported, "section %d has SHT_REL relocations; x86-64 objects use SHT_RELA", i)
			}
		}
	}
	if l.MaxSymbols > 0 && syms > uint64(l.MaxSymbols) {
		return fail(ErrTooLarge, "%d symbols, limit %d", syms, l.MaxSymbols)
	}
	if l.MaxRelocations > 0 && relocs > uint64(l.MaxRelocations) {
		return fail(ErrTooLarge, "%d relocations, limit %d", relocs, l.MaxRelocations)
	}
	return nil
}

// Open checks data ([Check]) and parses its headers ([Parse]).
func Open(data []byte, o Options) (*elf.File, error) {
	if err := Check(data, o); err != nil {
		return nil, err
	}
	return Parse(data)
}

// Parse parses the ELF and section headers of data with debug/elf under
// a recover: a panic in the parser becomes an ErrMalformed error. It does
// not [Check] data; use [Open], unless a file of another class or byte
// order is read only to report on it (kmod names the architecture of a
// module built for another), and read every section through
// [SectionBytes]. The File's lazy readers (Data, Open, DWARF, Symbols)
// are not bounded by the input's size and are best left alone.
func Parse(data []byte) (f *elf.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fail(ErrMalformed, "elf parser panic: %v", r)
		}
	}()
	f, err = elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fail(ErrMalformed, "%v", err)
	}
	return f, nil
}

// SectionBytes returns the contents of a section as a sub-slice of data,
// the file it was parsed from: nil for SHT_NOBITS, an error for a
// compressed section or one that reaches past the end of data.
func SectionBytes(data []byte, s *elf.SectionHeader) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	if s.Flags&elf.SHF_COMPRESSED != 0 {
		return nil, fail(ErrUnsupported, "section %s is compressed", s.Name)
	}
	off, size, n := s.Offset, s.FileSize, uint64(len(data))
	if off > n || size > n-off {
		return nil, fail(ErrMalformed, "section %s (offset %d, size %d) exceeds the %d-byte input", s.Name, off, size, n)
	}
	return data[off : off+size], nil
}
