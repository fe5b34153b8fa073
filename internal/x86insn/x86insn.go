// Package x86insn decodes the length of x86-64 instructions, enough to
// find where the instruction holding a relocated field ends and what
// kind of instruction it is. Package klpgen needs the end: a PC-relative
// relocation's addend folds in the distance from the field to that end
// (4 bytes, plus the immediate that may follow), and only knowing it
// tells which of two neighbouring variables "section-4" means. Package
// objdiff needs the kind: a relocation that is the target of a direct
// call or jump (rel32) calls a function, any other takes its address.
// kpatch does the same with the kernel's instruction decoder.
//
// It decodes lengths only, from the opcode maps of the Intel SDM volume
// 2 (appendix A): legacy and REX prefixes, the one-, two- and
// three-byte maps, VEX and EVEX prefixes, ModRM, SIB, displacement and
// immediate sizes. Callers trust its answer only when every relocation
// of a section lands exactly on a field it decoded (FieldEnds), which an
// out-of-step decoding does not survive.
package x86insn

import "errors"

// Operand flags of an opcode.
const (
	opModRM = 1 << iota // a ModRM byte follows
	opImm8              // an 8-bit immediate
	opImm16             // a 16-bit immediate
	opImmZ              // a 16- or 32-bit immediate (operand size)
	opImmV              // a 16-, 32- or 64-bit immediate (mov r, imm)
	opMoffs             // a 64-bit (or 32-bit with 0x67) address
	opEnter             // a 16-bit and an 8-bit immediate
	opGrp3              // immediate only for ModRM.reg 0 and 1 (test)
	opRel32             // a 32-bit relative branch target
	opBad               // invalid in 64-bit mode
)

var oneByte = func() (t [256]uint16) {
	for op := 0; op < 0x40; op++ {
		switch op & 7 {
		case 0, 1, 2, 3:
			t[op] = opModRM
		case 4:
			t[op] = opImm8
		case 5:
			t[op] = opImmZ
		default:
			t[op] = opBad // push/pop segment, daa/das/aaa/aas; prefixes and 0x0f are handled first
		}
	}
	t[0x62] = opBad // EVEX, handled first
	t[0x60], t[0x61] = opBad, opBad
	t[0x63] = opModRM
	t[0x68] = opImmZ
	t[0x69] = opModRM | opImmZ
	t[0x6a] = opImm8
	t[0x6b] = opModRM | opImm8
	for op := 0x70; op <= 0x7f; op++ {
		t[op] = opImm8
	}
	t[0x80], t[0x81], t[0x82], t[0x83] = opModRM|opImm8, opModRM|opImmZ, opBad, opModRM|opImm8
	for op := 0x84; op <= 0x8f; op++ {
		t[op] = opModRM
	}
	t[0x9a] = opBad
	t[0xa0], t[0xa1], t[0xa2], t[0xa3] = opMoffs, opMoffs, opMoffs, opMoffs
	t[0xa8], t[0xa9] = opImm8, opImmZ
	for op := 0xb0; op <= 0xb7; op++ {
		t[op] = opImm8
	}
	for op := 0xb8; op <= 0xbf; op++ {
		t[op] = opImmV
	}
	t[0xc0], t[0xc1], t[0xc2] = opModRM|opImm8, opModRM|opImm8, opImm16
	t[0xc6], t[0xc7], t[0xc8], t[0xca] = opModRM|opImm8, opModRM|opImmZ, opEnter, opImm16
	t[0xcd], t[0xce] = opImm8, opBad
	t[0xd0], t[0xd1], t[0xd2], t[0xd3] = opModRM, opModRM, opModRM, opModRM
	t[0xd4], t[0xd5], t[0xd6] = opBad, opBad, opBad
	for op := 0xd8; op <= 0xdf; op++ {
		t[op] = opModRM // x87
	}
	for op := 0xe0; op <= 0xe7; op++ {
		t[op] = opImm8 // loop, jrcxz, in, out
	}
	t[0xe8], t[0xe9], t[0xea], t[0xeb] = opRel32, opRel32, opBad, opImm8
	t[0xf6], t[0xf7] = opModRM|opGrp3|opImm8, opModRM|opGrp3|opImmZ
	t[0xfe], t[0xff] = opModRM, opModRM
	return t
}()

var twoByte = func() (t [256]uint16) {
	for op := range t {
		t[op] = opModRM
	}
	for _, op := range []int{0x04, 0x0a, 0x0c, 0x36, 0x39, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f} {
		t[op] = opBad
	}
	for _, op := range []int{0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x0e, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37,
		0x77, 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa} {
		t[op] = 0 // syscall, clts, sysret, invd, wbinvd, ud2, femms, wrmsr...getsec, emms, push/pop fs/gs, cpuid, rsm
	}
	for op := 0x80; op <= 0x8f; op++ {
		t[op] = opRel32 // jcc rel32
	}
	for op := 0xc8; op <= 0xcf; op++ {
		t[op] = 0 // bswap
	}
	for _, op := range []int{0x0f, 0x70, 0x71, 0x72, 0x73, 0xa4, 0xac, 0xba, 0xc2, 0xc4, 0xc5, 0xc6} {
		t[op] = opModRM | opImm8 // 3DNow! suffix, pshuf/shift groups, shld, shrd, bt group, cmpps, pinsrw, pextrw, shufps
	}
	return t
}()

// Insn is a decoded instruction: its length, where its displacement and
// immediate fields start (-1 when absent) and their sizes, and whether
// its immediate is the 32-bit target of a direct branch.
type Insn struct {
	Len               int
	DispOff, DispSize int
	ImmOff, ImmSize   int
	Branch            Branch
}

// Branch is the kind of a direct branch with a 32-bit relative target.
type Branch uint8

// Branch kinds.
const (
	// NoBranch is any instruction other than the two below.
	NoBranch Branch = iota
	// Call is call rel32 (e8).
	Call
	// Jump is jmp rel32 (e9) or a conditional jump rel32 (0f 80-8f),
	// which gcc uses for tail calls.
	Jump
)

// ErrDecode means the bytes do not start with an instruction the decoder
// knows, or end before it does.
var ErrDecode = errors.New("cannot decode instruction")

// Decode decodes the length of the x86-64 instruction at the start
// of code.
func Decode(code []byte) (Insn, error) {
	in := Insn{DispOff: -1, ImmOff: -1}
	i := 0
	next := func() (byte, bool) {
		if i >= len(code) || i >= 15 {
			return 0, false
		}
		b := code[i]
		i++
		return b, true
	}
	opsize16, addr32, rexW := false, false, false
	var op byte
	for {
		var ok bool
		if op, ok = next(); !ok {
			return in, ErrDecode
		}
		if isLegacyPrefix(op) {
			opsize16 = opsize16 || op == 0x66
			addr32 = addr32 || op == 0x67
			rexW = false // a REX before a legacy prefix is ignored
			continue
		}
		if op >= 0x40 && op <= 0x4f {
			rexW = op&8 != 0 // REX; only the last one counts
			continue
		}
		break
	}

	var flags uint16
	switch op {
	case 0x0f:
		b, ok := next()
		if !ok {
			return in, ErrDecode
		}
		switch b {
		case 0x38:
			if _, ok := next(); !ok {
				return in, ErrDecode
			}
			flags = opModRM
		case 0x3a:
			if _, ok := next(); !ok {
				return in, ErrDecode
			}
			flags = opModRM | opImm8
		default:
			flags = twoByte[b]
		}
	case 0xc4, 0xc5, 0x62: // VEX3, VEX2, EVEX: the opcode map comes from the prefix
		n := map[byte]int{0xc4: 2, 0xc5: 1, 0x62: 3}[op]
		if i+n >= len(code) {
			return in, ErrDecode
		}
		m := byte(1)
		switch op {
		case 0xc4:
			m = code[i] & 0x1f
		case 0x62:
			m = code[i] & 0x07
		}
		i += n
		b, ok := next()
		if !ok {
			return in, ErrDecode
		}
		switch m {
		case 1:
			flags = twoByte[b]&^(opRel32|opBad) | opModRM
			if b == 0x77 {
				flags = 0 // vzeroupper, vzeroall
			}
		case 2:
			flags = opModRM
		case 3:
			flags = opModRM | opImm8
		default:
			return in, ErrDecode
		}
	default:
		flags = oneByte[op]
	}
	if flags&opBad != 0 {
		return in, ErrDecode
	}

	if flags&opModRM != 0 {
		modrm, ok := next()
		if !ok {
			return in, ErrDecode
		}
		mod, reg, rm := modrm>>6, (modrm>>3)&7, modrm&7
		if mod != 3 {
			if rm == 4 {
				sib, ok := next()
				if !ok {
					return in, ErrDecode
				}
				if mod == 0 && sib&7 == 5 {
					in.DispSize = 4
				}
			}
			switch {
			case mod == 0 && rm == 5:
				in.DispSize = 4 // RIP-relative
			case mod == 1:
				in.DispSize = 1
			case mod == 2:
				in.DispSize = 4
			}
		}
		if flags&opGrp3 != 0 && reg > 1 {
			flags &^= opImm8 | opImmZ
		}
		if in.DispSize > 0 {
			in.DispOff = i
			i += in.DispSize
		}
	}

	z := 4
	if opsize16 && !rexW {
		z = 2
	}
	switch {
	case flags&opImm8 != 0:
		in.ImmSize = 1
	case flags&opImm16 != 0:
		in.ImmSize = 2
	case flags&opImmZ != 0:
		in.ImmSize = z
	case flags&opRel32 != 0:
		in.ImmSize = 4
		in.Branch = Jump
		if op == 0xe8 {
			in.Branch = Call
		}
	case flags&opImmV != 0:
		in.ImmSize = z
		if rexW {
			in.ImmSize = 8
		}
	case flags&opMoffs != 0:
		in.ImmSize = 8
		if addr32 {
			in.ImmSize = 4
		}
	case flags&opEnter != 0:
		in.ImmSize = 3
	}
	if in.ImmSize > 0 {
		in.ImmOff = i
		i += in.ImmSize
	}
	if i > len(code) || i > 15 {
		return in, ErrDecode
	}
	in.Len = i
	return in, nil
}

func isLegacyPrefix(b byte) bool {
	switch b {
	case 0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65:
		return true
	}
	return false
}

// FieldEnds decodes a function's code from its start and returns, for
// every 32- or 64-bit displacement or immediate field, where its
// instruction ends.
func FieldEnds(code []byte) (map[uint64]uint64, error) {
	ends := map[uint64]uint64{}
	for off := 0; off < len(code); {
		in, err := Decode(code[off:])
		if err != nil {
			return nil, err
		}
		end := uint64(off + in.Len)
		if in.DispSize == 4 {
			ends[uint64(off+in.DispOff)] = end
		}
		if in.ImmSize >= 4 {
			ends[uint64(off+in.ImmOff)] = end
		}
		off += in.Len
	}
	return ends, nil
}
