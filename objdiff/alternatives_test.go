package objdiff

import (
	"strings"
	"testing"
)

// altUnit builds alternatives as the kernel's ALTERNATIVE macro does
// (arch/x86/include/asm/alternative.h): the original instruction, a
// 12-byte struct alt_instr in .altinstructions and the replacement in
// .altinstr_replacement.
const altUnit = `
#define ALT(old, new, feature) asm volatile("661:\n\t" old "\n662:\n" \
	".pushsection .altinstructions,\"a\"\n" \
	" .long 661b - .\n .long 663f - .\n .word " #feature "\n .byte 662b-661b\n .byte 664f-663f\n" \
	".popsection\n" \
	".pushsection .altinstr_replacement,\"ax\"\n663:\n\t" new "\n664:\n.popsection\n")
extern int consume(int);
int user(int x) { ALT("nop; nop; nop", "clac", 308); return consume(x); }
int other(int x) { ALT("nop; nop; nop", "lfence", 114); return consume(x + 1); }
`

// TestDiffAlternativesMoveWithChangedFunction: a changed function that
// gains an alternative takes its entries along; the entry and the
// replacement of the unchanged function moved in their sections (the
// shape of fs/exec.c's begin_new_exec in Debian's 6.1 updates) but say
// the same, so nothing is refused.
func TestDiffAlternativesMoveWithChangedFunction(t *testing.T) {
	post := strings.Replace(altUnit, `int user(int x) { ALT(`, `int user(int x) { ALT("nop; nop; nop", "stac", 308); ALT(`, 1)
	res := diff(t, altUnit, post, false)
	check(t, res, want{changed: []string{"user"}})
}

// TestDiffAlternativeReplacementChangedInUnchangedFunction: an unchanged
// function whose alternative now has other replacement code is refused:
// the kernel applied the old replacement to its code, and a livepatch
// does not replace that code.
func TestDiffAlternativeReplacementChangedInUnchangedFunction(t *testing.T) {
	post := strings.Replace(altUnit, `"lfence", 114`, `"mfence", 114`, 1)
	res := diff(t, altUnit, post, false)
	check(t, res, want{unsafe: []string{"section .altinstructions"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "alternative instructions of function other changed") {
		t.Errorf("reason %q", r)
	}
}

// TestDiffAlternativeFeatureChangedInUnchangedFunction: the same for an
// alternative that now depends on another CPU feature.
func TestDiffAlternativeFeatureChangedInUnchangedFunction(t *testing.T) {
	post := strings.Replace(altUnit, `"lfence", 114`, `"lfence", 115`, 1)
	res := diff(t, altUnit, post, false)
	check(t, res, want{unsafe: []string{"section .altinstructions"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "alternative instructions of function other changed") {
		t.Errorf("reason %q", r)
	}
}

// pvUnit has paravirt sites as the kernel's _paravirt_alt writes them:
// an indirect call through pv_ops and a 16-byte struct
// paravirt_patch_site (instr, type, len, clobbers).
const pvUnit = `
extern void hit(void);
#define PV(slot, type) asm volatile("771:\n\t call *pv_ops+" #slot "*8(%%rip)\n772:\n" \
	".pushsection .parainstructions,\"a\"\n .balign 8\n .quad 771b\n .byte " #type "\n" \
	" .byte 772b-771b\n .short 1\n .balign 8\n.popsection\n" ::: "memory")
void first(int a) { if (a) PV(3, 3); hit(); }
void other(void) { PV(5, 5); }
`

// TestDiffParavirtSitesByFunction: a paravirt site moves with a changed
// function (fs/exec.c's begin_new_exec site moved from +937 to +985 in
// Debian's 6.1 update), while one of an unchanged function that now
// says something else is refused.
func TestDiffParavirtSitesByFunction(t *testing.T) {
	moved := strings.Replace(pvUnit, "void first(int a) { if (a) PV(3, 3);", "void first(int a) { hit(); if (a) PV(3, 3);", 1)
	check(t, diff(t, pvUnit, moved, false), want{changed: []string{"first"}})

	retyped := strings.Replace(pvUnit, "PV(5, 5)", "PV(5, 6)", 1)
	res := diff(t, pvUnit, retyped, false)
	check(t, res, want{unsafe: []string{"section .parainstructions"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "paravirt patch sites of function other changed") {
		t.Errorf("reason %q", r)
	}
}
