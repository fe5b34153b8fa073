package klpgen

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"path"

	"github.com/splicefleet/splicefleet/internal/elf64"
)

// maxVmlinuxSymtab bounds the symbol and string tables read from a
// vmlinux. Debian's 6.1 vmlinux has about 6 MiB of symbols and 5 MiB of
// names.
const maxVmlinuxSymtab = 256 << 20

// LoadSourceFiles reads the symbol table of the target kernel's
// unstripped vmlinux (linux-image-<release>-dbg installs it as
// /usr/lib/debug/boot/vmlinux-<release>) and records which source file
// defined each copy of every name that System.map carries more than
// once. [Symbols.Position] then chooses the copy of the patched unit by
// its file, where System.map's address order can only suggest it.
//
// The linker keeps, for each object it links, an STT_FILE symbol naming
// the object's source file ahead of the object's local symbols; a local
// symbol belongs to the last STT_FILE before it. kpatch reads vmlinux the
// same way to place static symbols. Only the ELF header, the section
// headers, the symbol table and its string table are read, each bounded
// and checked against size; the rest of the file (most of it debug
// information) is not.
//
// The vmlinux must be the one the System.map describes: every copy of
// every repeated name must be a local symbol of the table at the address
// System.map gives, or the load fails and nothing is recorded.
func (s *Symbols) LoadSourceFiles(r io.ReaderAt, size int64) error {
	files, err := readSourceFiles(r, size, func(name string) bool { return len(s.at[name]) > 0 })
	if err != nil {
		return fmt.Errorf("klpgen: load vmlinux symbols: %w", err)
	}
	byIndex := map[int]string{}
	for name, idx := range s.at {
		for _, i := range idx {
			k := addrName{s.addr[i], name}
			f, ok := files[k]
			if !ok {
				return fmt.Errorf("klpgen: load vmlinux symbols: %w: System.map has %s at %#x and vmlinux has no symbol of that name there: "+
					"is it the vmlinux of the same build?", ErrMalformed, name, s.addr[i])
			}
			if f != "" {
				byIndex[i] = f
			}
		}
	}
	s.files = byIndex
	return nil
}

// globalFile stands for the source file of a global symbol: vmlinux
// lists globals after every STT_FILE, so their file is not known, and
// none is needed (a reference to a global means the global).
const globalFile = "\x00global"

type addrName struct {
	addr uint64
	name string
}

// readSourceFiles maps each symbol that want accepts, by address and
// name, to the base name of its source file, globalFile for a global or
// weak one, and "" when two symbols of that name and address come from
// different files.
func readSourceFiles(r io.ReaderAt, size int64, want func(string) bool) (map[addrName]string, error) {
	le := binary.LittleEndian
	read := func(off, n uint64, what string) ([]byte, error) {
		if n > maxVmlinuxSymtab {
			return nil, fmt.Errorf("%w: %s of %d bytes, more than %d", ErrTooLarge, what, n, maxVmlinuxSymtab)
		}
		if off > uint64(size) || n > uint64(size)-off {
			return nil, malformed("%s (offset %d, size %d) lies beyond the file's %d bytes", what, off, n, size)
		}
		b := make([]byte, n)
		if _, err := r.ReadAt(b, int64(off)); err != nil {
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		return b, nil
	}
	hdr, err := read(0, 64, "ELF header")
	if err != nil {
		return nil, err
	}
	if string(hdr[:4]) != elf.ELFMAG || elf.Class(hdr[elf.EI_CLASS]) != elf.ELFCLASS64 || elf.Data(hdr[elf.EI_DATA]) != elf.ELFDATA2LSB {
		return nil, malformed("not a little-endian ELF64 file")
	}
	if m := elf.Machine(le.Uint16(hdr[18:])); m != elf.EM_X86_64 {
		return nil, malformed("machine %v, not x86-64", m)
	}
	shoff, shentsize, shnum := le.Uint64(hdr[40:]), uint64(le.Uint16(hdr[58:])), uint64(le.Uint16(hdr[60:]))
	if shentsize != 64 || shnum == 0 || shnum >= uint64(elf.SHN_LORESERVE) {
		return nil, malformed("section header table of %d entries of %d bytes", shnum, shentsize)
	}
	shdrs, err := read(shoff, shnum*shentsize, "section header table")
	if err != nil {
		return nil, err
	}
	var symtab, strtab []byte
	for i := range shnum {
		sh := shdrs[i*64 : (i+1)*64]
		if elf.SectionType(le.Uint32(sh[4:])) != elf.SHT_SYMTAB {
			continue
		}
		if symtab != nil {
			return nil, malformed("two symbol tables")
		}
		off, n, link, entsize := le.Uint64(sh[24:]), le.Uint64(sh[32:]), uint64(le.Uint32(sh[40:])), le.Uint64(sh[56:])
		if entsize != elf64.SymSize || n%elf64.SymSize != 0 || link == 0 || link >= shnum {
			return nil, malformed("symbol table section %d: entries of %d bytes, size %d, strings in section %d", i, entsize, n, link)
		}
		if symtab, err = read(off, n, "symbol table"); err != nil {
			return nil, err
		}
		st := shdrs[link*64 : (link+1)*64]
		if elf.SectionType(le.Uint32(st[4:])) != elf.SHT_STRTAB {
			return nil, malformed("symbol table's string section %d is not a string table", link)
		}
		if strtab, err = read(le.Uint64(st[24:]), le.Uint64(st[32:]), "symbol string table"); err != nil {
			return nil, err
		}
	}
	if symtab == nil {
		return nil, malformed("no symbol table: this vmlinux is stripped (the unstripped one is in the linux-image-<release>-dbg package)")
	}
	name := func(off uint32) (string, error) {
		if uint64(off) >= uint64(len(strtab)) {
			return "", malformed("symbol name at %d beyond the string table's %d bytes", off, len(strtab))
		}
		// A name is at most maxSymbolName bytes: the search for its end
		// is bounded, however many symbols share one unterminated name.
		rest := strtab[off:min(uint64(len(strtab)), uint64(off)+maxSymbolName+1)]
		end := bytes.IndexByte(rest, 0)
		if end < 0 {
			return "", malformed("symbol name at %d is longer than %d bytes or not terminated", off, maxSymbolName)
		}
		return string(rest[:end]), nil
	}
	out := map[addrName]string{}
	file := ""
	for i := uint64(elf64.SymSize); i < uint64(len(symtab)); i += elf64.SymSize {
		sym := elf64.DecodeSym(symtab[i:])
		switch {
		case sym.Type() == elf.STT_FILE:
			f, err := name(sym.Name)
			if err != nil {
				return nil, err
			}
			file = path.Base(f)
		case sym.Name != 0 && sym.Type() != elf.STT_SECTION:
			n, err := name(sym.Name)
			if err != nil {
				return nil, err
			}
			if !want(n) {
				continue
			}
			f := file
			if sym.Bind() != elf.STB_LOCAL {
				f = globalFile
			}
			k := addrName{sym.Value, n}
			if prev, seen := out[k]; seen && prev != f {
				out[k] = ""
			} else if !seen {
				out[k] = f
			}
		}
	}
	return out, nil
}
