package klpgen

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeInsn(t *testing.T) {
	d := []byte{0x11, 0x22, 0x33, 0x44}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		code []byte
		want insn
	}{
		{"endbr64", []byte{0xf3, 0x0f, 0x1e, 0xfa}, insn{4, -1, 0, -1, 0}},
		{"call rel32", cat([]byte{0xe8}, d), insn{5, -1, 0, 1, 4}},
		{"jne rel32", cat([]byte{0x0f, 0x85}, d), insn{6, -1, 0, 2, 4}},
		{"mov x(%rip),%eax", cat([]byte{0x8b, 0x05}, d), insn{6, 2, 4, -1, 0}},
		{"addl $1,x(%rip)", cat([]byte{0x83, 0x05}, d, []byte{1}), insn{7, 2, 4, 6, 1}},
		{"movl $5,x(%rip)", cat([]byte{0xc7, 0x05}, d, d), insn{10, 2, 4, 6, 4}},
		{"movw $5,x(%rip)", cat([]byte{0x66, 0xc7, 0x05}, d, []byte{5, 0}), insn{9, 3, 4, 7, 2}},
		{"movq $5,x(%rip)", cat([]byte{0x48, 0xc7, 0x05}, d, d), insn{11, 3, 4, 7, 4}},
		{"movabs $imm64,%rax", cat([]byte{0x48, 0xb8}, d, d), insn{10, -1, 0, 2, 8}},
		{"mov $imm32,%eax", cat([]byte{0xb8}, d), insn{5, -1, 0, 1, 4}},
		{"lock xadd %eax,x(%rip)", cat([]byte{0xf0, 0x0f, 0xc1, 0x05}, d), insn{8, 4, 4, -1, 0}},
		{"shll $3,x(%rip)", cat([]byte{0xc1, 0x25}, d, []byte{3}), insn{7, 2, 4, 6, 1}},
		{"testb $1,x(%rip)", cat([]byte{0xf6, 0x05}, d, []byte{1}), insn{7, 2, 4, 6, 1}},
		{"testl $1,x(%rip)", cat([]byte{0xf7, 0x05}, d, d), insn{10, 2, 4, 6, 4}},
		{"notl x(%rip)", cat([]byte{0xf7, 0x15}, d), insn{6, 2, 4, -1, 0}},
		{"btl $3,x(%rip)", cat([]byte{0x0f, 0xba, 0x25}, d, []byte{3}), insn{8, 3, 4, 7, 1}},
		{"imul $100,x(%rip),%eax", cat([]byte{0x69, 0x05}, d, d), insn{10, 2, 4, 6, 4}},
		{"mov %gs:abs32,%rax", cat([]byte{0x65, 0x48, 0x8b, 0x04, 0x25}, d), insn{9, 5, 4, -1, 0}},
		{"mov 8(%rsp),%rax", []byte{0x48, 0x8b, 0x44, 0x24, 0x08}, insn{5, 4, 1, -1, 0}},
		{"nopw 0(%rax,%rax)", []byte{0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00}, insn{6, 5, 1, -1, 0}},
		{"cs nopw 0(%rax,%rax)", []byte{0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0, 0, 0, 0}, insn{10, 6, 4, -1, 0}},
		{"vzeroupper", []byte{0xc5, 0xf8, 0x77}, insn{3, -1, 0, -1, 0}},
		{"vpshufd $1,x(%rip),%ymm0", cat([]byte{0xc5, 0xfd, 0x70, 0x05}, d, []byte{1}), insn{9, 4, 4, 8, 1}},
		{"enter", []byte{0xc8, 0x10, 0x00, 0x00}, insn{4, -1, 0, 1, 3}},
		{"ret", []byte{0xc3}, insn{1, -1, 0, -1, 0}},
		{"ud2", []byte{0x0f, 0x0b}, insn{2, -1, 0, -1, 0}},
		{"rex then legacy prefix", []byte{0x48, 0x66, 0xb8, 1, 0}, insn{5, -1, 0, 3, 2}},
	} {
		got, err := decodeInsn(tc.code)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	for _, bad := range [][]byte{nil, {0x0f}, {0x8b}, {0x8b, 0x05, 1}, {0x06}, append(bytes.Repeat([]byte{0x66}, 15), 0x90)} {
		if in, err := decodeInsn(bad); err == nil {
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
	f := parseELF(t, obj)
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
		in, err := decodeInsn(code[off:])
		if err != nil {
			t.Fatalf("cannot decode at %#x: % x", off, code[off:min(off+15, len(code))])
		}
		off += in.length
	}
	if len(got) < 50 {
		t.Fatalf("only %d instructions: the unit did not compile as intended", len(got))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("instruction boundaries (-objdump +decoder):\n%s", d)
	}
	ends, err := fieldEnds(code)
	if err != nil {
		t.Fatal(err)
	}
	rs := relocsOf(t, f, ".rela.text.mixed")
	for _, r := range rs {
		if _, ok := ends[r.Off]; !ok {
			t.Errorf("relocation %v does not land on a decoded field", r)
		}
	}
}
