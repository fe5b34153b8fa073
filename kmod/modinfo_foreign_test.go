package kmod

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"testing"
)

type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// foreignModule builds a minimal relocatable module of any class and
// byte order: a .modinfo naming it, an empty .gnu.linkonce.this_module
// and the section name table.
func foreignModule(class elf.Class, order byteOrder, machine elf.Machine, modinfo string) []byte {
	wide := class == elf.ELFCLASS64
	ehsize, shentsize := 52, 40
	if wide {
		ehsize, shentsize = 64, 64
	}
	shstrtab := "\x00.modinfo\x00.gnu.linkonce.this_module\x00.shstrtab\x00"
	type sec struct {
		name  int
		typ   elf.SectionType
		flags elf.SectionFlag
		data  string
	}
	secs := []sec{{}, {1, elf.SHT_PROGBITS, elf.SHF_ALLOC, modinfo}, {10, elf.SHT_PROGBITS, elf.SHF_ALLOC | elf.SHF_WRITE, ""}, {36, elf.SHT_STRTAB, 0, shstrtab}}
	out := make([]byte, ehsize)
	offs := make([]int, len(secs))
	for i, s := range secs {
		offs[i] = len(out)
		out = append(out, s.data...)
	}
	shoff := len(out)
	word := func(v int) { // a 32- or 64-bit address, offset or size
		if wide {
			out = order.AppendUint64(out, uint64(v))
		} else {
			out = order.AppendUint32(out, uint32(v))
		}
	}
	for i, s := range secs {
		out = order.AppendUint32(out, uint32(s.name))
		out = order.AppendUint32(out, uint32(s.typ))
		word(int(s.flags))
		word(0) // addr
		word(offs[i])
		word(len(s.data))
		out = order.AppendUint32(out, 0) // link
		out = order.AppendUint32(out, 0) // info
		word(1)                          // addralign
		word(0)                          // entsize
	}
	copy(out, elf.ELFMAG)
	out[elf.EI_CLASS] = byte(class)
	out[elf.EI_DATA] = byte(map[byteOrder]elf.Data{binary.LittleEndian: elf.ELFDATA2LSB, binary.BigEndian: elf.ELFDATA2MSB}[order])
	out[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	order.PutUint16(out[16:], uint16(elf.ET_REL))
	order.PutUint16(out[18:], uint16(machine))
	order.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	h := out[24:] // after e_version: entry, phoff, shoff, then flags
	if wide {
		order.PutUint64(h[16:], uint64(shoff))
		h = h[28:]
	} else {
		order.PutUint32(h[8:], uint32(shoff))
		h = h[16:]
	}
	order.PutUint16(h[0:], uint16(ehsize))
	order.PutUint16(h[6:], uint16(shentsize))
	order.PutUint16(h[8:], uint16(len(secs)))
	order.PutUint16(h[10:], uint16(len(secs)-1))
	return out
}

// A module built for another class or byte order is read, so that the
// caller can say which architecture it is for rather than "not a
// module".
func TestReadModInfoForeignClass(t *testing.T) {
	for _, tt := range []struct {
		class   elf.Class
		order   byteOrder
		machine elf.Machine
		arch    string
	}{
		{elf.ELFCLASS32, binary.LittleEndian, elf.EM_386, "i386"},
		{elf.ELFCLASS32, binary.BigEndian, elf.EM_S390, "s390"},
		{elf.ELFCLASS64, binary.BigEndian, elf.EM_S390, "s390x"},
		{elf.ELFCLASS64, binary.BigEndian, elf.EM_PPC64, "ppc64"},
	} {
		t.Run(tt.arch, func(t *testing.T) {
			info, err := ReadModInfo(foreignModule(tt.class, tt.order, tt.machine, "name=old\x00vermagic=6.1.0 SMP\x00"))
			if err != nil {
				t.Fatal(err)
			}
			if info.Arch != tt.arch || info.Name != "old" || info.Release != "6.1.0" {
				t.Errorf("Arch %q, Name %q, Release %q; want %q, old, 6.1.0", info.Arch, info.Name, info.Release, tt.arch)
			}
		})
	}
}

// The foreign path still bounds its reads and wants a relocatable file.
func TestReadModInfoForeignClassRefuses(t *testing.T) {
	mod := foreignModule(elf.ELFCLASS32, binary.LittleEndian, elf.EM_386, "name=old\x00")
	exec := append([]byte(nil), mod...)
	binary.LittleEndian.PutUint16(exec[16:], uint16(elf.ET_EXEC))
	if _, err := ReadModInfo(exec); !errors.Is(err, ErrNotModule) {
		t.Errorf("ELF32 executable: %v, want ErrNotModule", err)
	}
	// .modinfo (section 1) reaching past the end of the file.
	long := append([]byte(nil), mod...)
	shoff := int(binary.LittleEndian.Uint32(long[32:]))
	binary.LittleEndian.PutUint32(long[shoff+40+20:], uint32(len(long)))
	if _, err := ReadModInfo(long); !errors.Is(err, ErrNotModule) {
		t.Errorf("ELF32 .modinfo past the end: %v, want ErrNotModule", err)
	}
}
