package objdiff

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// index records, per section, the named symbols defined there.
func (o *Object) index() {
	for i := 1; i < len(o.syms); i++ {
		s := &o.syms[i]
		if s.name == "" || s.pool || s.shndx == elf.SHN_UNDEF || s.shndx >= elf.SHN_LORESERVE {
			continue
		}
		switch s.typ {
		case elf.STT_FUNC, elf.STT_OBJECT, elf.STT_NOTYPE, elf.STT_TLS:
			sec := o.sections[s.shndx]
			sec.named = append(sec.named, s)
		}
	}
	for _, sec := range o.sections {
		// One symbol per start: the largest, then the first by name, so
		// the choice does not depend on symbol table order.
		slices.SortFunc(sec.named, func(a, b *symbol) int {
			if c := cmpUint(a.value, b.value); c != 0 {
				return c
			}
			if c := cmpUint(b.size, a.size); c != 0 {
				return c
			}
			if a.name < b.name {
				return -1
			} else if a.name > b.name {
				return 1
			}
			return 0
		})
		sec.named = slices.CompactFunc(sec.named, func(a, b *symbol) bool { return a.value == b.value })
	}
}

// symbolAt returns the named symbol covering offset p, or nil.
func (s *section) symbolAt(p int64) *symbol {
	if p < 0 {
		return nil
	}
	u := uint64(p)
	i, found := slices.BinarySearchFunc(s.named, u, func(n *symbol, v uint64) int { return cmpUint(n.value, v) })
	if !found {
		i--
	}
	if i < 0 {
		return nil
	}
	n := s.named[i]
	if u < n.value+n.size || n.size == 0 && u == n.value {
		return n
	}
	return nil
}

// findEntities collects the functions and variables to compare.
func (o *Object) findEntities() error {
	o.funcs = map[string]*entity{}
	o.data = map[string]*entity{}
	o.descs = map[string]*entity{}
	o.funcAt = map[location]string{}
	o.byBase = map[string][]string{}
	for i := 1; i < len(o.syms); i++ {
		s := &o.syms[i]
		var e *entity
		switch {
		case s.shndx == elf.SHN_COMMON && s.typ == elf.STT_OBJECT:
			e = &entity{sym: s, start: 0, end: s.size}
		case s.shndx == elf.SHN_UNDEF || s.shndx >= elf.SHN_LORESERVE || s.name == "":
			continue
		case s.typ == elf.STT_FUNC && o.sections[s.shndx].class == classCode:
			sec := o.sections[s.shndx]
			e = &entity{sym: s, sec: sec, start: s.value, end: s.value + s.size, fn: true}
			if s.size == 0 {
				// Unsized (hand-written) functions reach to the next
				// symbol or the end of their section.
				e.end = sec.size
				j, _ := slices.BinarySearchFunc(sec.named, s.value+1, func(n *symbol, v uint64) int { return cmpUint(n.value, v) })
				if j < len(sec.named) {
					e.end = sec.named[j].value
				}
			}
		case (s.typ == elf.STT_OBJECT || s.typ == elf.STT_TLS) && !s.pool &&
			(o.sections[s.shndx].class == classData || o.sections[s.shndx].class == classPool):
			e = &entity{sym: s, sec: o.sections[s.shndx], start: s.value, end: s.value + s.size}
		case s.typ == elf.STT_OBJECT && s.size > 0 && o.sections[s.shndx].name == dyndbgSection:
			e = &entity{sym: s, sec: o.sections[s.shndx], start: s.value, end: s.value + s.size, desc: true}
		default:
			continue
		}
		m := o.data
		switch {
		case e.fn:
			m = o.funcs
		case e.desc:
			m = o.descs
		}
		e.name = s.name
		for n := 2; m[e.name] != nil || o.funcs[e.name] != nil || o.data[e.name] != nil || o.descs[e.name] != nil; n++ {
			// Assembly may define a name twice; C cannot.
			e.name = fmt.Sprintf("%s#%d", s.name, n)
		}
		m[e.name] = e
		if e.fn {
			if l := (location{e.sec.idx, e.start}); o.funcAt[l] == "" {
				o.funcAt[l] = e.name
			}
			e.sec.funcs = append(e.sec.funcs, e)
			base := baseName(s.name)
			o.byBase[base] = append(o.byBase[base], e.name)
		}
	}
	for _, names := range o.byBase {
		slices.Sort(names)
	}
	// Comparing costs the bytes and relocations each entity covers.
	// Symbols may overlap (aliases), but not so much that the cost is no
	// longer bounded by the input.
	var bytes, relocs, allRelocs uint64
	for _, m := range []map[string]*entity{o.funcs, o.data} {
		for _, e := range m {
			if e.sec == nil {
				continue
			}
			if e.sec.data != nil {
				bytes += e.end - e.start
			}
			relocs += uint64(len(e.sec.relocsIn(e.start, e.end)))
		}
	}
	for _, s := range o.sections {
		allRelocs += uint64(len(s.relocs))
		slices.SortFunc(s.funcs, func(a, b *entity) int { return cmpUint(a.start, b.start) })
	}
	if bytes > overlapFactor*o.size+overlapSlack || relocs > overlapFactor*allRelocs+overlapSlack {
		return tooLarge("symbols overlap: they cover %d bytes and %d relocations of a %d-byte object", bytes, relocs, o.size)
	}
	return nil
}

// How much symbols, and inlined copies in debug info, may overlap: the
// bytes and relocations they cover, summed, may be this many times those
// of the object, plus the slack.
const (
	overlapFactor = 4
	overlapSlack  = 1 << 16
)

// resolveTargets describes the target of every relocation in a compared
// section, and records who refers to whom.
func (o *Object) resolveTargets() {
	// Anonymous areas are split into items at every offset something
	// points at, so one literal's description does not depend on its
	// neighbours.
	for _, src := range o.sections {
		if src.class == classMeta {
			continue
		}
		for i := range src.relocs {
			r := &src.relocs[i]
			s := &o.syms[r.sym]
			if r.sym == 0 || s.shndx == elf.SHN_UNDEF || s.shndx >= elf.SHN_LORESERVE {
				continue
			}
			if s.name != "" && s.typ != elf.STT_SECTION && !s.pool {
				continue
			}
			t := o.sections[s.shndx]
			// The byte referenced starts an item; literal falls back to
			// at when probe lies outside the section, and so does this.
			at, p := o.offsets(src, r)
			if p < 0 || uint64(p) >= t.size {
				p = at
			}
			if p >= 0 && uint64(p) <= t.size {
				t.bounds = append(t.bounds, uint64(p))
			}
		}
	}
	for i := 1; i < len(o.syms); i++ {
		s := &o.syms[i]
		if s.shndx != elf.SHN_UNDEF && s.shndx < elf.SHN_LORESERVE && s.typ != elf.STT_SECTION && s.typ != elf.STT_FILE {
			t := o.sections[s.shndx]
			t.bounds = append(t.bounds, min(s.value, t.size), min(s.value+s.size, t.size))
		}
	}
	for _, t := range o.sections {
		t.bounds = append(t.bounds, 0)
		slices.Sort(t.bounds)
		t.bounds = slices.Compact(t.bounds)
		if t.isStrings() {
			t.strStarts = []uint64{0}
			for i, c := range t.data {
				if c == 0 && i+1 < len(t.data) {
					t.strStarts = append(t.strStarts, uint64(i+1))
				}
			}
		}
	}

	items := map[location]string{}
	for _, src := range o.sections {
		if src.class == classMeta {
			continue
		}
		for i := range src.relocs {
			r := &src.relocs[i]
			r.target, r.ref = o.target(src, r, items)
			// A once flag is compared by its base name: gcc's numbers of
			// a unit's flags shift when a fix adds one, and the new code
			// gets fresh copies of those it uses anyway (onceFlags), so
			// the number says nothing about the code.
			if base, ok := localStaticBase(r.ref); ok && onceFlags[base] && strings.HasPrefix(r.target, r.ref) {
				r.target = base + ".N" + r.target[len(r.ref):]
			}
		}
	}

	refs := map[string]map[string]bool{}
	for _, m := range []map[string]*entity{o.funcs, o.data} {
		for _, e := range m {
			if e.sec == nil {
				continue
			}
			for _, r := range e.sec.relocsIn(e.start, e.end) {
				if r.ref != "" && r.ref != e.sym.name {
					if refs[r.ref] == nil {
						refs[r.ref] = map[string]bool{}
					}
					refs[r.ref][e.name] = true
				}
			}
		}
	}
	o.referrer = map[string][]string{}
	for name, set := range refs {
		for r := range set {
			o.referrer[name] = append(o.referrer[name], r)
		}
		slices.Sort(o.referrer[name])
	}
}

func (s *section) isStrings() bool {
	return s.data != nil && s.flags&elf.SHF_STRINGS != 0 && s.entsize <= 1
}

// offsets returns where a relocation against a section or unnamed symbol
// points into the symbol's section: at, the symbol plus addend, and
// probe, the byte actually referenced. For PC-relative references in code
// the addend is biased by the field width (lea .LC0(%rip) has addend -4),
// so probe adds it back.
func (o *Object) offsets(src *section, r *reloc) (at, probe int64) {
	s := &o.syms[r.sym]
	at = int64(s.value) + r.addend
	probe = at
	if src.class == classCode && pcRelative(r.typ) {
		probe += int64(relocWidth(r.typ))
	}
	return at, probe
}

// target describes what r points at, in terms that do not depend on
// layout, and names the symbol it resolves to if any. items caches the
// digests of anonymous items; a nil items asks for a shallow description
// (used inside those digests, so they do not recurse).
func (o *Object) target(src *section, r *reloc, items map[location]string) (desc, ref string) {
	if r.sym == 0 {
		return "absolute" + plus(r.addend), ""
	}
	s := &o.syms[r.sym]
	switch s.shndx {
	case elf.SHN_UNDEF:
		return "extern " + s.name + plus(r.addend), ""
	case elf.SHN_ABS:
		return fmt.Sprintf("absolute %s=%#x%s", s.name, s.value, plus(r.addend)), ""
	case elf.SHN_COMMON:
		return s.name + plus(r.addend), s.name
	}
	if s.name != "" && s.typ != elf.STT_SECTION && !s.pool {
		return s.name + plus(r.addend), s.name
	}
	t := o.sections[s.shndx]
	at, probe := o.offsets(src, r)
	for _, p := range []int64{probe, at} {
		if n := t.symbolAt(p); n != nil {
			return n.name + plus(at-int64(n.value)), n.name
		}
	}
	return o.literal(t, at, probe, items), ""
}

// literal describes an anonymous place in t: a string by its contents, a
// merged constant by its bytes, anything else by a digest of the item
// around it.
func (o *Object) literal(t *section, at, probe int64, items map[location]string) string {
	if t.size == 0 {
		return fmt.Sprintf("%s(empty)%s", t.name, plus(at))
	}
	p := probe
	if p < 0 || uint64(p) >= t.size {
		p = at
	}
	p = max(0, min(p, int64(t.size)-1))
	u := uint64(p)
	switch {
	case t.isStrings():
		i, found := slices.BinarySearch(t.strStarts, u)
		if !found {
			i--
		}
		start := t.strStarts[i]
		end := uint64(len(t.data))
		if j := bytes.IndexByte(t.data[start:], 0); j >= 0 {
			end = start + uint64(j)
		}
		return quoteLiteral(t.data[start:end]) + plus(at-int64(start))
	case t.data != nil && t.flags&elf.SHF_MERGE != 0 && t.entsize > 0:
		es := min(t.entsize, t.size)
		start := u - u%es
		end := min(start+es, t.size)
		return "const " + hexLiteral(t.data[start:end]) + plus(at-int64(start))
	}
	i, found := slices.BinarySearch(t.bounds, u)
	if !found {
		i--
	}
	start, end := t.bounds[i], t.size
	if i+1 < len(t.bounds) {
		end = t.bounds[i+1]
	}
	if items == nil {
		return t.name + plus(at)
	}
	l := location{t.idx, start}
	d, ok := items[l]
	if !ok {
		h := sha256.New()
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], end-start)
		h.Write(n[:])
		img := o.image(t, start, end, func(r *reloc) string { d, _ := o.target(t, r, nil); return d })
		h.Write(img.bytes)
		for _, r := range img.relocs {
			fmt.Fprintf(h, "\x00%d %d %s", r.off, r.typ, r.target)
		}
		kind := "anon"
		if t.flags&elf.SHF_WRITE != 0 {
			kind = "anon writable"
		}
		d = fmt.Sprintf("%s{%x}", kind, h.Sum(nil)[:8])
		items[l] = d
	}
	return d + plus(at-int64(start))
}

func plus(d int64) string {
	if d == 0 {
		return ""
	}
	return fmt.Sprintf("%+d", d)
}

func quoteLiteral(b []byte) string {
	if len(b) <= maxStrKey {
		return strconv.Quote(string(b))
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%s...(%d bytes, sha256 %x)", strconv.Quote(string(b[:64])), len(b), sum[:8])
}

func hexLiteral(b []byte) string {
	if len(b) <= 32 {
		return hex.EncodeToString(b)
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("(%d bytes, sha256 %x)", len(b), sum[:8])
}

// relocsIn returns the relocations whose offset lies in [start, end).
func (s *section) relocsIn(start, end uint64) []reloc {
	i, _ := slices.BinarySearchFunc(s.relocs, start, func(r reloc, v uint64) int { return cmpUint(r.off, v) })
	j, _ := slices.BinarySearchFunc(s.relocs, end, func(r reloc, v uint64) int { return cmpUint(r.off, v) })
	if j < i {
		j = i
	}
	return s.relocs[i:j]
}

// image is a layout-independent picture of a range of a section: its
// bytes with every relocated field zeroed, and what each relocation
// points at.
type image struct {
	size   uint64
	bytes  []byte // nil when the range is all zero (SHT_NOBITS, SHN_COMMON)
	relocs []imageReloc
}

type imageReloc struct {
	off    uint64 // from the start of the range
	typ    elf.R_X86_64
	target string
}

func (o *Object) image(s *section, start, end uint64, targetOf func(*reloc) string) image {
	img := image{size: end - start}
	if s == nil {
		return img
	}
	if s.data != nil {
		img.bytes = slices.Clone(s.data[start:end])
		// A field that starts up to 7 bytes before the range may reach
		// into it.
		from := start - min(start, 7)
		for _, r := range s.relocsIn(from, end) {
			lo, hi := max(r.off, start), min(r.off+relocWidth(r.typ), end)
			for p := lo; p < hi; p++ {
				img.bytes[p-start] = 0
			}
		}
	}
	for _, r := range s.relocsIn(start, end) {
		img.relocs = append(img.relocs, imageReloc{off: r.off - start, typ: r.typ, target: targetOf(&r)})
	}
	return img
}

func storedTarget(r *reloc) string { return r.target }

func (o *Object) entityImage(e *entity) image {
	return entityView(e, o.image(e.sec, e.start, e.end, storedTarget))
}

// entityView is the image of an entity as it is compared: a dynamic
// debug descriptor's line number is left out (dyndbg.go).
func entityView(e *entity, img image) image {
	if e.desc {
		maskLine(&img)
	}
	return img
}
