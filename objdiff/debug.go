package objdiff

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// debugInfo is what the DWARF of an object says about its functions.
type debugInfo struct {
	// inlined maps an inlined function to the functions it is inlined
	// into and the code spans of its copies there.
	inlined map[string]map[string][]span
	// sigs maps a function symbol to its prototype, by type names.
	sigs map[string]string
	// abis maps a function symbol to its prototype as the calling
	// convention sees it (abiType): what registers or stack slots of
	// what size each parameter and the result take.
	abis map[string]string
	// abstract names the functions the compiler inlined somewhere (DWARF
	// DW_AT_inline), even where no copy kept an entry of its own.
	abstract map[string]bool
	// layouts maps a named struct or union ("struct proc_inode") to its
	// layout: its size and each member's name, offset, bit field and
	// type name. Two types of one name in an object (function-local
	// ones) are joined.
	layouts map[string]string
	// homes maps a struct or union of layouts to "" when every
	// definition of it is in the unit's own file (DW_AT_decl_file), and
	// to the file, or why it is unknown, otherwise.
	homes map[string]string
	// uses says, for each named struct or union that a variable,
	// parameter, member or function type refers to, how it is held
	// (stack.go).
	uses map[string]*typeUses
	// unread, if set, says why uses may be incomplete.
	unread string
}

// openLayout is a struct or union whose members the walk is reading.
type openLayout struct {
	key   string
	depth int
	text  strings.Builder
}

// maxLayout bounds the text of one layout.
const maxLayout = 64 << 10

type span struct {
	sec        *section
	start, end uint64
}

// Bounds on reading debug info, beyond the input size.
const (
	// maxRangeEntries bounds the range list entries decoded in one
	// object: a crafted list shared by many entries cannot make the work
	// quadratic.
	maxRangeEntries = 1 << 24
	// maxOriginHops bounds chains of abstract origins and specifications.
	maxOriginHops = 8
	// maxTypeDepth bounds how deep a type name is spelled out.
	maxTypeDepth = 6
)

// debugSections are the DWARF sections objdiff reads.
var debugSections = []string{
	".debug_info", ".debug_abbrev", ".debug_str", ".debug_line_str",
	".debug_addr", ".debug_str_offsets", ".debug_rnglists", ".debug_ranges",
	".debug_line",
}

// readDebug reads the inline tree and prototypes from DWARF, if present.
//
// Relocations in the debug sections are applied here rather than by
// debug/elf, with a twist: an address in section i at offset x becomes
// (i+1)<<32 | x, so every code address in the DWARF names its section.
// (debug/elf would make it x alone, the same for every function.)
func (o *Object) readDebug() error {
	secs := map[string]*section{}
	for _, s := range o.sections {
		if slices.Contains(debugSections, s.name) && secs[s.name] == nil {
			secs[s.name] = s
		}
	}
	if secs[".debug_info"] == nil || secs[".debug_abbrev"] == nil {
		o.notes = append(o.notes, o.name+" has no debug info (-g)")
		return nil
	}
	for _, s := range secs {
		if s.flags&elf.SHF_COMPRESSED != 0 || s.data == nil {
			o.notes = append(o.notes, fmt.Sprintf("%s: debug section %s is compressed or empty; debug info not read", o.name, s.name))
			return nil
		}
	}
	raw := map[string][]byte{}
	for name, s := range secs {
		raw[name] = o.relocated(s)
	}
	d, err := dwarf.New(raw[".debug_abbrev"], nil, nil, raw[".debug_info"], raw[".debug_line"], nil, raw[".debug_ranges"], raw[".debug_str"])
	if err != nil {
		return malformed("read debug info: %v", err)
	}
	for _, name := range []string{".debug_addr", ".debug_line_str", ".debug_str_offsets", ".debug_rnglists"} {
		if raw[name] != nil {
			if err := d.AddSection(name, raw[name]); err != nil {
				return malformed("read debug info: %s: %v", name, err)
			}
		}
	}
	w := &walker{
		o: o, d: d, raw: raw,
		units:  unitVersions(raw[".debug_info"]),
		budget: maxRangeEntries,
		steps:  maxDebugSteps(len(raw[".debug_info"])),
		sigs:   map[dwarf.Offset]string{},
		abis:   map[dwarf.Offset]string{},
		names:  map[dwarf.Offset]string{},
		types:  map[dwarf.Offset]string{},
		ranges: map[rangeKey][]span{},
		info: &debugInfo{inlined: map[string]map[string][]span{}, sigs: map[string]string{}, abis: map[string]string{}, abstract: map[string]bool{},
			layouts: map[string]string{}, homes: map[string]string{}, uses: map[string]*typeUses{}},
		mentions: map[dwarf.Offset]mention{},
		entries:  d.Reader(),
	}
	if err := w.walk(); err != nil {
		if errors.Is(err, ErrTooLarge) {
			return fmt.Errorf("read debug info: %w", err)
		}
		return malformed("read debug info: %v", err)
	}
	o.debug = w.info
	return nil
}

// relocated returns a copy of a debug section with its relocations
// applied, code and data addresses in the (section+1)<<32 | offset form.
func (o *Object) relocated(s *section) []byte {
	b := slices.Clone(s.data)
	le := binary.LittleEndian
	for _, r := range s.relocs {
		var v uint64
		if r.sym != 0 {
			sym := &o.syms[r.sym]
			if sym.shndx == elf.SHN_UNDEF {
				continue
			}
			v = sym.value
			if sym.shndx < elf.SHN_LORESERVE && o.sections[sym.shndx].flags&elf.SHF_ALLOC != 0 {
				v += uint64(sym.shndx+1) << 32
			}
		}
		v += uint64(r.addend)
		switch r.typ {
		case elf.R_X86_64_64:
			le.PutUint64(b[r.off:], v)
		case elf.R_X86_64_32, elf.R_X86_64_32S:
			le.PutUint32(b[r.off:], uint32(v))
		}
	}
	return b
}

// unitVersions lists the compilation units of .debug_info by start
// offset and DWARF version; the range list format depends on it.
func unitVersions(info []byte) []unitVersion {
	var units []unitVersion
	le := binary.LittleEndian
	for off := uint64(0); off+6 <= uint64(len(info)); {
		n, hdr := uint64(le.Uint32(info[off:])), uint64(4)
		if n == 0xffffffff {
			if off+14 > uint64(len(info)) {
				break
			}
			n, hdr = le.Uint64(info[off+4:]), 12
		}
		if n > uint64(len(info))-off-hdr || n < 2 {
			break
		}
		units = append(units, unitVersion{start: dwarf.Offset(off), version: le.Uint16(info[off+hdr:])})
		off += hdr + n
	}
	return units
}

// maxDebugSteps bounds the entries read from a .debug_info of n bytes:
// one pass for the walk and one more for the lookups of origins, types
// and parameters, which are cached.
func maxDebugSteps(n int) int { return 4*n + 64 }

type unitVersion struct {
	start   dwarf.Offset
	version uint16
}

type rangeKey struct {
	class dwarf.Class
	off   int64
}

// walker reads the DIE tree once, in order.
type walker struct {
	o      *Object
	d      *dwarf.Data
	raw    map[string][]byte
	units  []unitVersion
	budget int
	steps  int
	// copyBytes is the code of all inlined copies, which Compare reads.
	copyBytes uint64
	sigs      map[dwarf.Offset]string
	abis      map[dwarf.Offset]string
	names     map[dwarf.Offset]string
	types     map[dwarf.Offset]string
	ranges    map[rangeKey][]span
	info      *debugInfo
	entries   *dwarf.Reader
	// open are the structs and unions being read, innermost last.
	open []*openLayout
	// scopes are the entries enclosing the one being read, innermost
	// last; mentions caches what a type refers to (stack.go).
	scopes   []scope
	mentions map[dwarf.Offset]mention
	// The compilation unit being read: its DWARF version, base
	// addresses, and the names of its own source file and of the files
	// its line table lists (nil if it cannot be read).
	version  uint16
	base     uint64
	addrBase uint64
	compDir  string
	own      string
	files    []*dwarf.LineFile
}

// sourcePath resolves a file name of the unit against its compilation
// directory.
func (w *walker) sourcePath(name string) string {
	if !path.IsAbs(name) && w.compDir != "" {
		return path.Join(w.compDir, name)
	}
	return path.Clean(name)
}

func (w *walker) walk() error {
	// callers[i] is the function whose code encloses depth i.
	var callers []string
	for {
		e, err := w.next(w.entries)
		if err != nil {
			return err
		}
		if e == nil {
			return nil
		}
		if e.Tag == 0 {
			if len(callers) > 0 {
				callers = callers[:len(callers)-1]
			}
			if len(w.scopes) > 0 {
				w.scopes = w.scopes[:len(w.scopes)-1]
			}
			if n := len(w.open); n > 0 && w.open[n-1].depth == len(callers) {
				w.closeLayout(w.open[n-1])
				w.open = w.open[:n-1]
			}
			continue
		}
		caller := ""
		if len(callers) > 0 {
			caller = callers[len(callers)-1]
		}
		switch e.Tag {
		case dwarf.TagCompileUnit, dwarf.TagPartialUnit:
			callers, caller = callers[:0], ""
			w.scopes = w.scopes[:0]
			w.startUnit(e)
		case dwarf.TagSubprogram:
			if inl, ok := e.Val(dwarf.AttrInline).(int64); ok && (inl == dwInlInlined || inl == dwInlDeclaredInlined) {
				if name, ok := e.Val(dwarf.AttrName).(string); ok {
					w.info.abstract[printable(name)] = true
				}
			}
			spans, err := w.spans(e)
			if err != nil {
				return err
			}
			if name := w.functionAt(spans); name != "" {
				caller = name
				sig, err := w.signature(e)
				if err != nil {
					return err
				}
				if sig != "" {
					w.info.sigs[name] = sig
					w.info.abis[name] = w.abis[w.declOf(e)]
				}
			}
		case dwarf.TagStructType, dwarf.TagUnionType:
			name, _ := e.Val(dwarf.AttrName).(string)
			decl, _ := e.Val(dwarf.AttrDeclaration).(bool)
			if name != "" && !decl && e.Children {
				l := &openLayout{key: "struct " + printable(name), depth: len(callers)}
				if e.Tag == dwarf.TagUnionType {
					l.key = "union " + printable(name)
				}
				size, _ := e.Val(dwarf.AttrByteSize).(int64)
				fmt.Fprintf(&l.text, "size %d", size)
				w.open = append(w.open, l)
				w.home(l.key, e)
			}
		case dwarf.TagMember:
			if n := len(w.open); n > 0 && w.open[n-1].depth+1 == len(callers) {
				w.member(w.open[n-1], e)
			}
		case dwarf.TagInlinedSubroutine:
			if caller == "" {
				break
			}
			name, err := w.originName(e)
			if err != nil {
				return err
			}
			if name == "" {
				break
			}
			spans, err := w.spans(e)
			if err != nil {
				return err
			}
			m := w.info.inlined[name]
			if m == nil {
				m = map[string][]span{}
				w.info.inlined[name] = m
			}
			m[caller] = append(m[caller], spans...)
			for _, sp := range spans {
				w.copyBytes += sp.end - sp.start
			}
			if w.copyBytes > 4*overlapFactor*w.o.size+overlapSlack {
				return tooLarge("inlined copies in debug info cover %d bytes of a %d-byte object", w.copyBytes, w.o.size)
			}
		}
		if err := w.use(e); err != nil {
			return err
		}
		if e.Children {
			callers = append(callers, caller)
			w.scopes = append(w.scopes, w.scopeOf(e))
		}
	}
}

// member adds one member of a struct or union to its layout.
func (w *walker) member(l *openLayout, e *dwarf.Entry) {
	if l.text.Len() > maxLayout {
		return
	}
	name, _ := e.Val(dwarf.AttrName).(string)
	at := "?"
	if off, ok := e.Val(dwarf.AttrDataMemberLoc).(int64); ok {
		at = fmt.Sprint(off)
	}
	if bits, ok := e.Val(dwarf.AttrBitSize).(int64); ok {
		bitOff, _ := e.Val(dwarf.AttrDataBitOffset).(int64)
		at += fmt.Sprintf(" bits %d+%d", bitOff, bits)
	}
	typ := "?"
	if off, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
		typ = w.typeName(off, 0)
	}
	fmt.Fprintf(&l.text, "; %s at %s: %s", printable(name), at, typ)
}

// closeLayout records a struct or union whose members were all read.
func (w *walker) closeLayout(l *openLayout) {
	text := l.text.String()
	if old, ok := w.info.layouts[l.key]; ok && old != text {
		parts := append(strings.Split(old, " | "), text)
		slices.Sort(parts)
		text = strings.Join(slices.Compact(parts), " | ")
	}
	w.info.layouts[l.key] = text
}

// next reads an entry, counting the reads against the size of
// .debug_info: every entry takes at least one byte, but debug/dwarf
// returns null entries without advancing at an unterminated LEB128, so
// without this count a crafted object could spin forever.
func (w *walker) next(r *dwarf.Reader) (*dwarf.Entry, error) {
	w.steps--
	if w.steps < 0 {
		return nil, fmt.Errorf("debug info entries do not advance")
	}
	return r.Next()
}

func (w *walker) startUnit(cu *dwarf.Entry) {
	w.version, w.base, w.addrBase = 4, 0, 0
	i, found := slices.BinarySearchFunc(w.units, cu.Offset, func(u unitVersion, off dwarf.Offset) int {
		return cmpUint(uint64(u.start), uint64(off))
	})
	if !found {
		i--
	}
	if i >= 0 {
		w.version = w.units[i].version
	}
	if v, ok := cu.Val(dwarf.AttrLowpc).(uint64); ok {
		w.base = v
	}
	if v, ok := cu.Val(dwarf.AttrAddrBase).(int64); ok && v >= 0 {
		w.addrBase = uint64(v)
	}
	w.own, w.files = "", nil
	w.compDir, _ = cu.Val(dwarf.AttrCompDir).(string)
	if name, _ := cu.Val(dwarf.AttrName).(string); name != "" {
		w.own = w.sourcePath(name)
	}
	// A line table that cannot be read leaves every type's file
	// unknown, which keeps its layout changes refused.
	if lr, err := w.d.LineReader(cu); err == nil && lr != nil {
		w.files = lr.Files()
	}
}

// functionAt names the function symbol at the start of one of spans.
func (w *walker) functionAt(spans []span) string {
	for _, s := range spans {
		if name := w.o.funcAt[location{s.sec.idx, s.start}]; name != "" {
			return name
		}
	}
	return ""
}

// spans returns the code an entry covers, from low_pc/high_pc or ranges.
func (w *walker) spans(e *dwarf.Entry) ([]span, error) {
	var out []span
	if low, ok := e.Val(dwarf.AttrLowpc).(uint64); ok {
		if f := e.AttrField(dwarf.AttrHighpc); f != nil {
			switch v := f.Val.(type) {
			case uint64:
				out = w.addSpan(out, low, v)
			case int64:
				out = w.addSpan(out, low, low+uint64(v))
			}
		}
	}
	f := e.AttrField(dwarf.AttrRanges)
	if f == nil {
		return out, nil
	}
	var off int64
	switch v := f.Val.(type) {
	case int64:
		off = v
	case uint64:
		off = int64(v)
	default:
		return out, nil
	}
	k := rangeKey{f.Class, off}
	if cached, ok := w.ranges[k]; ok {
		return append(out, cached...), nil
	}
	var list []span
	var err error
	if w.version >= 5 {
		list, err = w.rnglist(off)
	} else {
		list, err = w.rangeList(off)
	}
	if err != nil {
		return nil, err
	}
	w.ranges[k] = list
	return append(out, list...), nil
}

// addSpan decodes [lo, hi) in the (section+1)<<32 | offset form and keeps
// it if it lies inside one code section.
func (w *walker) addSpan(out []span, lo, hi uint64) []span {
	if hi <= lo || lo>>32 == 0 || lo>>32 != (hi-1)>>32 {
		return out
	}
	idx := lo>>32 - 1
	if idx >= uint64(len(w.o.sections)) {
		return out
	}
	s := w.o.sections[idx]
	start, end := lo&0xffffffff, (hi-1)&0xffffffff+1
	if s.class != classCode || end > s.size {
		return out
	}
	return append(out, span{s, start, end})
}

func (w *walker) spend() error {
	w.budget--
	if w.budget < 0 {
		return tooLarge("more than %d range list entries in debug info", maxRangeEntries)
	}
	return nil
}

// rangeList decodes a DWARF 2-4 .debug_ranges list.
func (w *walker) rangeList(off int64) ([]span, error) {
	b := w.raw[".debug_ranges"]
	if off < 0 || uint64(off) > uint64(len(b)) {
		return nil, fmt.Errorf("range list offset %d outside .debug_ranges", off)
	}
	var out []span
	base := w.base
	le := binary.LittleEndian
	for p := uint64(off); p+16 <= uint64(len(b)); p += 16 {
		if err := w.spend(); err != nil {
			return nil, err
		}
		lo, hi := le.Uint64(b[p:]), le.Uint64(b[p+8:])
		switch {
		case lo == 0 && hi == 0:
			return out, nil
		case lo == ^uint64(0):
			base = hi
		default:
			out = w.addSpan(out, base+lo, base+hi)
		}
	}
	return out, nil
}

// DW_AT_inline values for functions that were inlined.
const (
	dwInlInlined         = 1
	dwInlDeclaredInlined = 3
)

// DWARF 5 range list entry kinds.
const (
	rleEndOfList    = 0x00
	rleBaseAddressx = 0x01
	rleStartxEndx   = 0x02
	rleStartxLength = 0x03
	rleOffsetPair   = 0x04
	rleBaseAddress  = 0x05
	rleStartEnd     = 0x06
	rleStartLength  = 0x07
)

// rnglist decodes a DWARF 5 .debug_rnglists list.
func (w *walker) rnglist(off int64) ([]span, error) {
	b := w.raw[".debug_rnglists"]
	if off < 0 || uint64(off) > uint64(len(b)) {
		return nil, fmt.Errorf("range list offset %d outside .debug_rnglists", off)
	}
	r := &byteReader{b: b, p: uint64(off)}
	base := w.base
	var out []span
	for {
		if err := w.spend(); err != nil {
			return nil, err
		}
		kind := r.u8()
		switch kind {
		case rleEndOfList:
			return out, r.err
		case rleBaseAddressx:
			base = w.addr(r, r.uleb())
		case rleStartxEndx:
			lo := w.addr(r, r.uleb())
			out = w.addSpan(out, lo, w.addr(r, r.uleb()))
		case rleStartxLength:
			lo := w.addr(r, r.uleb())
			out = w.addSpan(out, lo, lo+r.uleb())
		case rleOffsetPair:
			lo, hi := r.uleb(), r.uleb()
			out = w.addSpan(out, base+lo, base+hi)
		case rleBaseAddress:
			base = r.u64()
		case rleStartEnd:
			lo := r.u64()
			out = w.addSpan(out, lo, r.u64())
		case rleStartLength:
			lo := r.u64()
			out = w.addSpan(out, lo, lo+r.uleb())
		default:
			return nil, fmt.Errorf("range list entry kind %#x at %d", kind, r.p-1)
		}
		if r.err != nil {
			return nil, r.err
		}
	}
}

// addr reads entry idx of the unit's .debug_addr table.
func (w *walker) addr(r *byteReader, idx uint64) uint64 {
	b := w.raw[".debug_addr"]
	if w.addrBase > uint64(len(b)) || idx >= (uint64(len(b))-w.addrBase)/8 {
		r.fail("address index %d outside .debug_addr", idx)
		return 0
	}
	return binary.LittleEndian.Uint64(b[w.addrBase+idx*8:])
}

// byteReader reads DWARF encodings with bounds checks; the first error
// sticks and reads after it return zero.
type byteReader struct {
	b   []byte
	p   uint64
	err error
}

func (r *byteReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *byteReader) u8() byte {
	if r.err != nil || r.p >= uint64(len(r.b)) {
		r.fail("range list runs past its section")
		return 0
	}
	r.p++
	return r.b[r.p-1]
}

func (r *byteReader) u64() uint64 {
	if r.err != nil || r.p+8 > uint64(len(r.b)) {
		r.fail("range list runs past its section")
		return 0
	}
	r.p += 8
	return binary.LittleEndian.Uint64(r.b[r.p-8:])
}

func (r *byteReader) uleb() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c := r.u8()
		if r.err != nil {
			return 0
		}
		if shift < 64 {
			v |= uint64(c&0x7f) << shift
		}
		if c&0x80 == 0 {
			return v
		}
		if shift > 70 {
			r.fail("LEB128 number too long")
			return 0
		}
	}
}

// entry reads the entry at off with a reader of its own.
func (w *walker) entry(off dwarf.Offset) (*dwarf.Entry, error) {
	r := w.d.Reader()
	r.Seek(off)
	e, err := w.next(r)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, fmt.Errorf("no entry at offset %#x", off)
	}
	return e, nil
}

// origin follows abstract origins and specifications to the entry that
// declares e.
func (w *walker) origin(e *dwarf.Entry) (*dwarf.Entry, error) {
	for range maxOriginHops {
		next, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			next, ok = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		}
		if !ok {
			return e, nil
		}
		var err error
		if e, err = w.entry(next); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("abstract origins nested more than %d deep", maxOriginHops)
}

// originName names the function an inlined_subroutine is a copy of.
func (w *walker) originName(e *dwarf.Entry) (string, error) {
	off, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
	if !ok {
		return "", nil
	}
	if name, ok := w.names[off]; ok {
		return name, nil
	}
	first := off
	var name string
	for range maxOriginHops {
		o, err := w.entry(off)
		if err != nil {
			return "", err
		}
		if n, ok := o.Val(dwarf.AttrName).(string); ok {
			name = n
			break
		}
		next, ok := o.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			next, ok = o.Val(dwarf.AttrSpecification).(dwarf.Offset)
		}
		if !ok {
			break
		}
		off = next
	}
	if len(name) > maxName {
		name = name[:maxName]
	}
	name = printable(name)
	w.names[first] = name
	return name, nil
}

// signature spells a function's prototype from its declaring entry:
// return type and parameter types, by name. Parameter names do not count.
func (w *walker) signature(e *dwarf.Entry) (string, error) {
	decl, err := w.origin(e)
	if err != nil {
		return "", err
	}
	if sig, ok := w.sigs[decl.Offset]; ok {
		return sig, nil
	}
	ret, abiRet := "void", "void"
	if off, ok := decl.Val(dwarf.AttrType).(dwarf.Offset); ok {
		ret, abiRet = w.typeName(off, 0), w.abiType(off, 0)
	}
	var params, abiParams []string
	if decl.Children {
		r := w.d.Reader()
		r.Seek(decl.Offset)
		if _, err := w.next(r); err != nil {
			return "", err
		}
		// Read the children, skipping grandchildren by depth rather than
		// with Reader.SkipChildren, which recurses.
		for depth := 1; depth > 0; {
			c, err := w.next(r)
			if err != nil {
				return "", err
			}
			if c == nil {
				break
			}
			if c.Tag == 0 {
				depth--
				continue
			}
			if depth == 1 {
				switch c.Tag {
				case dwarf.TagFormalParameter:
					p := c
					if _, ok := p.Val(dwarf.AttrType).(dwarf.Offset); !ok {
						if p, err = w.origin(c); err != nil {
							return "", err
						}
					}
					t, abi := "?", "?"
					if off, ok := p.Val(dwarf.AttrType).(dwarf.Offset); ok {
						t, abi = w.typeName(off, 0), w.abiType(off, 0)
					}
					params = append(params, t)
					abiParams = append(abiParams, abi)
				case dwarf.TagUnspecifiedParameters:
					params = append(params, "...")
					abiParams = append(abiParams, "...")
				}
			}
			if c.Children {
				depth++
			}
		}
	}
	if len(params) == 0 {
		if proto, _ := decl.Val(dwarf.AttrPrototyped).(bool); proto {
			params = []string{"void"}
		}
	}
	sig := ret + " (" + strings.Join(params, ", ") + ")"
	w.sigs[decl.Offset] = sig
	w.abis[decl.Offset] = abiRet + " (" + strings.Join(abiParams, ", ") + ")"
	return sig, nil
}

// declOf returns the offset of the entry that declares e's prototype
// (signature has read it, so it is cached).
func (w *walker) declOf(e *dwarf.Entry) dwarf.Offset {
	if decl, err := w.origin(e); err == nil {
		return decl.Offset
	}
	return e.Offset
}

// abiType spells a type as the x86-64 calling convention passes it:
// qualifiers and typedefs are seen through; an integer, enum or bool is
// its size, and below 4 bytes its signedness too (the caller extends it
// to a register as its own type says); every pointer, array or
// function is "ptr"; a float is its size; a struct or union, passed by
// value, keeps its name and size. Two prototypes that spell the same
// take the same registers and stack slots with the same bits: a
// caller compiled against either passes the same values.
func (w *walker) abiType(off dwarf.Offset, depth int) string {
	if depth > maxTypeDepth {
		return "?"
	}
	e, err := w.entry(off)
	if err != nil {
		return "?"
	}
	size, _ := e.Val(dwarf.AttrByteSize).(int64)
	switch e.Tag {
	case dwarf.TagTypedef, dwarf.TagConstType, dwarf.TagVolatileType, dwarf.TagRestrictType, dwarf.TagAtomicType:
		if t, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
			return w.abiType(t, depth+1)
		}
		return "void"
	case dwarf.TagPointerType, dwarf.TagReferenceType, dwarf.TagArrayType, dwarf.TagSubroutineType:
		return "ptr"
	case dwarf.TagEnumerationType:
		if size >= 4 {
			return fmt.Sprintf("int%d", size)
		}
		return fmt.Sprintf("enum%d", size)
	case dwarf.TagBaseType:
		enc, _ := e.Val(dwarf.AttrEncoding).(int64)
		switch {
		case enc == dwarfEncodingFloat:
			return fmt.Sprintf("float%d", size)
		case size >= 4:
			return fmt.Sprintf("int%d", size)
		case enc == dwarfEncodingSigned || enc == dwarfEncodingSignedChar:
			return fmt.Sprintf("sint%d", size)
		}
		return fmt.Sprintf("uint%d", size)
	case dwarf.TagStructType, dwarf.TagUnionType:
		name, _ := e.Val(dwarf.AttrName).(string)
		return fmt.Sprintf("%v %s %d", e.Tag, printable(name), size)
	}
	return fmt.Sprintf("<%v>", e.Tag)
}

// DWARF base type encodings (DW_ATE_*) that abiType tells apart.
const (
	dwarfEncodingFloat      = 0x04
	dwarfEncodingSigned     = 0x05
	dwarfEncodingSignedChar = 0x06
)

// typeName spells a type by name, following at most maxTypeDepth
// modifiers: struct layouts are not compared, only names.
func (w *walker) typeName(off dwarf.Offset, depth int) string {
	if depth == 0 {
		if t, ok := w.types[off]; ok {
			return t
		}
		t := w.spellType(off, 0)
		w.types[off] = t
		return t
	}
	return w.spellType(off, depth)
}

func (w *walker) spellType(off dwarf.Offset, depth int) string {
	if depth > maxTypeDepth {
		return "..."
	}
	e, err := w.entry(off)
	if err != nil {
		return "?"
	}
	name, _ := e.Val(dwarf.AttrName).(string)
	if len(name) > maxName {
		name = name[:maxName]
	}
	name = printable(name)
	inner := func() string {
		if t, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
			return w.typeName(t, depth+1)
		}
		return "void"
	}
	switch e.Tag {
	case dwarf.TagBaseType, dwarf.TagTypedef, dwarf.TagUnspecifiedType:
		return name
	case dwarf.TagStructType:
		return "struct " + name
	case dwarf.TagUnionType:
		return "union " + name
	case dwarf.TagEnumerationType:
		return "enum " + name
	case dwarf.TagClassType:
		return "class " + name
	case dwarf.TagPointerType:
		return inner() + "*"
	case dwarf.TagReferenceType:
		return inner() + "&"
	case dwarf.TagConstType:
		return "const " + inner()
	case dwarf.TagVolatileType:
		return "volatile " + inner()
	case dwarf.TagRestrictType:
		return inner() + " restrict"
	case dwarf.TagAtomicType:
		return "_Atomic " + inner()
	case dwarf.TagArrayType:
		return inner() + "[]"
	case dwarf.TagSubroutineType:
		return inner() + " (*)()"
	}
	return fmt.Sprintf("<%v>", e.Tag)
}
