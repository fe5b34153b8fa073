package klpgen

import "debug/elf"

// ORC entry sizes on x86-64: .orc_unwind_ip holds one 32-bit
// PC-relative address per entry, .orc_unwind the parallel 6-byte
// struct orc_entry.
const (
	orcIPSize    = 4
	orcEntrySize = 6
)

// copyORC copies the ORC unwind entries of the copied code, so the
// kernel's ORC unwinder (and with it livepatch's reliable stack checks)
// can walk through the new functions as it can through the old ones.
// The entries describe the code byte for byte, and the code is copied
// byte for byte. The two tables are parallel arrays; the module loader
// sorts them (unwind_module_init), and ld concatenates the stub's tables
// and these in the same order.
func (g *generator) copyORC() error {
	ipSec, orcSec := -1, -1
	for i, s := range g.f.Sections {
		switch s.Name {
		case ".orc_unwind_ip":
			if ipSec >= 0 {
				return malformed("two .orc_unwind_ip sections")
			}
			ipSec = i
		case ".orc_unwind":
			if orcSec >= 0 {
				return malformed("two .orc_unwind sections")
			}
			orcSec = i
		}
	}
	if ipSec < 0 && orcSec < 0 {
		return nil
	}
	if ipSec < 0 || orcSec < 0 {
		return malformed("an ORC table without its parallel table")
	}
	ip, err := sectionBytes(g.data, g.f.Sections[ipSec])
	if err != nil {
		return err
	}
	orc, err := sectionBytes(g.data, g.f.Sections[orcSec])
	if err != nil {
		return err
	}
	n := len(ip) / orcIPSize
	if len(ip)%orcIPSize != 0 || len(orc) != n*orcEntrySize {
		return malformed("ORC tables of %d and %d bytes are not parallel", len(ip), len(orc))
	}
	ri, ok := g.relaOf[ipSec]
	if !ok {
		if n == 0 {
			return nil
		}
		return malformed(".orc_unwind_ip has no relocations")
	}
	rs, err := g.relas(ri)
	if err != nil {
		return err
	}
	var outIP, outORC []byte
	var relas []outRela
	seen := map[uint64]bool{}
	for _, r := range rs {
		if r.off%orcIPSize != 0 || r.off/orcIPSize >= uint64(n) || seen[r.off] ||
			elf.R_X86_64(r.typ) != elf.R_X86_64_PC32 {
			return malformed(".orc_unwind_ip relocation at %#x (type %v)", r.off, elf.R_X86_64(r.typ))
		}
		seen[r.off] = true
		if g.codeTarget(r) == nil {
			continue
		}
		s := &g.st.syms[r.sym]
		addend := r.addend
		if s.typ() != elf.STT_SECTION {
			addend += int64(s.value)
		}
		i := r.off / orcIPSize
		relas = append(relas, outRela{off: uint64(len(outIP)), typ: r.typ, sym: g.copies[int(s.shndx)].sym, addend: addend})
		outIP = append(outIP, make([]byte, orcIPSize)...)
		outORC = append(outORC, orc[i*orcEntrySize:(i+1)*orcEntrySize]...)
	}
	if len(relas) == 0 {
		return nil
	}
	for _, t := range []struct {
		sec   int
		data  []byte
		relas []outRela
	}{{ipSec, outIP, relas}, {orcSec, outORC, nil}} {
		s := g.f.Sections[t.sec]
		g.w.addSection(&outSection{name: s.Name, typ: elf.SHT_PROGBITS, flags: s.Flags, align: s.Addralign,
			entsize: s.Entsize, data: t.data, size: uint64(len(t.data)), relas: t.relas})
	}
	return nil
}
