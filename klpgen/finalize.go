package klpgen

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
)

// moduleSigMagic ends a module with an appended signature
// (MODULE_SIG_STRING in the kernel's include/linux/module_signature.h).
const moduleSigMagic = "~Module signature appended~\n"

// Finalize turns a module linked by kbuild from Generate's output into a
// livepatch module the kernel loads: each placeholder symbol
// (PlaceholderPrefix) becomes the livepatch symbol ".klp.sym.OBJ.NAME,POS"
// with section index SHN_LIVEPATCH, and every relocation against one
// moves from its .rela.X section into a new ".klp.rela.OBJ.X" section
// (".klp.rela.SECTION.X" for a symbol with a Section of its own, see
// KLPSymbol)
// (SHT_RELA, flags SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH,
// sh_link the symbol table, sh_info X), which livepatch applies once it
// has resolved the symbols through kallsyms; .rela.X keeps the rest.
//
// The rewrite appends: new string tables, the relocation sections and a
// new section header table go at the end of the file; only the symbol
// table (names and section indices of the placeholders) and the ELF
// header (e_shoff, e_shnum) change in place. Section and symbol indices
// do not change, nor does any other section's contents. A module without
// placeholders is returned unchanged. A signed module is refused
// (ErrSigned): finalize, then sign. Strip debug information before
// Finalize, not after (see the package documentation).
func Finalize(ko []byte) ([]byte, error) {
	out, err := finalize(ko)
	if err != nil {
		return nil, fmt.Errorf("klpgen: finalize: %w", err)
	}
	return out, nil
}

// klpRelaSection is a livepatch relocation section to create.
type klpRelaSection struct {
	name   string
	target int
	data   []byte
}

// shdrField offsets in an Elf64_Shdr.
const (
	shName   = 0
	shFlags  = 8
	shOffset = 24
	shSize   = 32
)

func finalize(ko []byte) ([]byte, error) {
	if bytes.HasSuffix(ko, []byte(moduleSigMagic)) {
		return nil, ErrSigned
	}
	f, err := openELF(ko)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if le.Uint16(ko[ehShentsize:]) != shdrSize {
		return nil, malformed("section header size %d", le.Uint16(ko[ehShentsize:]))
	}
	shoff := le.Uint64(ko[ehShoff:])
	shnum := int(le.Uint16(ko[ehShnum:]))
	shstrndx := int(le.Uint16(ko[ehShstrndx:]))
	if shnum != len(f.Sections) || shnum == 0 || shstrndx == 0 || shstrndx >= shnum {
		return nil, malformed("%d sections (header says %d), names in section %d", len(f.Sections), shnum, shstrndx)
	}
	if shoff > uint64(len(ko)) || uint64(shnum)*shdrSize > uint64(len(ko))-shoff {
		return nil, malformed("section header table outside the file")
	}
	if f.Sections[shstrndx].Type != elf.SHT_STRTAB {
		return nil, malformed("section names are not in a string table")
	}
	st, err := readSymtab(ko, f)
	if err != nil {
		return nil, err
	}
	if st.strtab == shstrndx {
		return nil, malformed("symbol and section names share a string table")
	}

	// Find the placeholders and give them their livepatch names.
	strtab := slices.Clone(st.strings)
	if len(strtab) == 0 || strtab[len(strtab)-1] != 0 {
		strtab = append(strtab, 0)
	}
	klp := map[uint32]KLPSymbol{} // symbol index -> livepatch symbol
	newName := map[uint32]uint32{}
	for i := range st.syms {
		s := &st.syms[i]
		k, ok, err := parsePlaceholder(s.name)
		if !ok {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("symbol %d: %w", i, err)
		}
		if s.shndx != uint16(elf.SHN_UNDEF) || s.bind() == elf.STB_LOCAL {
			return nil, malformed("placeholder %s is not an undefined global symbol", s.name)
		}
		klp[uint32(i)] = k
		newName[uint32(i)] = uint32(len(strtab))
		strtab = append(append(strtab, k.String()...), 0)
	}
	if len(klp) == 0 {
		return slices.Clone(ko), nil
	}

	// Split every relocation section against the symbol table.
	shstrtab, err := sectionBytes(ko, f.Sections[shstrndx])
	if err != nil {
		return nil, err
	}
	shstrtab = slices.Clone(shstrtab)
	if len(shstrtab) == 0 || shstrtab[len(shstrtab)-1] != 0 {
		shstrtab = append(shstrtab, 0)
	}
	kept := map[int][]byte{} // relocation section -> the relocations it keeps
	var klpSecs []klpRelaSection
	for i, s := range f.Sections {
		if (s.Type != elf.SHT_RELA && s.Type != elf.SHT_REL) || int(s.Link) != st.index {
			continue
		}
		b, err := sectionBytes(ko, s)
		if err != nil {
			return nil, err
		}
		if s.Type == elf.SHT_REL {
			if refersTo(b, 16, klp) {
				return nil, malformed("SHT_REL section %s refers to a placeholder (x86-64 modules use SHT_RELA)", s.Name)
			}
			continue
		}
		rs, err := parseRelas(b, s.Name)
		if err != nil {
			return nil, err
		}
		var keep []byte
		byObj := map[string][]byte{}
		var objs []string
		for _, r := range rs {
			k, isKLP := klp[r.sym]
			if !isKLP {
				keep = appendRela(keep, r)
				continue
			}
			obj := k.section()
			if _, seen := byObj[obj]; !seen {
				objs = append(objs, obj)
			}
			byObj[obj] = appendRela(byObj[obj], r)
		}
		if len(objs) == 0 {
			continue
		}
		if s.Flags&shfRelaLivepatch != 0 {
			return nil, malformed("livepatch relocation section %s refers to a placeholder", s.Name)
		}
		if s.Info == 0 || int(s.Info) >= len(f.Sections) {
			return nil, malformed("relocation section %s applies to section %d", s.Name, s.Info)
		}
		target := f.Sections[s.Info]
		if target.Flags&elf.SHF_ALLOC == 0 {
			// The loader applies relocations only to allocated sections.
			return nil, malformed("section %s refers to a placeholder but is not loaded", target.Name)
		}
		kept[i] = keep
		for _, obj := range objs {
			klpSecs = append(klpSecs, klpRelaSection{
				name: ".klp.rela." + obj + "." + target.Name, target: int(s.Info), data: byObj[obj],
			})
		}
	}

	// Lay out the new file: the old one (minus its section header table
	// when that is last), then the appended parts.
	out := slices.Clone(ko)
	if shoff+uint64(shnum)*shdrSize == uint64(len(ko)) && !overlaps(f, shoff) {
		out = out[:shoff]
	}
	appendAligned := func(b []byte, align int) uint64 {
		for len(out)%align != 0 {
			out = append(out, 0)
		}
		off := uint64(len(out))
		out = append(out, b...)
		return off
	}
	headers := slices.Clone(ko[shoff : shoff+uint64(shnum)*shdrSize])
	setSection := func(i int, off, size uint64) {
		h := headers[i*shdrSize:]
		le.PutUint64(h[shOffset:], off)
		le.PutUint64(h[shSize:], size)
	}
	for _, i := range slices.Sorted(maps.Keys(kept)) {
		setSection(i, appendAligned(kept[i], 8), uint64(len(kept[i])))
	}
	for _, k := range klpSecs {
		var h [shdrSize]byte
		le.PutUint32(h[shName:], uint32(len(shstrtab)))
		shstrtab = append(append(shstrtab, k.name...), 0)
		le.PutUint32(h[4:], uint32(elf.SHT_RELA))
		le.PutUint64(h[shFlags:], uint64(elf.SHF_ALLOC|elf.SHF_INFO_LINK|shfRelaLivepatch))
		le.PutUint64(h[shOffset:], appendAligned(k.data, 8))
		le.PutUint64(h[shSize:], uint64(len(k.data)))
		le.PutUint32(h[40:], uint32(st.index))
		le.PutUint32(h[44:], uint32(k.target))
		le.PutUint64(h[48:], 8)
		le.PutUint64(h[56:], relaSize)
		headers = append(headers, h[:]...)
	}
	if len(headers)/shdrSize >= int(elf.SHN_LORESERVE) {
		return nil, malformed("too many sections")
	}
	setSection(st.strtab, appendAligned(strtab, 1), uint64(len(strtab)))
	setSection(shstrndx, appendAligned(shstrtab, 1), uint64(len(shstrtab)))
	newShoff := appendAligned(headers, 8)

	// Rename the placeholders in the symbol table, in place.
	symtab := f.Sections[st.index]
	for i, name := range newName {
		e := out[symtab.Offset+uint64(i)*symSize:]
		le.PutUint32(e[0:], name)
		le.PutUint16(e[6:], shnLivepatch)
	}
	le.PutUint64(out[ehShoff:], newShoff)
	le.PutUint16(out[ehShnum:], uint16(len(headers)/shdrSize))
	return out, nil
}

// refersTo reports whether relocation entries of size entSize refer to
// one of the symbols in syms.
func refersTo(b []byte, entSize int, syms map[uint32]KLPSymbol) bool {
	for i := 0; i+entSize <= len(b); i += entSize {
		if _, ok := syms[uint32(binary.LittleEndian.Uint64(b[i+8:])>>32)]; ok {
			return true
		}
	}
	return false
}

// overlaps reports whether a section's contents reach past off.
func overlaps(f *elf.File, off uint64) bool {
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS && s.FileSize > 0 && s.Offset+s.FileSize > off {
			return true
		}
	}
	return false
}
