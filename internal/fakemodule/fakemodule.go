// Package fakemodule builds small relocatable ELF64 files shaped like
// Linux kernel livepatch modules, written by hand with encoding/binary (no
// compiler or linker). They are fakes: their code is a few placeholder
// instructions, and the real kernel would refuse or misrun them. Two kinds
// of user load them: tests of the module info reader, the bundle format,
// the store and the agent; and the simulated kernel (package kmod/sim),
// which reads their .modinfo and livepatch tables as the real kernel
// would, for `splicefleet demo` and the fleet tests. A real module for a
// real kernel comes from `create --source` or `create --patch`.
//
// A built module has the sections kbuild would give a livepatch module:
// .text with one tiny replacement function per patched function, .data with
// a klp_func-like table whose old_name/new_func pointers are expressed as
// .rela.data relocations, .rodata.str1.1 holding the old names, .modinfo,
// .gnu.linkonce.this_module (a zeroed struct module with the name at offset
// 24), and the symbol and string tables.
package fakemodule

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"sort"
)

// DefaultVermagic is the vermagic used when Options.Vermagic is empty.
const DefaultVermagic = "6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions "

// Options describes the module to build. The zero value builds a plain
// (non-livepatch) x86_64 module named "testmod".
type Options struct {
	Name      string            // module name (.modinfo name= and struct module name); default "testmod"
	Vermagic  string            // default DefaultVermagic
	Livepatch bool              // adds livepatch=Y
	License   string            // default "GPL"
	Functions []string          // replaced functions: klp_func old_name strings + "livepatch_<name>" in .text
	Extra     map[string]string // extra modinfo keys, written in sorted order before the standard ones
	Padding   int               // extra zero bytes in a .data.pad section, to reach a given file size
	Machine   elf.Machine       // default EM_X86_64
}

const (
	klpFuncSize    = 64    // bytes per klp_func-like entry in .data
	funcSize       = 16    // bytes per replacement function in .text
	thisModuleSize = 0x380 // sizeof(struct module) on 6.1 x86_64
	moduleNameOff  = 24    // offsetof(struct module, name) on 64-bit
	moduleNameLen  = 56    // MODULE_NAME_LEN on 64-bit
)

// section is one section being laid out.
type section struct {
	name    string
	typ     elf.SectionType
	flags   elf.SectionFlag
	data    []byte
	link    uint32
	info    uint32
	align   uint64
	entsize uint64
	nameOff uint32
	offset  uint64
}

// Build returns the bytes of a relocatable ELF64 little-endian kernel
// module described by o.
func Build(o Options) []byte {
	if o.Name == "" {
		o.Name = "testmod"
	}
	if o.Vermagic == "" {
		o.Vermagic = DefaultVermagic
	}
	if o.License == "" {
		o.License = "GPL"
	}
	if o.Machine == 0 {
		o.Machine = elf.EM_X86_64
	}
	le := binary.LittleEndian

	// Section indexes, fixed so relocations and symbols can refer to them.
	const (
		secText = 1 + iota
		secData
		secRelaData
		secRodataStr
		secModinfo
		secThisModule
		secSymtab
		secStrtab
		secShstrtab
		// .data.pad follows when o.Padding > 0.
	)

	// .text: one small function per patched function.
	ret := []byte{0xc3} // x86 ret, then int3 padding
	fill := byte(0xcc)
	if o.Machine == elf.EM_AARCH64 {
		ret = []byte{0xc0, 0x03, 0x5f, 0xd6} // ret
		fill = 0
	}
	text := make([]byte, 0, max(len(o.Functions), 1)*funcSize)
	for range max(len(o.Functions), 1) {
		fn := bytes.Repeat([]byte{fill}, funcSize)
		copy(fn, ret)
		text = append(text, fn...)
	}

	// .rodata.str1.1: the old names, NUL-terminated.
	var rodata []byte
	nameOffs := make([]uint64, len(o.Functions))
	for i, fn := range o.Functions {
		nameOffs[i] = uint64(len(rodata))
		rodata = append(rodata, fn...)
		rodata = append(rodata, 0)
	}

	// .data: klp_func-like table plus an all-zero terminator entry.
	data := make([]byte, (len(o.Functions)+1)*klpFuncSize)

	// .strtab and .symtab.
	strtab := []byte{0}
	addStr := func(s string) uint32 {
		off := uint32(len(strtab))
		strtab = append(strtab, s...)
		strtab = append(strtab, 0)
		return off
	}
	var symtab []byte
	addSym := func(name uint32, bind elf.SymBind, typ elf.SymType, shndx uint16, value, size uint64) uint32 {
		idx := uint32(len(symtab) / 24)
		var b [24]byte
		le.PutUint32(b[0:], name)
		b[4] = byte(bind)<<4 | byte(typ)&0xf
		le.PutUint16(b[6:], shndx)
		le.PutUint64(b[8:], value)
		le.PutUint64(b[16:], size)
		symtab = append(symtab, b[:]...)
		return idx
	}
	addSym(0, elf.STB_LOCAL, elf.STT_NOTYPE, 0, 0, 0)
	symText := addSym(0, elf.STB_LOCAL, elf.STT_SECTION, secText, 0, 0)
	addSym(0, elf.STB_LOCAL, elf.STT_SECTION, secData, 0, 0)
	symRodata := addSym(0, elf.STB_LOCAL, elf.STT_SECTION, secRodataStr, 0, 0)
	funcSyms := make([]uint32, len(o.Functions))
	for i, fn := range o.Functions {
		funcSyms[i] = addSym(addStr("livepatch_"+fn), elf.STB_LOCAL, elf.STT_FUNC, secText, uint64(i*funcSize), funcSize)
	}
	addSym(addStr("livepatch_funcs"), elf.STB_LOCAL, elf.STT_OBJECT, secData, 0, uint64(len(data)))
	firstGlobal := uint32(len(symtab) / 24)
	addSym(addStr("__this_module"), elf.STB_GLOBAL, elf.STT_OBJECT, secThisModule, 0, thisModuleSize)

	// .rela.data: old_name -> string, new_func -> function. Even entries
	// use the function symbol, odd ones ".text + offset" as GCC does for
	// static functions, so both shapes are exercised.
	abs64 := uint32(elf.R_X86_64_64)
	if o.Machine == elf.EM_AARCH64 {
		abs64 = uint32(elf.R_AARCH64_ABS64)
	}
	var rela []byte
	addRela := func(off uint64, sym uint32, addend int64) {
		var b [24]byte
		le.PutUint64(b[0:], off)
		le.PutUint64(b[8:], uint64(sym)<<32|uint64(abs64))
		le.PutUint64(b[16:], uint64(addend))
		rela = append(rela, b[:]...)
	}
	for i := range o.Functions {
		base := uint64(i * klpFuncSize)
		addRela(base, symRodata, int64(nameOffs[i]))
		if i%2 == 0 {
			addRela(base+8, funcSyms[i], 0)
		} else {
			addRela(base+8, symText, int64(i*funcSize))
		}
	}

	// .modinfo, in the order modpost and the compiler produce it.
	var modinfo []byte
	addInfo := func(k, v string) {
		modinfo = append(modinfo, k...)
		modinfo = append(modinfo, '=')
		modinfo = append(modinfo, v...)
		modinfo = append(modinfo, 0)
	}
	keys := make([]string, 0, len(o.Extra))
	for k := range o.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		addInfo(k, o.Extra[k])
	}
	if o.Livepatch {
		addInfo("livepatch", "Y")
	}
	addInfo("license", o.License)
	addInfo("depends", "")
	addInfo("name", o.Name)
	addInfo("vermagic", o.Vermagic)

	// .gnu.linkonce.this_module: struct module with only the name set.
	thisModule := make([]byte, thisModuleSize)
	copy(thisModule[moduleNameOff:moduleNameOff+moduleNameLen-1], o.Name)

	secs := []*section{
		{}, // SHN_UNDEF
		{name: ".text", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, data: text, align: 16},
		{name: ".data", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, data: data, align: 32},
		{name: ".rela.data", typ: elf.SHT_RELA, flags: elf.SHF_INFO_LINK, data: rela, link: secSymtab, info: secData, align: 8, entsize: 24},
		{name: ".rodata.str1.1", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_MERGE | elf.SHF_STRINGS, data: rodata, align: 1, entsize: 1},
		{name: ".modinfo", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, data: modinfo, align: 1},
		{name: ".gnu.linkonce.this_module", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, data: thisModule, align: 64},
		{name: ".symtab", typ: elf.SHT_SYMTAB, data: symtab, link: secStrtab, info: firstGlobal, align: 8, entsize: 24},
		{name: ".strtab", typ: elf.SHT_STRTAB, data: strtab, align: 1},
		{name: ".shstrtab", typ: elf.SHT_STRTAB, align: 1}, // filled below
	}
	if o.Padding > 0 {
		secs = append(secs, &section{name: ".data.pad", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, data: make([]byte, o.Padding), align: 8})
	}

	shstrtab := []byte{0}
	for _, s := range secs[1:] {
		s.nameOff = uint32(len(shstrtab))
		shstrtab = append(shstrtab, s.name...)
		shstrtab = append(shstrtab, 0)
	}
	secs[secShstrtab].data = shstrtab

	// Layout: ELF header, section contents, section header table.
	const ehdrSize, shdrSize = 64, 64
	off := uint64(ehdrSize)
	for _, s := range secs[1:] {
		if s.align > 1 {
			off = (off + s.align - 1) &^ (s.align - 1)
		}
		s.offset = off
		off += uint64(len(s.data))
	}
	shoff := (off + 7) &^ 7
	out := make([]byte, shoff+uint64(len(secs))*shdrSize)

	// ELF header.
	copy(out[0:], elf.ELFMAG)
	out[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	out[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	out[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	out[elf.EI_OSABI] = byte(elf.ELFOSABI_NONE)
	le.PutUint16(out[16:], uint16(elf.ET_REL))
	le.PutUint16(out[18:], uint16(o.Machine))
	le.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	// e_entry and e_phoff stay 0.
	le.PutUint64(out[40:], shoff)
	// e_flags 0.
	le.PutUint16(out[52:], ehdrSize)
	// e_phentsize, e_phnum 0.
	le.PutUint16(out[58:], shdrSize)
	le.PutUint16(out[60:], uint16(len(secs)))
	le.PutUint16(out[62:], secShstrtab)

	for i, s := range secs {
		if i == 0 {
			continue // the null section header is all zeros
		}
		copy(out[s.offset:], s.data)
		h := out[shoff+uint64(i)*shdrSize:]
		le.PutUint32(h[0:], s.nameOff)
		le.PutUint32(h[4:], uint32(s.typ))
		le.PutUint64(h[8:], uint64(s.flags))
		// sh_addr 0 in a relocatable file.
		le.PutUint64(h[24:], s.offset)
		le.PutUint64(h[32:], uint64(len(s.data)))
		le.PutUint32(h[40:], s.link)
		le.PutUint32(h[44:], s.info)
		le.PutUint64(h[48:], s.align)
		le.PutUint64(h[56:], s.entsize)
	}
	return out
}
