package klpgen

import (
	"bytes"
	"debug/elf"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// altMacro builds an alternative as the kernel's ALTERNATIVE macro does
// (arch/x86/include/asm/alternative.h): the original instruction, a
// struct alt_instr in .altinstructions and the replacement in
// .altinstr_replacement.
const altMacro = `
#define ALT(old, new, feature) \
	"661:\n\t" old "\n662:\n" \
	".pushsection .altinstructions,\"a\"\n" \
	" .long 661b - .\n .long 663f - .\n .word " #feature "\n .byte 662b-661b\n .byte 664f-663f\n" \
	".popsection\n" \
	".pushsection .altinstr_replacement,\"ax\"\n663:\n\t" new "\n664:\n.popsection\n"
#define NOP5 ".byte 0x0f,0x1f,0x44,0,0"
extern void exported(void);
`

// TestGenerateCarriesAlternatives: the entries of a replaced function go
// into the module's .altinstructions, pointing at the copy of the
// function and at a copy of their replacement bytes, whose call is
// re-targeted; the entry of a function that is not replaced is left out
// with its replacement.
func TestGenerateCarriesAlternatives(t *testing.T) {
	const src = altMacro + `
void with_alt(int a)
{
	exported();
	asm volatile(ALT("nop; nop; nop", "clac", 9*32+20));
	if (a)
		asm volatile(ALT(NOP5, "call exported", 7*32+1));
}
void untouched(void)
{
	asm volatile(ALT("nop; nop; nop", "lfence", 3*32+18));
}
`
	syms := symbolsFor(t, []string{"exported"}, "with_alt", "untouched")
	out, post := generateUnit(t, src, []string{"with_alt"}, nil, syms)
	in, f := parseELF(t, post), parseELF(t, out.Object)

	// The object's entries of with_alt, with their kind bytes.
	inData := sectionData(t, in, ".altinstructions")
	var want []testReloc
	var wantData []byte
	for _, r := range relocsOf(t, in, ".rela.altinstructions") {
		if r.Off%12 != 0 || r.Sym != ".text.with_alt" {
			continue
		}
		base := uint64(len(wantData))
		wantData = append(wantData, inData[r.Off:r.Off+12]...)
		want = append(want, testReloc{Off: base, Type: elf.R_X86_64_PC32, Sym: ".text.with_alt", Addend: r.Addend})
	}
	if len(want) != 2 {
		t.Fatalf("the object has %d entries of with_alt, want 2", len(want))
	}
	// Replacements laid out in entry order: clac (3 bytes), call (5).
	want = []testReloc{want[0], {Off: 4, Type: elf.R_X86_64_PC32, Sym: ".altinstr_replacement", Addend: 0},
		want[1], {Off: 16, Type: elf.R_X86_64_PC32, Sym: ".altinstr_replacement", Addend: 3}}

	if got := sectionData(t, f, ".altinstructions"); !bytes.Equal(got, wantData) {
		t.Errorf(".altinstructions = % x, want the two entries of with_alt % x", got, wantData)
	}
	got := relocsOf(t, f, ".rela.altinstructions")
	for i := range got {
		got[i].Shndx = 0
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf(".altinstructions relocations (-want +got):\n%s", d)
	}
	if got, want := sectionData(t, f, ".altinstr_replacement"), []byte{0x0f, 0x01, 0xca, 0xe8, 0, 0, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf(".altinstr_replacement = % x, want clac and the call, not untouched's lfence: % x", got, want)
	}
	repl := relocsOf(t, f, ".rela.altinstr_replacement")
	if len(repl) != 1 || repl[0].Off != 4 || repl[0].Sym != "exported" || repl[0].Shndx != elf.SHN_UNDEF || repl[0].Addend != -4 {
		t.Errorf("replacement relocations %v, want the call at +4 to the exported symbol", repl)
	}
	if s := f.Section(".altinstructions"); s.Flags&elf.SHF_ALLOC == 0 {
		t.Errorf(".altinstructions flags %v: the kernel only sees allocated sections", s.Flags)
	}
}

// TestGenerateDropsAlternativesOfUncopiedCode: the entries of functions
// the module does not replace stay out of it, and so do their
// replacements.
func TestGenerateDropsAlternativesOfUncopiedCode(t *testing.T) {
	const src = altMacro + `
void target(void) { exported(); }
void untouched(void)
{
	asm volatile(ALT("nop; nop; nop", "lfence", 3*32+18));
}
`
	syms := symbolsFor(t, []string{"exported"}, "target", "untouched")
	out, _ := generateUnit(t, src, []string{"target"}, nil, syms)
	f := parseELF(t, out.Object)
	for _, name := range []string{".altinstructions", ".altinstr_replacement", ".altinstr_aux"} {
		if s := f.Section(name); s != nil {
			t.Errorf("the module has %s (%d bytes), want none: only untouched has an alternative", name, s.Size)
		}
	}
}

// TestGenerateRefusesAlternativeWithModuleRelocation: a replacement that
// calls a function of the patched module would need a livepatch
// relocation the kernel applies when the module is patched, after it
// copied the replacement: refused, naming the kernel functions.
func TestGenerateRefusesAlternativeWithModuleRelocation(t *testing.T) {
	const src = altMacro + `
__attribute__((noinline)) void helper(void) { asm volatile(""); }
void with_alt(void)
{
	exported();
	asm volatile(ALT(NOP5, "call helper", 7*32+1));
}
`
	syms := symbolsFor(t, []string{"exported"})
	_, err := Generate(compileC(t, src), []string{"with_alt"}, nil, syms,
		Options{ModuleName: "lp_test", Module: "mymod", ModuleSymbols: symbolsOfModule(t, src)})
	var u *UnsupportedError
	if !errors.As(err, &u) {
		t.Fatalf("err = %v, want *UnsupportedError", err)
	}
	if u.Function != "with_alt" || u.Section != ".altinstr_replacement" {
		t.Errorf("UnsupportedError names %s in %s, want with_alt in .altinstr_replacement", u.Function, u.Section)
	}
	for _, w := range []string{"helper of mymod", "klp_apply_object_relocs", "apply_alternatives"} {
		if !strings.Contains(u.Reason, w) {
			t.Errorf("reason %q does not say %q", u.Reason, w)
		}
	}
}

// TestGenerateCarriesStaticCPUHasCode: static_cpu_has jumps into
// .altinstr_aux until its alternative is applied; the piece of that code
// the replaced function jumps to is copied (test, and jumps back into the
// copy), not the piece of another function.
func TestGenerateCarriesStaticCPUHasCode(t *testing.T) {
	const cpuHas = `
	asm goto(ALT("jmp 6f", "", 5)
		".pushsection .altinstr_aux,\"ax\"\n6:\n testb $2, caps+3(%%rip)\n jnz %l[yes]\n jmp %l[no]\n.popsection\n"
		: : : : yes, no);
`
	src := altMacro + `
extern char caps[];
int has(void)
{
` + cpuHas + `
	return 0;
yes:
	exported();
	return 1;
no:
	return 2;
}
int other(void)
{
` + cpuHas + `
	return 3;
yes:
	return 4;
no:
	return 5;
}
`
	syms := symbolsFor(t, []string{"exported", "caps"}, "has", "other")
	out, _ := generateUnit(t, src, []string{"has"}, nil, syms)
	f := parseELF(t, out.Object)
	aux := sectionData(t, f, ".altinstr_aux")
	// testb $2, disp32(%rip); jnz rel32; jmp rel32.
	want := []byte{0xf6, 0x05, 0, 0, 0, 0, 0x02, 0x0f, 0x85, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0}
	if !bytes.Equal(aux, want) {
		t.Fatalf(".altinstr_aux = % x, want the one piece of has: % x", aux, want)
	}
	var targets []string
	for _, r := range relocsOf(t, f, ".rela.altinstr_aux") {
		targets = append(targets, r.Sym)
	}
	if d := cmp.Diff([]string{"caps", ".text.has", ".text.has"}, targets); d != "" {
		t.Errorf(".altinstr_aux relocations (-want +got):\n%s", d)
	}
	if !slices.ContainsFunc(relocsOf(t, f, ".rela.text.has"), func(r testReloc) bool {
		return r.Sym == ".altinstr_aux" && r.Addend == -4
	}) {
		t.Errorf("has does not jump to the copy of its piece: %v", relocsOf(t, f, ".rela.text.has"))
	}
	if n := len(sectionData(t, f, ".altinstructions")); n != 12 {
		t.Errorf(".altinstructions holds %d bytes, want has's one entry", n)
	}
}

// TestGenerateRefusesAlternativeOverModuleRelocation: an instruction an
// alternative may overwrite that calls a function of the patched module
// holds a livepatch relocation the kernel would write after it applied
// the alternative, over the replacement: refused.
func TestGenerateRefusesAlternativeOverModuleRelocation(t *testing.T) {
	const src = altMacro + `
__attribute__((noinline)) void helper(void) { asm volatile(""); }
void with_alt(void)
{
	exported();
	asm volatile(ALT("call helper", NOP5, 7*32+1));
}
`
	syms := symbolsFor(t, []string{"exported"})
	_, err := Generate(compileC(t, src), []string{"with_alt"}, nil, syms,
		Options{ModuleName: "lp_test", Module: "mymod", ModuleSymbols: symbolsOfModule(t, src)})
	var u *UnsupportedError
	if !errors.As(err, &u) {
		t.Fatalf("err = %v, want *UnsupportedError", err)
	}
	if u.Function != "with_alt" || u.Section != ".altinstructions" {
		t.Errorf("UnsupportedError names %s in %s, want with_alt in .altinstructions", u.Function, u.Section)
	}
	for _, w := range []string{"written over the new instruction", "helper of mymod", "klp_apply_object_relocs"} {
		if !strings.Contains(u.Reason, w) {
			t.Errorf("reason %q does not say %q", u.Reason, w)
		}
	}
}

// pvUnit has paravirt sites as the kernel's _paravirt_alt writes them
// (arch/x86/include/asm/paravirt_types.h): an indirect call through
// pv_ops and a 16-byte struct paravirt_patch_site.
const pvUnit = `
extern void exported(void);
#define PV(type) asm volatile("771:\n\t call *pv_ops+" #type "*8(%%rip)\n772:\n" \
	".pushsection .parainstructions,\"a\"\n .balign 8\n .quad 771b\n .byte " #type "\n" \
	" .byte 772b-771b\n .short 1\n .balign 8\n.popsection\n" ::: "memory")
void untouched(void) { PV(5); }
void with_pv(int a) { exported(); if (a) PV(3); }
`

// TestGenerateCarriesParavirtSites: the paravirt site of a replaced
// function goes into the module's .parainstructions, pointing at the
// copy, for the kernel to rewrite when it loads the module; the site of
// a function not replaced is left out.
func TestGenerateCarriesParavirtSites(t *testing.T) {
	syms := symbolsFor(t, []string{"exported", "pv_ops"}, "with_pv", "untouched")
	out, post := generateUnit(t, pvUnit, []string{"with_pv"}, nil, syms)
	in, f := parseELF(t, post), parseELF(t, out.Object)
	var want testReloc
	var wantData []byte
	for _, r := range relocsOf(t, in, ".rela.parainstructions") {
		if r.Sym == ".text.with_pv" {
			want = testReloc{Off: 0, Type: elf.R_X86_64_64, Sym: ".text.with_pv", Addend: r.Addend}
			wantData = sectionData(t, in, ".parainstructions")[r.Off : r.Off+16]
		}
	}
	if wantData == nil || wantData[8] != 3 || wantData[9] != 6 {
		t.Fatalf("the object's site of with_pv is % x, want type 3 and a 6-byte call", wantData)
	}
	if got := sectionData(t, f, ".parainstructions"); !bytes.Equal(got, wantData) {
		t.Errorf(".parainstructions = % x, want with_pv's one site % x", got, wantData)
	}
	got := relocsOf(t, f, ".rela.parainstructions")
	for i := range got {
		got[i].Shndx = 0
	}
	if d := cmp.Diff([]testReloc{want}, got); d != "" {
		t.Errorf(".parainstructions relocations (-want +got):\n%s", d)
	}
}
