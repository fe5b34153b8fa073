package klpgen

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
)

// fakeSym is one entry of a fake vmlinux symbol table.
type fakeSym struct {
	name  string
	typ   elf.SymType
	bind  elf.SymBind
	value uint64
}

// fakeVmlinux writes a minimal ELF64 executable holding a symbol table
// and its strings, as the linker lays vmlinux's out: each STT_FILE
// ahead of its object's locals.
func fakeVmlinux(syms []fakeSym) []byte {
	le := binary.LittleEndian
	strtab := []byte{0}
	symtab := make([]byte, 24) // the null symbol
	for _, s := range syms {
		b := make([]byte, 24)
		le.PutUint32(b, uint32(len(strtab)))
		b[4] = byte(s.bind)<<4 | byte(s.typ)
		le.PutUint16(b[6:], 1)
		le.PutUint64(b[8:], s.value)
		symtab = append(symtab, b...)
		strtab = append(append(strtab, s.name...), 0)
	}
	symOff := uint64(64)
	strOff := symOff + uint64(len(symtab))
	shOff := strOff + uint64(len(strtab))
	hdr := make([]byte, 64)
	copy(hdr, elf.ELFMAG)
	hdr[elf.EI_CLASS], hdr[elf.EI_DATA], hdr[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	le.PutUint16(hdr[16:], uint16(elf.ET_EXEC))
	le.PutUint16(hdr[18:], uint16(elf.EM_X86_64))
	le.PutUint64(hdr[40:], shOff)
	le.PutUint16(hdr[52:], 64)
	le.PutUint16(hdr[58:], 64)
	le.PutUint16(hdr[60:], 3)
	sh := func(typ elf.SectionType, off, size uint64, link uint32, entsize uint64) []byte {
		b := make([]byte, 64)
		le.PutUint32(b[4:], uint32(typ))
		le.PutUint64(b[24:], off)
		le.PutUint64(b[32:], size)
		le.PutUint32(b[40:], link)
		le.PutUint64(b[56:], entsize)
		return b
	}
	out := append(hdr, symtab...)
	out = append(out, strtab...)
	out = append(out, make([]byte, 64)...)
	out = append(out, sh(elf.SHT_SYMTAB, symOff, uint64(len(symtab)), 2, 24)...)
	return append(out, sh(elf.SHT_STRTAB, strOff, uint64(len(strtab)), 0, 0)...)
}

// twoUnits: a.c and b.c each define a static counter and a helper, side
// by side, and a global helper elsewhere shares a static's name.
const twoUnitsMap = "ffffffff81000000 T _stext\n" +
	"ffffffff81000100 t a_only\n" +
	"ffffffff81000200 t helper\n" +
	"ffffffff81000300 t b_only\n" +
	"ffffffff81000400 t helper\n" +
	"ffffffff81000500 T helper\n" +
	"ffffffff82000000 b counter\n" +
	"ffffffff82000010 b counter\n"

var twoUnitsSyms = []fakeSym{
	{"a.c", elf.STT_FILE, elf.STB_LOCAL, 0},
	{"a_only", elf.STT_FUNC, elf.STB_LOCAL, 0xffffffff81000100},
	{"helper", elf.STT_FUNC, elf.STB_LOCAL, 0xffffffff81000200},
	{"counter", elf.STT_OBJECT, elf.STB_LOCAL, 0xffffffff82000010},
	{"b.c", elf.STT_FILE, elf.STB_LOCAL, 0},
	{"b_only", elf.STT_FUNC, elf.STB_LOCAL, 0xffffffff81000300},
	{"helper", elf.STT_FUNC, elf.STB_LOCAL, 0xffffffff81000400},
	{"counter", elf.STT_OBJECT, elf.STB_LOCAL, 0xffffffff82000000},
	{"_stext", elf.STT_NOTYPE, elf.STB_GLOBAL, 0xffffffff81000000},
	{"helper", elf.STT_FUNC, elf.STB_GLOBAL, 0xffffffff81000500},
}

func twoUnits(t *testing.T) *Symbols {
	t.Helper()
	s, err := LoadSymbols(strings.NewReader("0x8ef22deb\tseq_puts\tvmlinux\tEXPORT_SYMBOL\t\n"), strings.NewReader(twoUnitsMap))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPositionBySourceFile: the counters lie side by side, so the address
// order cannot tell a.c's from b.c's; vmlinux's symbol table can, and it
// also tells a static from the global of the same name.
func TestPositionBySourceFile(t *testing.T) {
	s := twoUnits(t)
	a := Definer{Names: []string{"a_only", "helper", "counter"}, File: "a.c"}
	b := Definer{Names: []string{"b_only", "helper", "counter"}, File: "b.c"}
	if _, err := s.Position("counter", a); !isAmbiguous(err) || !strings.Contains(err.Error(), "unstripped vmlinux") {
		t.Fatalf("counter of a.c by address order: %v, want ambiguous, naming vmlinux", err)
	}
	vm := fakeVmlinux(twoUnitsSyms)
	if err := s.LoadSourceFiles(bytes.NewReader(vm), int64(len(vm))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		d    Definer
		want uint64
	}{
		{"counter", a, 2}, {"counter", b, 1},
		{"helper", a, 1}, {"helper", b, 2},
		{"helper", Definer{Names: a.Names, File: "a.c", Global: true}, 3},
	} {
		if pos, err := s.Position(c.name, c.d); err != nil || pos != c.want {
			t.Errorf("%s of %+v: %d, %v; want %d", c.name, c.d, pos, err, c.want)
		}
	}
	if _, err := s.Position("counter", Definer{Names: a.Names, File: "c.c"}); !isAmbiguous(err) || !strings.Contains(err.Error(), "none of them was defined in c.c") {
		t.Errorf("counter of c.c: %v", err)
	}
}

// TestLoadSourceFilesRefuses: a vmlinux that is not the System.map's, a
// stripped one, a truncated one and a table that claims too much are
// refused, and leave the positions to the address order.
func TestLoadSourceFilesRefuses(t *testing.T) {
	good := fakeVmlinux(twoUnitsSyms)
	moved := append([]fakeSym(nil), twoUnitsSyms...)
	moved[3].value += 0x1000
	le := binary.LittleEndian
	symtabHeader := le.Uint64(good[40:]) + 64
	stripped := bytes.Clone(good)
	le.PutUint32(stripped[symtabHeader+4:], uint32(elf.SHT_PROGBITS))
	huge := bytes.Clone(good)
	le.PutUint64(huge[symtabHeader+32:], 24<<35) // the symbol table's size
	unterminated := bytes.Clone(good)
	unterminated[le.Uint64(good[40:])-1] = 'x' // the string table's last NUL, just before the section headers
	noHeaders := bytes.Clone(good)
	le.PutUint16(noHeaders[60:], 0)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"another build", fakeVmlinux(moved), "System.map has counter at 0xffffffff82000010 and vmlinux has no symbol"},
		{"truncated", good[:len(good)-100], "beyond the file"},
		{"not ELF", []byte(strings.Repeat("x", 128)), "not a little-endian ELF64"},
		{"stripped", stripped, "stripped"},
		{"no section headers", noHeaders, "section header table of 0 entries"},
		{"too large", huge, "too large"},
		{"name too long", fakeVmlinux(append(slices.Clone(twoUnitsSyms), fakeSym{strings.Repeat("x", 600), elf.STT_FUNC, elf.STB_LOCAL, 0})), "longer than 511 bytes"},
		{"name not terminated", unterminated, "not terminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := twoUnits(t)
			err := s.LoadSourceFiles(bytes.NewReader(tc.data), int64(len(tc.data)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Errorf("err = %v, want ErrMalformed or ErrTooLarge", err)
			}
			if s.HasSourceFiles() {
				t.Error("a refused vmlinux still places symbols")
			}
		})
	}
}
