package klpgen

import (
	"bytes"
	"debug/elf"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// entryTable is a kernel table of fixed-size entries, each about one
// instruction, that the module loader registers for a module's own code
// (Linux 6.1: module_bug_finalize for __bug_table; the module's sorted
// extable, searched by search_module_extables, for __ex_table). The
// entries of the copied functions are copied with them, their
// relocations re-targeted to the copies, so a WARN in the new code warns
// and a user access in it that faults is fixed up, as in the old code.
type entryTable struct {
	size uint64 // bytes per entry
	key  uint64 // offset of the relocation to the entry's instruction
	// keyed tables name a static key or call key the kernel looks up
	// when it registers the entry: it must not be a module's.
	keyed bool
	// siteLen, when not 0, is the offset of the byte that says how long
	// the instruction is, which the kernel rewrites when it loads the
	// module (checkSite).
	siteLen uint64
}

// entryTables are the tables copied entry by entry (x86-64): struct
// bug_entry with relative pointers and BUGVERBOSE (address, file, line,
// flags) and struct exception_table_entry (insn, fixup, data).
var entryTables = map[string]entryTable{
	"__bug_table": {size: 12, key: 0},
	"__ex_table":  {size: 12, key: 0},
	// struct jump_entry (code, target, key) and struct static_call_site
	// (addr, key): jump_label_add_module and static_call_add_module
	// register them when the module comes, after the module loader
	// applied its vmlinux livepatch relocations (kernel/module/main.c
	// applies .klp.rela.vmlinux.* sections with the others), so a key of
	// vmlinux works, exported or not; a key of a module is resolved only
	// when that module loads, too late. Such an entry is refused, but
	// for two that can be left out: a static call site (the call goes
	// through the key's trampoline, which static_call_update keeps
	// current) and a tracepoint's branch compiled off (it stays off: the
	// replaced code emits no events of that tracepoint).
	"__jump_table":       {size: 16, key: 0, keyed: true},
	".static_call_sites": {size: 8, key: 0, keyed: true},
	// struct paravirt_patch_site (instr, type, len, and the clobbers
	// _paravirt_alt writes, aligned to 8): apply_paravirt
	// (arch/x86/kernel/alternative.c) rewrites each site for the
	// hypervisor, or bare metal, the kernel runs on, for a module's own
	// sites in module_finalize (arch/x86/kernel/module.c), after its
	// relocations, as it does the alternatives (alternatives.go).
	".parainstructions": {size: 16, key: 0, siteLen: 9},
}

// x86 no-ops a static branch site is compiled to when its branch is off
// by default (arch_static_branch: a 5-byte NOP, or the 2-byte one objtool
// may shorten it to).
var (
	nop5 = []byte{0x0f, 0x1f, 0x44, 0x00, 0x00}
	nop2 = []byte{0x66, 0x90}
)

// siteIsNop reports whether the instruction a jump entry names (the
// relocation at the table's key offset) is a no-op in the object: the
// branch as compiled, off. A tracepoint's branch is off until someone
// enables the event; left without its entry, the site stays off.
func (g *generator) siteIsNop(rs []rela, t entryTable) bool {
	for _, r := range rs {
		if r.off%t.size != t.key || r.sym == 0 || int(r.sym) >= len(g.st.syms) {
			continue
		}
		sym := &g.st.syms[r.sym]
		if !sym.defined() || int(sym.shndx) >= len(g.f.Sections) || r.addend < 0 {
			return false
		}
		code, err := sectionBytes(g.data, g.f.Sections[sym.shndx])
		if err != nil {
			return false
		}
		at := sym.value + uint64(r.addend)
		if at > uint64(len(code)) {
			return false
		}
		site := code[at:]
		return bytes.HasPrefix(site, nop5) || bytes.HasPrefix(site, nop2)
	}
	return false
}

// table reads a table section of the patched object: its bytes and
// its relocations. ok is false for a table without relocations, which
// points at nothing the module copies.
func (g *generator) table(sec int) (data []byte, rs []rela, ok bool, err error) {
	ri, ok := g.relaOf[sec]
	if !ok {
		return nil, nil, false, nil
	}
	if data, err = sectionBytes(g.data, g.f.Sections[sec]); err != nil {
		return nil, nil, false, err
	}
	if rs, err = g.relas(ri); err != nil {
		return nil, nil, false, err
	}
	return data, rs, true, nil
}

// copyEntryTables copies, for every entry table of the object, the
// entries whose instruction lies in copied code. A table whose size or
// relocations do not have the layout is not copied (and refused by
// checkReferences when copied code has entries in it); an entry of
// copied code whose other relocations cannot be resolved is refused.
func (g *generator) copyEntryTables() error {
	for i, s := range g.f.Sections {
		t, ok := entryTables[s.Name]
		if !ok {
			continue
		}
		data, rs, ok, err := g.table(i)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		byEntry := map[uint64][]rela{}
		owners := map[uint64]*function{}
		keys := 0
		for _, r := range rs {
			e := r.off / t.size
			byEntry[e] = append(byEntry[e], r)
			if r.off%t.size == t.key {
				owners[e] = g.codeTarget(r)
				keys++
			}
		}
		if n := uint64(len(data)); n%t.size != 0 || uint64(keys) != n/t.size {
			// Not the layout this generator knows: left to
			// checkReferences, which refuses it if copied code has an
			// entry.
			continue
		}
		out := &outSection{name: s.Name, typ: elf.SHT_PROGBITS, flags: s.Flags &^ elf.SHF_GROUP, align: s.Addralign, entsize: s.Entsize}
		for _, e := range slices.Sorted(maps.Keys(owners)) {
			fn := owners[e]
			if fn == nil {
				continue
			}
			base := uint64(len(out.data))
			relas, dropped, err := g.entryRelas(i, s.Name, t, fn, byEntry[e], base)
			if err != nil {
				return err
			}
			if dropped {
				continue
			}
			if t.siteLen != 0 {
				if err := g.checkSite(fn, s.Name, keyRela(byEntry[e], t), uint64(data[e*t.size+t.siteLen])); err != nil {
					return err
				}
			}
			out.data = append(out.data, data[e*t.size:(e+1)*t.size]...)
			out.relas = append(out.relas, relas...)
		}
		g.tables[i] = true
		if len(out.data) > 0 {
			out.size = uint64(len(out.data))
			g.w.addSection(out)
		}
	}
	return nil
}

// entryRelas resolves the relocations rs of one entry of table name
// (section index i), copied for fn at base in the module's table. An
// entry of a module key is refused, or left out (dropped) where that is
// safe, with a warning: see entryTables.
func (g *generator) entryRelas(i int, name string, t entryTable, fn *function, rs []rela, base uint64) ([]outRela, bool, error) {
	var relas []outRela
	for _, r := range rs {
		sym, addend, err := g.resolve(copyJob{src: i, owner: fn}, r)
		if err != nil {
			return nil, false, err
		}
		if k, ok, _ := parsePlaceholder(sym.name); t.keyed && ok && k.Object != "vmlinux" {
			if name == ".static_call_sites" {
				// Unregistered, the site keeps the call to the
				// key's trampoline that the compiler emitted,
				// and static_call_update retargets the
				// trampoline too: the call goes where the
				// module's own calls go, one jump later.
				g.warnings = append(g.warnings, fmt.Sprintf("function %s: its static call through %s of module %s goes through the trampoline: "+
					"the kernel registers the livepatch module's call sites when it loads, before it resolves %s's symbols", fn.name, k.Name, k.Object, k.Object))
				return nil, true, nil
			}
			if name == "__jump_table" && strings.HasPrefix(k.Name, "__tracepoint_") && g.siteIsNop(rs, t) {
				g.warnings = append(g.warnings, fmt.Sprintf("function %s: tracepoint %s of module %s stays off in the new code while the bundle is applied: "+
					"the kernel registers the livepatch module's jump entries when it loads, before it resolves %s's symbols, so the entry is left out and the site keeps its compiled-in no-op (no events from the replaced code)",
					fn.name, strings.TrimPrefix(k.Name, "__tracepoint_"), k.Object, k.Object))
				return nil, true, nil
			}
			return nil, false, &UnsupportedError{Function: fn.name, Section: name,
				Reason: fmt.Sprintf("its entry names %s of module %s, which the kernel would look up when it registers the entry, before it resolves that module's symbols", k.Name, k.Object)}
		}
		relas = append(relas, outRela{off: base + r.off%t.size, typ: r.typ, sym: sym, addend: addend})
	}
	return relas, false, nil
}

// keyRela is the relocation of an entry that names its instruction.
func keyRela(rs []rela, t entryTable) rela {
	for _, r := range rs {
		if r.off%t.size == t.key {
			return r
		}
	}
	return rela{}
}
