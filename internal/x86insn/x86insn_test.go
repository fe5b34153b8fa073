package x86insn

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

func TestDecodeInsn(t *testing.T) {
	d := []byte{0x11, 0x22, 0x33, 0x44}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		code []byte
		want Insn
	}{
		{"endbr64", []byte{0xf3, 0x0f, 0x1e, 0xfa}, Insn{4, -1, 0, -1, 0, NoBranch}},
		{"call rel32", cat([]byte{0xe8}, d), Insn{5, -1, 0, 1, 4, Call}},
		{"jne rel32", cat([]byte{0x0f, 0x85}, d), Insn{6, -1, 0, 2, 4, Jump}},
		{"jmp rel32", cat([]byte{0xe9}, d), Insn{5, -1, 0, 1, 4, Jump}},
		{"jmp rel8", []byte{0xeb, 0x10}, Insn{2, -1, 0, 1, 1, NoBranch}},
		{"lea x(%rip),%rdi", cat([]byte{0x48, 0x8d, 0x3d}, d), Insn{7, 3, 4, -1, 0, NoBranch}},
		{"mov x(%rip),%eax", cat([]byte{0x8b, 0x05}, d), Insn{6, 2, 4, -1, 0, NoBranch}},
		{"addl $1,x(%rip)", cat([]byte{0x83, 0x05}, d, []byte{1}), Insn{7, 2, 4, 6, 1, NoBranch}},
		{"movl $5,x(%rip)", cat([]byte{0xc7, 0x05}, d, d), Insn{10, 2, 4, 6, 4, NoBranch}},
		{"movw $5,x(%rip)", cat([]byte{0x66, 0xc7, 0x05}, d, []byte{5, 0}), Insn{9, 3, 4, 7, 2, NoBranch}},
		{"movq $5,x(%rip)", cat([]byte{0x48, 0xc7, 0x05}, d, d), Insn{11, 3, 4, 7, 4, NoBranch}},
		{"movabs $imm64,%rax", cat([]byte{0x48, 0xb8}, d, d), Insn{10, -1, 0, 2, 8, NoBranch}},
		{"mov $imm32,%eax", cat([]byte{0xb8}, d), Insn{5, -1, 0, 1, 4, NoBranch}},
		{"lock xadd %eax,x(%rip)", cat([]byte{0xf0, 0x0f, 0xc1, 0x05}, d), Insn{8, 4, 4, -1, 0, NoBranch}},
		{"shll $3,x(%rip)", cat([]byte{0xc1, 0x25}, d, []byte{3}), Insn{7, 2, 4, 6, 1, NoBranch}},
		{"testb $1,x(%rip)", cat([]byte{0xf6, 0x05}, d, []byte{1}), Insn{7, 2, 4, 6, 1, NoBranch}},
		{"testl $1,x(%rip)", cat([]byte{0xf7, 0x05}, d, d), Insn{10, 2, 4, 6, 4, NoBranch}},
		{"notl x(%rip)", cat([]byte{0xf7, 0x15}, d), Insn{6, 2, 4, -1, 0, NoBranch}},
		{"btl $3,x(%rip)", cat([]byte{0x0f, 0xba, 0x25}, d, []byte{3}), Insn{8, 3, 4, 7, 1, NoBranch}},
		{"imul $100,x(%rip),%eax", cat([]byte{0x69, 0x05}, d, d), Insn{10, 2, 4, 6, 4, NoBranch}},
		{"mov %gs:abs32,%rax", cat([]byte{0x65, 0x48, 0x8b, 0x04, 0x25}, d), Insn{9, 5, 4, -1, 0, NoBranch}},
		{"mov 8(%rsp),%rax", []byte{0x48, 0x8b, 0x44, 0x24, 0x08}, Insn{5, 4, 1, -1, 0, NoBranch}},
		{"nopw 0(%rax,%rax)", []byte{0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00}, Insn{6, 5, 1, -1, 0, NoBranch}},
		{"cs nopw 0(%rax,%rax)", []byte{0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0, 0, 0, 0}, Insn{10, 6, 4, -1, 0, NoBranch}},
		{"vzeroupper", []byte{0xc5, 0xf8, 0x77}, Insn{3, -1, 0, -1, 0, NoBranch}},
		{"vpshufd $1,x(%rip),%ymm0", cat([]byte{0xc5, 0xfd, 0x70, 0x05}, d, []byte{1}), Insn{9, 4, 4, 8, 1, NoBranch}},
		{"enter", []byte{0xc8, 0x10, 0x00, 0x00}, Insn{4, -1, 0, 1, 3, NoBranch}},
		{"ret", []byte{0xc3}, Insn{1, -1, 0, -1, 0, NoBranch}},
		{"ud2", []byte{0x0f, 0x0b}, Insn{2, -1, 0, -1, 0, NoBranch}},
		{"rex then legacy prefix", []byte{0x48, 0x66, 0xb8, 1, 0}, Insn{5, -1, 0, 3, 2, NoBranch}},
	} {
		got, err := Decode(tc.code)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	for _, bad := range [][]byte{nil, {0x0f}, {0x8b}, {0x8b, 0x05, 1}, {0x06}, append(bytes.Repeat([]byte{0x66}, 15), 0x90)} {
		if in, err := Decode(bad); err == nil {
			t.Errorf("% x decoded as %+v", bad, in)
		}
	}
}

// TestDecodeInsnMatchesObjdump decodes a unit full of the instructions
// kernel C produces (atomics, bit operations, immediates of every size,
// string operations, system instructions in inline asm) and checks the
// boundaries against objdump's.
func TestDecodeInsnMatchesObjdump(t *testing.T) {
	if _, err := exec.LookPath("objdump"); err != nil {
		t.Fatal("objdump not found (apt-get install binutils)")
	}
	src := `
#include <stdint.h>
static int counter;
static short halfword;
static long quad;
static unsigned char flags8;
static long big[64];
extern void sink(long);

long mixed(long a, long b, int i)
{
	counter += 5;
	counter = 0x12345;
	halfword = 7;
	halfword += 0x1234;
	quad = 0x123456789abcdefLL;
	flags8 |= 0x80;
	if (flags8 & 4)
		sink(1);
	__atomic_fetch_add(&counter, a, __ATOMIC_SEQ_CST);
	__atomic_compare_exchange_n(&quad, &b, a, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	__atomic_or_fetch(&counter, 1 << (i & 31), __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&quad, __ATOMIC_RELAXED) & (1L << 40))
		sink(2);
	big[i & 63] = a * 1000003 + (b >> 7) - (a << 13);
	__builtin_memset(big, 0, sizeof(big));
	for (int k = 0; k < i; k++)
		sink(big[k & 63] / (b | 1) % 17);
	unsigned int lo, hi;
	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	asm volatile("cpuid" : "+a"(lo), "=b"(hi) :: "ecx", "edx");
	asm volatile("lfence; mfence; pause; clflush %0" : "+m"(counter));
	asm volatile("bts %1, %0" : "+m"(quad) : "Ir"(i & 63));
	return a > b ? lo : hi + __builtin_popcountl(a) + __builtin_ctzl(b | 1);
}
`
	obj := compileC(t, src, "-fcf-protection=full", "-falign-loops=32", "-pg", "-mfentry")
	dir := t.TempDir()
	path := filepath.Join(dir, "unit.o")
	if err := os.WriteFile(path, obj, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	code := sectionData(t, f, ".text.mixed")
	out, err := exec.Command("objdump", "-d", "--insn-width=16", "-j", ".text.mixed", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		addr, rest, ok := strings.Cut(strings.TrimLeft(sc.Text(), " "), ":\t")
		if a, err := strconv.ParseUint(addr, 16, 32); ok && err == nil {
			if strings.Contains(rest, "(bad)") {
				t.Fatalf("objdump cannot decode %s", sc.Text())
			}
			want = append(want, int(a))
		}
	}
	var got []int
	for off := 0; off < len(code); {
		got = append(got, off)
		in, err := Decode(code[off:])
		if err != nil {
			t.Fatalf("cannot decode at %#x: % x", off, code[off:min(off+15, len(code))])
		}
		off += in.Len
	}
	if len(got) < 50 {
		t.Fatalf("only %d instructions: the unit did not compile as intended", len(got))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("instruction boundaries (-objdump +decoder):\n%s", d)
	}
	ends, err := FieldEnds(code)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range relocOffsets(t, f, ".rela.text.mixed") {
		if _, ok := ends[off]; !ok {
			t.Errorf("relocation at %#x does not land on a decoded field", off)
		}
	}
}

// compileC compiles a C unit with gcc, with the code-generation flags of
// a kernel unit that matter here, and returns the object.
func compileC(t *testing.T, src string, extra ...string) []byte {
	t.Helper()
	return testutil.CompileC(t, "unit", src, append([]string{"-c", "-O2", "-ffunction-sections", "-fdata-sections", "-fno-pic", "-mcmodel=kernel",
		"-mno-red-zone", "-fno-asynchronous-unwind-tables", "-fno-stack-protector"}, extra...)...)
}

func sectionData(t *testing.T, f *elf.File, name string) []byte {
	t.Helper()
	s := f.Section(name)
	if s == nil {
		t.Fatalf("no section %s", name)
	}
	b, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// relocOffsets decodes the offsets of a relocation section by hand.
func relocOffsets(t *testing.T, f *elf.File, name string) []uint64 {
	t.Helper()
	b := sectionData(t, f, name)
	var offs []uint64
	for i := 0; i+24 <= len(b); i += 24 {
		offs = append(offs, binary.LittleEndian.Uint64(b[i:]))
	}
	return offs
}
