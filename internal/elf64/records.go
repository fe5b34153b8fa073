package elf64

import (
	"debug/elf"
	"encoding/binary"
)

// Sym is one Elf64_Sym.
type Sym struct {
	Name  uint32 // offset of the name in the linked string table
	Info  uint8  // type and binding
	Other uint8  // visibility
	Shndx uint16 // section index, or SHN_UNDEF, SHN_ABS, ...
	Value uint64
	Size  uint64
}

// Type is the symbol's type (STT_*).
func (s Sym) Type() elf.SymType { return elf.ST_TYPE(s.Info) }

// Bind is the symbol's binding (STB_*).
func (s Sym) Bind() elf.SymBind { return elf.ST_BIND(s.Info) }

// DecodeSym decodes the Elf64_Sym at the start of b, which must hold at
// least SymSize bytes.
func DecodeSym(b []byte) Sym {
	le := binary.LittleEndian
	_ = b[SymSize-1]
	return Sym{
		Name:  le.Uint32(b[0:]),
		Info:  b[4],
		Other: b[5],
		Shndx: le.Uint16(b[6:]),
		Value: le.Uint64(b[8:]),
		Size:  le.Uint64(b[16:]),
	}
}

// Rela is one Elf64_Rela: r_info split into its symbol and type.
type Rela struct {
	Off    uint64 // r_offset, in the section the relocations apply to
	Sym    uint32 // symbol table index
	Type   uint32 // relocation type, e.g. R_X86_64_PC32
	Addend int64
}

// DecodeRela decodes the Elf64_Rela at the start of b, which must hold
// at least RelaSize bytes.
func DecodeRela(b []byte) Rela {
	le := binary.LittleEndian
	_ = b[RelaSize-1]
	info := le.Uint64(b[8:])
	return Rela{
		Off:    le.Uint64(b[0:]),
		Sym:    uint32(info >> 32),
		Type:   uint32(info),
		Addend: int64(le.Uint64(b[16:])),
	}
}

// AppendRela appends r encoded as an Elf64_Rela to b.
func AppendRela(b []byte, r Rela) []byte {
	le := binary.LittleEndian
	b = le.AppendUint64(b, r.Off)
	b = le.AppendUint64(b, uint64(r.Sym)<<32|uint64(r.Type))
	return le.AppendUint64(b, uint64(r.Addend))
}
