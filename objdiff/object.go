package objdiff

import (
	"debug/elf"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/splicefleet/splicefleet/internal/elf64"
)

// MaxObjectSize is the largest object, in bytes, that [Open] accepts.
const MaxObjectSize = elf64.MaxObjectSize

// Limits bound what an object may contain before it is parsed. A zero
// field means the default of [DefaultLimits].
type Limits struct {
	// MaxSize is the largest object in bytes.
	MaxSize int
	// MaxSections is the most sections; at most 0xff00, because objects
	// with more use extended section numbering, which objdiff refuses.
	MaxSections int
	// MaxSymbols is the most symbol table entries.
	MaxSymbols int
	// MaxRelocations is the most relocation entries, in all sections.
	MaxRelocations int
}

// DefaultLimits are the limits [Open] applies.
var DefaultLimits = Limits{
	MaxSize:        MaxObjectSize,
	MaxSections:    0xff00,
	MaxSymbols:     1 << 20,
	MaxRelocations: 1 << 22,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxSize > 0 {
		d.MaxSize = l.MaxSize
	}
	if l.MaxSections > 0 && l.MaxSections < d.MaxSections {
		d.MaxSections = l.MaxSections
	}
	if l.MaxSymbols > 0 {
		d.MaxSymbols = l.MaxSymbols
	}
	if l.MaxRelocations > 0 {
		d.MaxRelocations = l.MaxRelocations
	}
	return d
}

// Object is a parsed relocatable object, ready to [Compare]. It keeps
// references into the bytes it was opened from, which must not change
// afterwards. An Object is not modified after Open and may be compared
// from several goroutines.
type Object struct {
	name     string
	sections []*section
	syms     []symbol // index 0 is the null symbol
	funcs    map[string]*entity
	data     map[string]*entity
	descs    map[string]*entity  // dynamic debug descriptors (dyndbg.go)
	funcAt   map[location]string // function entities by start
	byBase   map[string][]string // function entities by source name (helper for helper.isra.0), sorted
	size     uint64              // of the input
	referrer map[string][]string // entity name -> entities that refer to it, sorted
	debug    *debugInfo          // nil without usable DWARF
	notes    []string
}

// Name is the name the object was opened with.
func (o *Object) Name() string { return o.name }

type section struct {
	idx     int
	name    string
	typ     elf.SectionType
	flags   elf.SectionFlag
	size    uint64
	entsize uint64
	align   uint64
	link    uint32
	info    uint32 // for a relocation section, the section it applies to
	data    []byte // nil for SHT_NOBITS
	class   class
	relocs  []reloc // sorted by offset
	// named are the named symbols defined here, one per start offset
	// (the largest, then the first by name), sorted by start.
	named []*symbol
	// bounds split an anonymous area into items: every offset a
	// relocation points at and every symbol start, sorted and unique.
	bounds []uint64
	// strStarts are the starts of the strings of a string pool.
	strStarts []uint64
	// funcs are the functions defined here, sorted by start.
	funcs []*entity
}

type symbol struct {
	name        string
	typ         elf.SymType
	bind        elf.SymBind
	shndx       elf.SectionIndex
	value, size uint64
	// pool marks compiler-made literal tables (switch tables, __func__),
	// which are compared by content like anonymous literals.
	pool bool
}

type reloc struct {
	off    uint64
	typ    elf.R_X86_64
	sym    uint32
	addend int64
	// target describes what the relocation points at, independent of
	// layout: a symbol name, a string literal or a digest of anonymous
	// data, plus the offset into it. Set for relocations in compared
	// sections only.
	target string
	// ref is the symbol the target resolved to, if any.
	ref string
}

// entity is a function or variable: a sized symbol compared on its own.
type entity struct {
	name       string // unique in the object
	sym        *symbol
	sec        *section // nil for SHN_COMMON
	start, end uint64
	fn         bool
	desc       bool // a dynamic debug descriptor in __dyndbg
}

type location struct {
	sec int
	off uint64
}

const (
	shdrSize  = elf64.ShdrSize // used by the tests
	relaSize  = elf64.RelaSize
	maxName   = 4096
	maxStrKey = 128 // literal bytes kept verbatim in a target description
)

// Open parses an object under [DefaultLimits]. See [Limits.Open].
func Open(name string, data []byte) (*Object, error) {
	return DefaultLimits.Open(name, data)
}

// Open parses a relocatable x86-64 ELF object. data is untrusted: its
// size, section, symbol and relocation counts are checked against l
// before any parsing, every offset is checked against the input, and a
// panic in the ELF or DWARF parser becomes an error wrapping
// [ErrMalformed]. Errors name the object and wrap [ErrMalformed],
// [ErrTooLarge] or [ErrUnsupported].
func (l Limits) Open(name string, data []byte) (obj *Object, err error) {
	l = l.withDefaults()
	if err := elf64.Check(data, elf64.Options{Limits: elf64.Limits(l), Machine: elf.EM_X86_64, RelaOnly: true}); err != nil {
		return nil, fmt.Errorf("objdiff: open %s: %w", name, elfError(err))
	}
	defer func() {
		if r := recover(); r != nil {
			obj = nil
			err = fmt.Errorf("objdiff: open %s: %w (parser panic: %v)", name, ErrMalformed, r)
		}
	}()
	obj, err = parse(name, data)
	if err != nil {
		return nil, fmt.Errorf("objdiff: open %s: %w", name, err)
	}
	return obj, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}

func tooLarge(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrTooLarge}, args...)...)
}

// elfError gives an error of internal/elf64 this package's sentinel.
func elfError(err error) error {
	var e *elf64.Error
	if !errors.As(err, &e) {
		return malformed("%v", err)
	}
	switch e.Kind {
	case elf64.ErrTooLarge:
		return e.Wrap(ErrTooLarge)
	case elf64.ErrUnsupported:
		return e.Wrap(ErrUnsupported)
	}
	return e.Wrap(ErrMalformed)
}

func parse(name string, data []byte) (*Object, error) {
	f, err := elf64.Parse(data)
	if err != nil {
		return nil, elfError(err)
	}
	o := &Object{name: name, size: uint64(len(data))}
	if err := o.readSections(f, data); err != nil {
		return nil, err
	}
	if err := o.readSymbols(f); err != nil {
		return nil, err
	}
	if err := o.readRelocations(); err != nil {
		return nil, err
	}
	o.index()
	if err := o.findEntities(); err != nil {
		return nil, err
	}
	o.resolveTargets()
	if err := o.readDebug(); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *Object) readSections(f *elf.File, data []byte) error {
	o.sections = make([]*section, len(f.Sections))
	n := uint64(len(data))
	for i, s := range f.Sections {
		if len(s.Name) > maxName {
			return malformed("section %d name is %d bytes long", i, len(s.Name))
		}
		sec := &section{
			idx: i, name: printable(s.Name), typ: s.Type, flags: s.Flags,
			size: s.Size, entsize: s.Entsize, align: s.Addralign,
			link: s.Link, info: s.Info,
		}
		if s.Type != elf.SHT_NOBITS && s.Type != elf.SHT_NULL {
			if s.Offset > n || s.Size > n-s.Offset {
				return malformed("section %s (offset %d, size %d) exceeds the %d-byte input", s.Name, s.Offset, s.Size, n)
			}
			sec.data = data[s.Offset : s.Offset+s.Size]
		}
		if s.Type == elf.SHT_NULL {
			sec.size = 0
		}
		sec.class = classify(sec)
		if sec.flags&elf.SHF_COMPRESSED != 0 && sec.class != classMeta {
			return unsupported("section %s is compressed", s.Name)
		}
		o.sections[i] = sec
	}
	return nil
}

// printable returns name if it is printable ASCII, as
// compilers make names, and a quoted Go string otherwise, so a crafted
// name cannot smuggle control characters into a terminal. Both objects
// are treated alike, so names still match.
func printable(name string) string {
	for i := 0; i < len(name); i++ {
		if name[i] < ' ' || name[i] > '~' {
			return strconv.QuoteToASCII(name)
		}
	}
	return name
}

// isPoolSymbol reports whether a symbol names a literal rather than a
// variable or function of the program, so references to it compare by
// what it holds, not by its name: a local label (.LC0, which the
// assembler keeps for references into merged sections), a local symbol in
// a literal pool, or a table the compiler made for literals (a switch's
// CSWTCH.12, __func__.3), whose numbers shift from build to build.
func isPoolSymbol(s *symbol, sec *section) bool {
	if s.bind != elf.STB_LOCAL || s.typ != elf.STT_NOTYPE && s.typ != elf.STT_OBJECT {
		return false
	}
	if strings.HasPrefix(s.name, ".L") || sec.class == classPool {
		return true
	}
	if s.typ != elf.STT_OBJECT || sec.flags&elf.SHF_WRITE != 0 {
		return false
	}
	for _, p := range []string{"CSWTCH.", "__func__.", "__FUNCTION__.", "__PRETTY_FUNCTION__."} {
		if strings.HasPrefix(s.name, p) {
			return true
		}
	}
	return false
}

func (o *Object) readSymbols(f *elf.File) error {
	tables := 0
	for _, s := range o.sections {
		if s.typ == elf.SHT_SYMTAB {
			tables++
		}
	}
	if tables > 1 {
		return malformed("%d symbol tables", tables)
	}
	o.syms = []symbol{{}}
	if tables == 0 {
		return nil
	}
	syms, err := f.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return malformed("read symbols: %v", err)
	}
	for i, s := range syms {
		if len(s.Name) > maxName {
			return malformed("symbol %d name is %d bytes long", i+1, len(s.Name))
		}
		sym := symbol{
			name: printable(s.Name), typ: elf.ST_TYPE(s.Info), bind: elf.ST_BIND(s.Info),
			shndx: s.Section, value: s.Value, size: s.Size,
		}
		switch {
		case sym.shndx == elf.SHN_UNDEF || sym.shndx == elf.SHN_ABS || sym.shndx == elf.SHN_COMMON:
		case sym.shndx == elf.SHN_XINDEX:
			return unsupported("symbol %q uses an extended section index", s.Name)
		case int(sym.shndx) >= len(o.sections):
			return malformed("symbol %q in section %d of %d", s.Name, sym.shndx, len(o.sections))
		default:
			sec := o.sections[sym.shndx]
			if (sym.typ == elf.STT_FUNC || sym.typ == elf.STT_OBJECT || sym.typ == elf.STT_TLS) &&
				(sym.value > sec.size || sym.size > sec.size-sym.value) {
				return malformed("symbol %q (value %d, size %d) exceeds section %s (size %d)", s.Name, sym.value, sym.size, sec.name, sec.size)
			}
			sym.pool = isPoolSymbol(&sym, sec)
		}
		o.syms = append(o.syms, sym)
	}
	return nil
}

// relocWidth is the size of the field a relocation type writes, 0 if
// objdiff does not know the type.
func relocWidth(t elf.R_X86_64) uint64 {
	switch t {
	case elf.R_X86_64_64, elf.R_X86_64_PC64, elf.R_X86_64_GOTOFF64, elf.R_X86_64_GOTPC64,
		elf.R_X86_64_GOT64, elf.R_X86_64_GOTPCREL64, elf.R_X86_64_GOTPLT64, elf.R_X86_64_PLTOFF64,
		elf.R_X86_64_DTPOFF64, elf.R_X86_64_TPOFF64, elf.R_X86_64_DTPMOD64, elf.R_X86_64_SIZE64:
		return 8
	case elf.R_X86_64_32, elf.R_X86_64_32S, elf.R_X86_64_PC32, elf.R_X86_64_PLT32, elf.R_X86_64_GOT32,
		elf.R_X86_64_GOTPCREL, elf.R_X86_64_GOTPCRELX, elf.R_X86_64_REX_GOTPCRELX, elf.R_X86_64_TLSGD,
		elf.R_X86_64_TLSLD, elf.R_X86_64_DTPOFF32, elf.R_X86_64_GOTTPOFF, elf.R_X86_64_TPOFF32,
		elf.R_X86_64_GOTPC32, elf.R_X86_64_SIZE32, elf.R_X86_64_GOTPC32_TLSDESC:
		return 4
	case elf.R_X86_64_16, elf.R_X86_64_PC16:
		return 2
	case elf.R_X86_64_8, elf.R_X86_64_PC8:
		return 1
	}
	return 0
}

// pcRelative reports whether a relocation in code is relative to the end
// of its field, the usual end of the instruction, so the addend is biased
// by the field's width.
func pcRelative(t elf.R_X86_64) bool {
	switch t {
	case elf.R_X86_64_PC32, elf.R_X86_64_PLT32, elf.R_X86_64_GOTPCREL, elf.R_X86_64_GOTPCRELX,
		elf.R_X86_64_REX_GOTPCRELX, elf.R_X86_64_PC16, elf.R_X86_64_PC8:
		return true
	}
	return false
}

func (o *Object) readRelocations() error {
	for _, rs := range o.sections {
		if rs.typ != elf.SHT_RELA {
			continue
		}
		if rs.size%relaSize != 0 {
			return malformed("relocation section %s size %d is not a multiple of %d", rs.name, rs.size, relaSize)
		}
		if rs.size > 0 && (int(rs.info) <= 0 || int(rs.info) >= len(o.sections) || int(rs.info) == rs.idx) {
			return malformed("relocation section %s applies to section %d", rs.name, rs.info)
		}
		if rs.size == 0 {
			continue
		}
		if st := int(rs.link); st >= len(o.sections) || o.sections[st].typ != elf.SHT_SYMTAB {
			return malformed("relocation section %s links to section %d, not the symbol table", rs.name, rs.link)
		}
		target := o.sections[rs.info]
		if target.typ == elf.SHT_NOBITS || target.typ == elf.SHT_NULL {
			return malformed("relocation section %s applies to %s, which has no contents", rs.name, target.name)
		}
		for p := uint64(0); p < rs.size; p += relaSize {
			e := elf64.DecodeRela(rs.data[p:])
			r := reloc{off: e.Off, sym: e.Sym, typ: elf.R_X86_64(e.Type), addend: e.Addend}
			if int(r.sym) >= len(o.syms) {
				return malformed("relocation in %s at %#x names symbol %d of %d", rs.name, r.off, r.sym, len(o.syms))
			}
			if w := relocWidth(r.typ); r.off > target.size || w > target.size-r.off {
				return malformed("relocation in %s at %#x exceeds section %s (size %d)", rs.name, r.off, target.name, target.size)
			}
			target.relocs = append(target.relocs, r)
		}
	}
	for _, s := range o.sections {
		slices.SortStableFunc(s.relocs, func(a, b reloc) int { return cmpUint(a.off, b.off) })
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
