package klpgen

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kernelUnit is shaped like a kernel compilation unit: target calls an
// exported function, an unchanged static helper and reads a static
// variable, a global unexported variable, a static table and a string.
const kernelUnit = `
extern int printk_like(const char *fmt, ...);
extern int unexported_global;
static int counter;
static int table[4] = {1, 2, 3, 4};

static int __attribute__((noinline)) helper(int x)
{
	return x * 3 + counter;
}

int target(int a)
{
	counter++;
	printk_like("target %d\n", a);
	return helper(a) + unexported_global + table[a & 3];
}
`

var kernelUnitMap = []string{"target", "helper", "counter", "unexported_global", "table"}

func generateUnit(t testing.TB, src string, changed, added []string, syms *Symbols, extra ...string) (*Output, []byte) {
	t.Helper()
	post := compileC(t, src, extra...)
	out, err := Generate(post, changed, added, syms, Options{ModuleName: "lp_test", Description: "klpgen test"})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return out, post
}

func TestGenerateKernelShapedUnit(t *testing.T) {
	syms := symbolsFor(t, []string{"printk_like"}, kernelUnitMap...)
	out, post := generateUnit(t, kernelUnit, []string{"target"}, nil, syms)
	pf := parseELF(t, post)
	f := parseELF(t, out.Object)

	// The function's code, byte for byte, under __klp_new_target.
	if got, want := sectionData(t, f, ".text.target"), sectionData(t, pf, ".text.target"); !bytes.Equal(got, want) {
		t.Errorf(".text.target differs from the patched object's")
	}
	sym := symbolNamed(t, f, "__klp_new_target")
	if elf.ST_BIND(sym.Info) != elf.STB_GLOBAL || elf.ST_TYPE(sym.Info) != elf.STT_FUNC ||
		f.Sections[sym.Section].Name != ".text.target" || sym.Size != symbolNamed(t, pf, "target").Size {
		t.Errorf("__klp_new_target = %+v in %s", sym, f.Sections[sym.Section].Name)
	}

	// The string literal's section is copied whole.
	var strSec string
	for _, s := range pf.Sections {
		if strings.HasPrefix(s.Name, ".rodata") && s.Flags&elf.SHF_STRINGS != 0 {
			strSec = s.Name
		}
	}
	if strSec == "" {
		t.Fatal("the compiler put the string nowhere expected")
	}
	if got, want := sectionData(t, f, strSec), sectionData(t, pf, strSec); !bytes.Equal(got, want) {
		t.Errorf("%s: got %q, want %q", strSec, got, want)
	}

	// Writable data is never copied: the originals are used.
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".bss") || strings.HasPrefix(s.Name, ".data") || s.Flags&elf.SHF_WRITE != 0 {
			t.Errorf("patch.o has writable section %s", s.Name)
		}
	}

	// Every relocation, re-targeted.
	got := map[string]elf.SectionIndex{}
	for _, r := range relocsOf(t, f, ".rela.text.target") {
		got[r.Sym] = r.Shndx
		if r.Sym == "__klp_sym__vmlinux__counter__0" && r.Type == elf.R_X86_64_PC32 && r.Addend != -4 && r.Addend != -5 {
			t.Errorf("counter relocation %v: addend not carried over", r)
		}
	}
	want := map[string]elf.SectionIndex{
		strSec:                           elf.SectionIndex(sectionIndex(f, strSec)), // a copy
		"printk_like":                    elf.SHN_UNDEF,                             // exported: a plain undefined symbol
		"__klp_sym__vmlinux__counter__0": elf.SHN_UNDEF,                             // .bss.counter: the original
		"__klp_sym__vmlinux__helper__0":  elf.SHN_UNDEF,                             // static helper, unchanged
		"__klp_sym__vmlinux__unexported_global__0": elf.SHN_UNDEF,
		"__klp_sym__vmlinux__table__0":             elf.SHN_UNDEF, // .data.table: the original
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("relocation targets (-want +got):\n%s", d)
	}

	wantKLP := []KLPSymbol{
		{Object: "vmlinux", Name: "counter"}, {Object: "vmlinux", Name: "helper"}, {Object: "vmlinux", Name: "table"}, {Object: "vmlinux", Name: "unexported_global"},
	}
	if d := cmp.Diff(wantKLP, out.KLPSymbols); d != "" {
		t.Errorf("KLPSymbols (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"printk_like"}, out.Exports); d != "" {
		t.Errorf("Exports (-want +got):\n%s", d)
	}
	wantFuncs := []Function{{Name: "target", Symbol: "__klp_new_target", Size: symbolNamed(t, pf, "target").Size, Object: "vmlinux",
		Sections: []string{".text.target"}}}
	if d := cmp.Diff(wantFuncs, out.Functions); d != "" {
		t.Errorf("Functions (-want +got):\n%s", d)
	}
	if len(out.Warnings) != 1 || !strings.Contains(out.Warnings[0], "__fentry__") {
		t.Errorf("Warnings = %q, want one about the missing ftrace calls", out.Warnings)
	}

	for _, s := range []string{
		`void __klp_new_target(void);`,
		`.old_name = "target",`,
		`.new_func = __klp_new_target,`,
		`.old_sympos = 0,`,
		`.name = NULL, /* vmlinux */`,
		`.mod = THIS_MODULE,`,
		`return klp_enable_patch(&splicefleet_patch);`,
		`MODULE_LICENSE("GPL");`,
		`MODULE_INFO(livepatch, "Y");`,
		`MODULE_DESCRIPTION("klpgen test");`,
	} {
		if !strings.Contains(string(out.Stub), s) {
			t.Errorf("stub lacks %q:\n%s", s, out.Stub)
		}
	}
	if string(out.Kbuild) != "# Generated by splicefleet (klpgen). Build with\n"+
		"#   make -C <kernel build folder> M=$PWD KBUILD_MODPOST_WARN=1 modules\n"+
		"obj-m := lp_test.o\nlp_test-y := stub.o patch.o\n" {
		t.Errorf("Kbuild:\n%s", out.Kbuild)
	}
	if d := cmp.Diff([]string{"KBUILD_MODPOST_WARN=1"}, out.MakeArgs); d != "" {
		t.Errorf("MakeArgs (-want +got):\n%s", d)
	}
	files := out.Files()
	if len(files) != 4 || files[ObjectCmdFile] == nil || !bytes.Equal(files[ObjectFile], out.Object) {
		t.Errorf("Files() = %d files", len(files))
	}

	readelfClean(t, out.Object, "-a", "-W")
}

func sectionIndex(f *elf.File, name string) int {
	for i, s := range f.Sections {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// TestGenerateIsDeterministic: the same inputs give the same bytes.
func TestGenerateIsDeterministic(t *testing.T) {
	syms := symbolsFor(t, []string{"printk_like"}, kernelUnitMap...)
	post := compileC(t, kernelUnit)
	opts := Options{ModuleName: "lp_test"}
	a, err := Generate(post, []string{"target"}, nil, syms, opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, err := Generate(post, []string{"target"}, nil, syms, opts)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Object, b.Object) || !bytes.Equal(a.Stub, b.Stub) {
			t.Fatal("two runs differ")
		}
	}
}

// fillers are n System.map names of other units.
func fillers(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s_%d", prefix, i))
	}
	return out
}

// ambiguousMap is a System.map where another unit's static counter and
// target lie far from this unit's, whose counter is the second.
func ambiguousMap() []string {
	var m []string
	m = append(m, fillers("early", 100)...)
	m = append(m, "counter") // another unit's static counter
	m = append(m, fillers("middle", 100)...)
	m = append(m, kernelUnitMap...) // this unit: its counter is the second
	m = append(m, fillers("late", 100)...)
	m = append(m, "target") // another unit's static target
	m = append(m, fillers("end", 100)...)
	return m
}

// TestGeneratePositionsAmbiguousSymbols: with PositionsByOrder, a static
// variable and the replaced function whose names other units use too are
// found at the kallsyms position of the copy among the unit's own
// symbols in address order, not another unit's:
// .klp.sym.vmlinux.counter,2 and old_sympos 1, with a warning for each.
func TestGeneratePositionsAmbiguousSymbols(t *testing.T) {
	out, _ := generateUnitOpts(t, kernelUnit, []string{"target"}, symbolsFor(t, []string{"printk_like"}, ambiguousMap()...),
		Options{ModuleName: "lp_test", PositionsByOrder: true})
	byOrder := 0
	for _, w := range out.Warnings {
		if strings.Contains(w, "judged by the symbols' order alone") {
			byOrder++
		}
	}
	if byOrder != 2 {
		t.Errorf("warnings %q, want one for counter and one for target", out.Warnings)
	}
	if !slices.Contains(out.KLPSymbols, KLPSymbol{Object: "vmlinux", Name: "counter", Pos: 2}) {
		t.Errorf("KLPSymbols = %v, want counter at position 2", out.KLPSymbols)
	}
	if !strings.Contains(string(out.Stub), ".old_sympos = 1,") {
		t.Errorf("the stub does not replace the first target:\n%s", out.Stub)
	}
	if len(out.Functions) != 1 || out.Functions[0].Sympos != 1 {
		t.Errorf("Functions = %+v, want target at position 1", out.Functions)
	}
}

// TestGenerateRefusesPositionByOrder: without PositionsByOrder, and with
// no unstripped vmlinux read, the same unit is refused: the order's
// judgement can be another unit's copy.
func TestGenerateRefusesPositionByOrder(t *testing.T) {
	syms := symbolsFor(t, []string{"printk_like"}, ambiguousMap()...)
	_, err := Generate(compileC(t, kernelUnit), []string{"target"}, nil, syms, Options{ModuleName: "lp_test"})
	var amb *AmbiguousSymbolError
	if !errors.As(err, &amb) || !amb.NeedsSourceFiles || !strings.Contains(err.Error(), "-dbg package") {
		t.Fatalf("err = %v, want *AmbiguousSymbolError naming the -dbg package", err)
	}
}

// TestGenerateRefusesAmbiguousSymbol: when no copy of an ambiguous name
// lies among the unit's other symbols, or two lie equally close, the
// module would reach a symbol of another unit: refused, with the reason.
func TestGenerateRefusesAmbiguousSymbol(t *testing.T) {
	for name, tc := range map[string]struct {
		m    []string
		want string
	}{
		// Both copies of counter within reach of the unit's symbols.
		"equally close": {append(slices.Clone(kernelUnitMap), "counter"), "equally close"},
		// Neither copy of counter near the unit's other symbols.
		"far": {slices.Concat(fillers("a", 100), []string{"counter"}, fillers("b", 100), []string{"counter"}, fillers("c", 100),
			[]string{"target", "helper", "unexported_global", "table"}), "none of them lies among"},
	} {
		t.Run(name, func(t *testing.T) {
			syms := symbolsFor(t, []string{"printk_like", "unexported_global"}, tc.m...)
			_, err := Generate(compileC(t, kernelUnit), []string{"target"}, nil, syms, Options{ModuleName: "lp_test"})
			var amb *AmbiguousSymbolError
			if !errors.As(err, &amb) {
				t.Fatalf("err = %v, want *AmbiguousSymbolError", err)
			}
			if amb.Name != "counter" || amb.Count != 2 || amb.Function != "target" || !strings.Contains(amb.Reason, tc.want) {
				t.Errorf("got %+v, want counter, 2, target and a reason saying %q", amb, tc.want)
			}
			if !strings.Contains(err.Error(), `"counter"`) || !strings.Contains(err.Error(), "2 vmlinux symbols") {
				t.Errorf("message %q does not name the symbol and the count", err)
			}
		})
	}
}

func TestGenerateRefusesAmbiguousReplacedFunction(t *testing.T) {
	syms := symbolsFor(t, []string{"printk_like"}, append(kernelUnitMap, "target", "target")...)
	_, err := Generate(compileC(t, kernelUnit), []string{"target"}, nil, syms, Options{ModuleName: "lp_test"})
	var amb *AmbiguousSymbolError
	if !errors.As(err, &amb) || amb.Name != "target" || amb.Count != 3 || !strings.Contains(amb.Reason, "equally close") {
		t.Fatalf("err = %v, want *AmbiguousSymbolError for target, 3, equally close", err)
	}
}

func TestGenerateRefusesMissingSymbol(t *testing.T) {
	for _, missing := range []string{"unexported_global", "target"} {
		t.Run(missing, func(t *testing.T) {
			var names []string
			for _, n := range kernelUnitMap {
				if n != missing {
					names = append(names, n)
				}
			}
			syms := symbolsFor(t, []string{"printk_like"}, names...)
			_, err := Generate(compileC(t, kernelUnit), []string{"target"}, nil, syms, Options{ModuleName: "lp_test"})
			var m *MissingSymbolError
			if !errors.As(err, &m) || m.Name != missing || m.Function != "target" {
				t.Fatalf("err = %v, want *MissingSymbolError for %s", err, missing)
			}
		})
	}
}

// TestGenerateRefusesSpecialSections: an entry pointing into a replaced
// function is refused, naming both, in a section nobody taught the
// generator, and in a table the generator copies (__bug_table,
// __ex_table, .altinstructions, __jump_table, .static_call_sites,
// .parainstructions) when it lacks the kernel's entry layout (here a
// lone 4-byte field), since the generator cannot tell what it says.
func TestGenerateRefusesSpecialSections(t *testing.T) {
	for _, sec := range []string{"__bug_table", "__ex_table", ".altinstructions", "__jump_table", ".static_call_sites", ".parainstructions", ".mystery"} {
		t.Run(sec, func(t *testing.T) {
			src := `
extern void exported(void);
void with_entry(int a)
{
	exported();
	if (a)
		asm volatile("1: ud2\n .pushsection ` + sec + `,\"aw\"\n .long 1b - .\n .popsection");
}
`
			syms := symbolsFor(t, []string{"exported"}, "with_entry")
			_, err := Generate(compileC(t, src), []string{"with_entry"}, nil, syms, Options{ModuleName: "lp_test"})
			var u *UnsupportedError
			if !errors.As(err, &u) {
				t.Fatalf("err = %v, want *UnsupportedError", err)
			}
			if u.Function != "with_entry" || u.Section != sec {
				t.Errorf("UnsupportedError names %s in %s, want with_entry in %s", u.Function, u.Section, sec)
			}
			if !strings.Contains(err.Error(), "with_entry") || !strings.Contains(err.Error(), sec) {
				t.Errorf("message %q does not name the function and the section", err)
			}
		})
	}
}

// TestGenerateDropsMetadata: entries in sections the new code can go
// without are left out, and the generation succeeds.
func TestGenerateDropsMetadata(t *testing.T) {
	var asm strings.Builder
	for _, sec := range []string{".discard.reachable", ".return_sites", ".retpoline_sites", "__mcount_loc", ".smp_locks", ".call_sites", ".ibt_endbr_seal"} {
		asm.WriteString(` .pushsection ` + sec + `,\"a\"\n .long 1b - .\n .popsection\n`)
	}
	src := `
extern void exported(void);
void annotated(void)
{
	asm volatile("1: nop\n` + asm.String() + `");
	exported();
}
`
	syms := symbolsFor(t, []string{"exported"}, "annotated")
	out, _ := generateUnit(t, src, []string{"annotated"}, nil, syms)
	f := parseELF(t, out.Object)
	if d := cmp.Diff([]string{"", ".text.annotated", ".rela.text.annotated", ".note.GNU-stack", ".symtab", ".strtab", ".shstrtab"}, sectionNames(f)); d != "" {
		t.Errorf("sections (-want +got):\n%s", d)
	}
}

// TestGenerateColdPart: gcc's NAME.cold part comes along, and the jumps
// between the two parts go to the copies.
func TestGenerateColdPart(t *testing.T) {
	src := `
extern void rare(const char *) __attribute__((cold));
extern void sink(int);
void split(int a)
{
	if (a > 5) {
		rare("rare path");
		rare("rare path 2");
		sink(a * 7);
	}
	sink(a);
}
`
	syms := symbolsFor(t, []string{"rare", "sink"}, "split", "split.cold")
	out, post := generateUnit(t, src, []string{"split"}, nil, syms)
	if symbolNamed(t, parseELF(t, post), "split.cold").Name == "" {
		t.Fatal("gcc made no cold part")
	}
	f := parseELF(t, out.Object)
	cold := symbolNamed(t, f, "__klp_new_split.cold")
	if f.Sections[cold.Section].Name != ".text.unlikely.split" || elf.ST_BIND(cold.Info) != elf.STB_LOCAL {
		t.Errorf("cold part symbol %+v", cold)
	}
	for _, sec := range []string{".rela.text.split", ".rela.text.unlikely.split"} {
		for _, r := range relocsOf(t, f, sec) {
			if strings.HasPrefix(r.Sym, PlaceholderPrefix) {
				t.Errorf("%s: %v goes to the kernel, want the copy", sec, r)
			}
		}
	}
	hasJump := func(sec, to string) bool {
		for _, r := range relocsOf(t, f, sec) {
			if r.Sym == to {
				return true
			}
		}
		return false
	}
	if !hasJump(".rela.text.split", ".text.unlikely.split") || !hasJump(".rela.text.unlikely.split", ".text.split") {
		t.Errorf("the parts do not refer to each other's copies")
	}
	if d := cmp.Diff([]string{".text.split", ".text.unlikely.split"}, out.Functions[0].Sections); d != "" {
		t.Errorf("Sections (-want +got):\n%s", d)
	}
	// objdiff lists a cold part gcc split off anew as added, and one that
	// changed as changed: each goes with its function, once.
	for _, tc := range []struct{ changed, added []string }{
		{[]string{"split"}, []string{"split.cold"}},
		{[]string{"split", "split.cold"}, nil},
	} {
		again, err := Generate(post, tc.changed, tc.added, syms, Options{ModuleName: "lp_test"})
		if err != nil {
			t.Errorf("changed %v, added %v: %v", tc.changed, tc.added, err)
			continue
		}
		if len(again.Functions) != 1 || !slices.Equal(again.Functions[0].Sections, out.Functions[0].Sections) {
			t.Errorf("changed %v, added %v: functions %+v", tc.changed, tc.added, again.Functions)
		}
	}
}

// TestGenerateChangedCallsChangedAndAdded: a replaced function calls
// another replaced one and a new helper directly, in the module.
func TestGenerateChangedCallsChangedAndAdded(t *testing.T) {
	src := `
extern void sink(int);
static int __attribute__((noinline)) fresh(int x) { sink(x); return x + 41; }
int __attribute__((noinline)) second(int x) { sink(x); return x * 2; }
int first(int x) { return second(x) + fresh(x); }
`
	syms := symbolsFor(t, []string{"sink"}, "first", "second") // fresh is new: not in System.map
	out, _ := generateUnit(t, src, []string{"first", "second"}, []string{"fresh"}, syms)
	f := parseELF(t, out.Object)
	got := map[string]bool{}
	for _, r := range relocsOf(t, f, ".rela.text.first") {
		got[r.Sym] = true
	}
	if !got["__klp_new_second"] || !got[".text.fresh"] && !got["__klp_add_fresh"] {
		t.Errorf("first calls %v, want __klp_new_second and the copy of fresh", got)
	}
	add := symbolNamed(t, f, "__klp_add_fresh")
	if elf.ST_BIND(add.Info) != elf.STB_LOCAL {
		t.Errorf("__klp_add_fresh is %v, want local", elf.ST_BIND(add.Info))
	}
	if strings.Contains(string(out.Stub), "fresh") {
		t.Errorf("the stub replaces the added function:\n%s", out.Stub)
	}
	if d := cmp.Diff([]bool{false, false, true}, []bool{out.Functions[0].Added, out.Functions[1].Added, out.Functions[2].Added}); d != "" {
		t.Errorf("Added (-want +got):\n%s", d)
	}
}

// TestGenerateUnreachedAddedFunction: an added function nothing the
// module carries calls is listed as unreached (its caller is not in the
// patch); one a replaced function calls is not.
func TestGenerateUnreachedAddedFunction(t *testing.T) {
	src := `
extern void sink(int);
static int __attribute__((noinline, used)) fresh(int x) { sink(x); return x + 41; }
int __attribute__((noinline)) orphan(int x) { sink(x); return fresh(x) - 1; }
int first(int x) { sink(x); return x + 2; }
`
	syms := symbolsFor(t, []string{"sink"}, "first")
	out, _ := generateUnit(t, src, []string{"first"}, []string{"fresh", "orphan"}, syms)
	want := []BundleSymbol{{Name: "orphan", Object: "vmlinux"}}
	if d := cmp.Diff(want, out.Unreached); d != "" {
		t.Errorf("Unreached (-want +got):\n%s", d)
	}
}

// TestGenerateSectionWithSeveralObjects: a relocation against a section
// holding several variables (gas writes ".data.shared-5" for a static
// one) goes to the variable the instruction really addresses, whatever
// immediate follows the displacement. objdump's instruction boundaries
// are the oracle.
func TestGenerateSectionWithSeveralObjects(t *testing.T) {
	src := `
static int first_var __attribute__((section(".data.shared"), used)) = 1;
static int second_var __attribute__((section(".data.shared"), used)) = 2;
static int third_var __attribute__((section(".data.shared"), used)) = 3;
static short fourth_var __attribute__((section(".data.shared"), used)) = 4;
int reader(void)
{
	second_var += 5;      /* imm8 after the displacement */
	third_var = 0x12345;  /* imm32 */
	fourth_var = 0x1234;  /* imm16 */
	if (first_var & 0x40) /* test imm8 or imm32 */
		return 1;
	return first_var + third_var + fourth_var;
}
`
	syms := symbolsFor(t, nil, "reader", "first_var", "second_var", "third_var", "fourth_var")
	out, post := generateUnit(t, src, []string{"reader"}, nil, syms)
	pf := parseELF(t, post)

	bounds := objdumpBoundaries(t, post, ".text.reader")
	vars := map[string]elf.Symbol{}
	for _, n := range []string{"first_var", "second_var", "third_var", "fourth_var"} {
		vars[n] = symbolNamed(t, pf, n)
	}
	in := relocsOf(t, pf, ".rela.text.reader")
	got := relocsOf(t, parseELF(t, out.Object), ".rela.text.reader")
	if len(in) != len(got) {
		t.Fatalf("%d relocations became %d", len(in), len(got))
	}
	seen := map[string]bool{}
	for i, r := range in {
		end := uint64(0)
		for _, b := range bounds {
			if b > r.Off {
				end = b
				break
			}
		}
		target := uint64(r.Addend + int64(end-r.Off))
		want := ""
		for n, v := range vars {
			if target >= v.Value && target < v.Value+v.Size {
				want = n
			}
		}
		wantSym := "__klp_sym__vmlinux__" + want + "__0"
		if got[i].Sym != wantSym || got[i].Addend != r.Addend-int64(vars[want].Value) {
			t.Errorf("%v became %v, want %s%+d", r, got[i], wantSym, r.Addend-int64(vars[want].Value))
		}
		seen[want] = true
	}
	if len(seen) != 4 {
		t.Errorf("the unit addressed %v; want all four variables", seen)
	}
}

// objdumpBoundaries lists the instruction starts of a section, and its
// end, as objdump decodes them.
func objdumpBoundaries(t *testing.T, obj []byte, section string) []uint64 {
	t.Helper()
	path := filepath.Join(t.TempDir(), "unit.o")
	if err := os.WriteFile(path, obj, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("objdump", "-d", "--insn-width=16", "-j", section, path).Output()
	if err != nil {
		t.Fatalf("objdump (apt-get install binutils): %v", err)
	}
	var bounds []uint64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		addr, _, ok := strings.Cut(strings.TrimLeft(sc.Text(), " "), ":\t")
		if a, err := strconv.ParseUint(addr, 16, 64); ok && err == nil {
			bounds = append(bounds, a)
		}
	}
	return append(bounds, parseELF(t, obj).Section(section).Size)
}

// TestGenerateNewConstantIsCopied: read-only data the kernel does not
// have (new in the patch) is copied; new writable data is refused.
func TestGenerateNewConstantIsCopied(t *testing.T) {
	src := `
static const int fresh_table[4] = {7, 11, 13, 17};
int lookup(int i) { return fresh_table[i & 3]; }
`
	syms := symbolsFor(t, nil, "lookup")
	out, post := generateUnit(t, src, []string{"lookup"}, nil, syms)
	f := parseELF(t, out.Object)
	if !bytes.Equal(sectionData(t, f, ".rodata.fresh_table"), sectionData(t, parseELF(t, post), ".rodata.fresh_table")) {
		t.Error(".rodata.fresh_table not copied")
	}
	if len(out.KLPSymbols) != 0 {
		t.Errorf("KLPSymbols = %v", out.KLPSymbols)
	}

	src = `
static int fresh_state;
int bump(void) { return ++fresh_state; }
`
	syms = symbolsFor(t, nil, "bump")
	_, err := Generate(compileC(t, src), []string{"bump"}, nil, syms, Options{ModuleName: "lp_test"})
	var m *MissingSymbolError
	if !errors.As(err, &m) || m.Name != "fresh_state" {
		t.Fatalf("err = %v, want *MissingSymbolError for fresh_state", err)
	}
}

// TestGenerateRefusesAnonymousWritableData: writable data without a
// symbol cannot be found in the kernel and must not be copied.
func TestGenerateRefusesAnonymousWritableData(t *testing.T) {
	src := `
int *anon(void)
{
	int *p;
	asm volatile(".pushsection .data.anon,\"aw\"\n2: .long 0\n .popsection\n movq $2b, %0" : "=r"(p));
	return p;
}
`
	syms := symbolsFor(t, nil, "anon")
	_, err := Generate(compileC(t, src), []string{"anon"}, nil, syms, Options{ModuleName: "lp_test"})
	var u *UnsupportedError
	if !errors.As(err, &u) || u.Section != ".data.anon" || !strings.Contains(u.Reason, "writable") {
		t.Fatalf("err = %v, want *UnsupportedError for .data.anon", err)
	}
}

// TestGenerateTraceability: with ftrace flags, a notrace function cannot
// be replaced; traced ones can, and no warning is given.
func TestGenerateTraceability(t *testing.T) {
	src := `
extern void sink(int);
void traced(int a) { sink(a); }
__attribute__((no_instrument_function)) void untraced(int a) { sink(a + 1); }
`
	syms := symbolsFor(t, []string{"sink", "__fentry__"}, "traced", "untraced")
	out, _ := generateUnit(t, src, []string{"traced"}, nil, syms, "-pg", "-mfentry")
	if len(out.Warnings) != 0 {
		t.Errorf("Warnings = %q", out.Warnings)
	}
	_, err := Generate(compileC(t, src, "-pg", "-mfentry"), []string{"untraced"}, nil, syms, Options{ModuleName: "lp_test"})
	var u *UnsupportedError
	if !errors.As(err, &u) || u.Function != "untraced" || !strings.Contains(u.Reason, "__fentry__") {
		t.Fatalf("err = %v, want *UnsupportedError for untraced", err)
	}
}

func TestGenerateNamespacedExport(t *testing.T) {
	src := `
extern void cxl_thing(int);
void user(int a) { cxl_thing(a); }
`
	syms := symbolsFor(t, []string{"cxl_thing:CXL"}, "user")
	out, _ := generateUnit(t, src, []string{"user"}, nil, syms)
	if d := cmp.Diff([]string{"CXL"}, out.Namespaces); d != "" {
		t.Errorf("Namespaces (-want +got):\n%s", d)
	}
	if !strings.Contains(string(out.Stub), "MODULE_IMPORT_NS(CXL);") {
		t.Errorf("stub does not import CXL:\n%s", out.Stub)
	}
}

func TestGenerateRefusesUnsplitSections(t *testing.T) {
	src := `
extern void sink(int);
void one(int a) { sink(a); }
void two(int a) { sink(a + 2); }
`
	syms := symbolsFor(t, []string{"sink"}, "one", "two")
	post := compileC(t, src, "-fno-function-sections")
	_, err := Generate(post, []string{"one"}, nil, syms, Options{ModuleName: "lp_test"})
	var u *UnsupportedError
	if !errors.As(err, &u) || !strings.Contains(u.Reason, "-ffunction-sections") {
		t.Fatalf("err = %v, want *UnsupportedError asking for -ffunction-sections", err)
	}
}

func TestGenerateInvalidArguments(t *testing.T) {
	syms := symbolsFor(t, []string{"printk_like"}, kernelUnitMap...)
	post := compileC(t, kernelUnit)
	for _, tc := range []struct {
		name           string
		changed, added []string
		opts           Options
		want           error
	}{
		{"no function", nil, nil, Options{ModuleName: "lp"}, ErrInvalidArgument},
		{"unknown function", []string{"nope"}, nil, Options{ModuleName: "lp"}, ErrInvalidArgument},
		{"a variable", []string{"counter"}, nil, Options{ModuleName: "lp"}, ErrInvalidArgument},
		{"listed twice", []string{"target"}, []string{"target"}, Options{ModuleName: "lp"}, ErrInvalidArgument},
		{"empty module name", []string{"target"}, nil, Options{}, ErrInvalidArgument},
		{"bad module name", []string{"target"}, nil, Options{ModuleName: "lp-fix"}, ErrInvalidArgument},
		{"part name", []string{"target"}, nil, Options{ModuleName: "patch"}, ErrInvalidArgument},
		{"long description", []string{"target"}, nil, Options{ModuleName: "lp", Description: strings.Repeat("x", 1025)}, ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Generate(post, tc.changed, tc.added, syms, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Generate([]byte("not an object"), []string{"target"}, nil, syms, Options{ModuleName: "lp"}); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage: err = %v, want ErrMalformed", err)
	}
	if _, err := Generate(post, []string{"target"}, nil, nil, Options{ModuleName: "lp"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("no symbols: err = %v, want ErrInvalidArgument", err)
	}
}

func TestCString(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:        `"plain"`,
		`say "hi" \ o`: `"say \"hi\" \\ o"`,
		"tab\tnl\n":    `"tab\011nl\012"`,
		"??=":          `"\?\?="`,
		"\xff":         `"\377"`,
	} {
		if got := cString(in); got != want {
			t.Errorf("cString(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestGenerateAcceptsFunctionPrefixSymbols: the padding symbols newer
// kernels put before a function, in its section, belong to it.
func TestGenerateAcceptsFunctionPrefixSymbols(t *testing.T) {
	src := `
extern void sink(int);
asm(".pushsection .text.padded,\"ax\",@progbits\n"
    "__pfx_padded: .skip 16, 0x90\n"
    ".globl padded\n.type padded,@function\npadded: ret\n.size padded,.-padded\n"
    ".popsection");
`
	syms := symbolsFor(t, []string{"sink"}, "padded")
	out, _ := generateUnit(t, src, []string{"padded"}, nil, syms)
	f := parseELF(t, out.Object)
	if s := symbolNamed(t, f, "__klp_new_padded"); s.Value != 16 || s.Size != 1 {
		t.Errorf("__klp_new_padded = %+v, want value 16, size 1", s)
	}
}

// TestGenerateCopiesORCEntries: of parallel ORC tables, exactly the
// entries of the copied functions come along, in step.
func TestGenerateCopiesORCEntries(t *testing.T) {
	// Each function records two entries: its start and its end, with
	// recognisable contents (six bytes each).
	orc := func(fn, a, b string) string {
		return `asm(".pushsection .text.` + fn + `,\"ax\",@progbits\n.globl ` + fn + `\n.type ` + fn + `,@function\n` +
			fn + `: nop\nret\n.size ` + fn + `,.-` + fn + `\n.L` + fn + `_end:\n.popsection\n` +
			`.pushsection .orc_unwind_ip,\"a\"\n.long ` + fn + ` - .\n.long .L` + fn + `_end - .\n.popsection\n` +
			`.pushsection .orc_unwind,\"a\"\n.ascii \"` + a + `\"\n.ascii \"` + b + `\"\n.popsection\n");` + "\n"
	}
	src := orc("keep_me", "KEEP-1", "KEEP-2") + orc("leave_me", "LEAV-1", "LEAV-2") + orc("keep_too", "TOO--1", "TOO--2")
	syms := symbolsFor(t, nil, "keep_me", "leave_me", "keep_too")
	out, _ := generateUnit(t, src, []string{"keep_me", "keep_too"}, nil, syms)
	f := parseELF(t, out.Object)
	if got := string(sectionData(t, f, ".orc_unwind")); got != "KEEP-1KEEP-2TOO--1TOO--2" {
		t.Errorf(".orc_unwind = %q", got)
	}
	var got []string
	for _, r := range relocsOf(t, f, ".rela.orc_unwind_ip") {
		got = append(got, fmt.Sprintf("%#x %v %s%+d", r.Off, r.Type, r.Sym, r.Addend))
	}
	want := []string{
		"0x0 R_X86_64_PC32 .text.keep_me+0", "0x4 R_X86_64_PC32 .text.keep_me+2",
		"0x8 R_X86_64_PC32 .text.keep_too+0", "0xc R_X86_64_PC32 .text.keep_too+2",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf(".orc_unwind_ip relocations (-want +got):\n%s", d)
	}
	if n := len(sectionData(t, f, ".orc_unwind_ip")); n != 16 {
		t.Errorf(".orc_unwind_ip has %d bytes, want 16", n)
	}
}

func TestGenerateRefusesNonZeroRelocationSite(t *testing.T) {
	syms := symbolsFor(t, []string{"printk_like"}, kernelUnitMap...)
	post := compileC(t, kernelUnit)
	pf := parseELF(t, post)
	r := relocsOf(t, pf, ".rela.text.target")[0]
	post[pf.Section(".text.target").Offset+r.Off] = 0x42
	_, err := Generate(post, []string{"target"}, nil, syms, Options{ModuleName: "lp_test"})
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "non-zero") {
		t.Fatalf("err = %v, want ErrMalformed about non-zero bytes", err)
	}
}

func TestGenerateRefusesUnknownRelocationType(t *testing.T) {
	src := `
extern int sink;
void odd(void) { asm volatile(".reloc ., R_X86_64_GOTPCREL, sink\n .long 0"); }
`
	syms := symbolsFor(t, []string{"sink"}, "odd")
	_, err := Generate(compileC(t, src), []string{"odd"}, nil, syms, Options{ModuleName: "lp_test"})
	var u *UnsupportedError
	if !errors.As(err, &u) || u.Function != "odd" || !strings.Contains(u.Reason, "R_X86_64_GOTPCREL") {
		t.Fatalf("err = %v, want *UnsupportedError naming R_X86_64_GOTPCREL", err)
	}
}

// newDataUnit adds state only the patched code knows: a counter with an
// initial value and a once-flag local to the function.
const newDataUnit = `
extern int printk_like(const char *fmt, ...);
static int hits = 7;

int target(int a)
{
	static char warned;
	if (!warned) {
		warned = 1;
		printk_like("target %d\n", a);
	}
	return a + hits++;
}
`

// TestGenerateCarriesNewData: variables the patch adds get their only
// copy in the module, initialized as in the patched object, and the new
// code refers to that copy; without NewData they are missing from the
// kernel and refused.
func TestGenerateCarriesNewData(t *testing.T) {
	// Another unit of the kernel has a static "hits" of its own.
	syms := symbolsFor(t, []string{"printk_like"}, "target", "hits")
	post := compileC(t, newDataUnit)
	if _, err := Generate(post, []string{"target"}, nil, symbolsFor(t, []string{"printk_like"}, "target"), Options{ModuleName: "lp_test"}); !errors.As(err, new(*MissingSymbolError)) {
		t.Fatalf("new data without NewData: %v, want *MissingSymbolError", err)
	}
	out, err := Generate(post, []string{"target"}, nil, syms, Options{ModuleName: "lp_test", NewData: []string{"hits", "warned.0"}})
	if err != nil {
		t.Fatal(err)
	}
	f := parseELF(t, out.Object)
	data := f.Section(".data.hits")
	if data == nil || data.Flags&elf.SHF_WRITE == 0 {
		t.Fatalf("no writable .data.hits in the module: %v", data)
	}
	if b := sectionData(t, f, ".data.hits"); !bytes.Equal(b, []byte{7, 0, 0, 0}) {
		t.Errorf(".data.hits = %v, want the initial value 7", b)
	}
	if bss := f.Section(".bss.warned.0"); bss == nil || bss.Type != elf.SHT_NOBITS || bss.Size != 1 {
		t.Errorf(".bss.warned.0 = %+v, want one byte of NOBITS", bss)
	}
	if len(out.KLPSymbols) != 0 {
		t.Errorf("new data reached through livepatch: %v", out.KLPSymbols)
	}
	// The new code's references to them resolve to the copies.
	targets := map[string]bool{}
	for _, r := range relocsOf(t, f, ".rela.text.target") {
		targets[r.Sym] = true
	}
	for _, want := range []string{".data.hits", ".bss.warned.0"} {
		if !targets[want] {
			t.Errorf("the new code does not refer to %s: %v", want, targets)
		}
	}
}

// TestGenerateRefusesNewDataSharingASection: without -fdata-sections
// a new variable shares .data with the unit's other variables, which the
// module must not copy.
func TestGenerateRefusesNewDataSharingASection(t *testing.T) {
	syms := symbolsFor(t, []string{"printk_like"}, "target", "old_state")
	src := "int old_state = 3;\n" + newDataUnit + "int use_old(void) { return old_state; }\n"
	post := compileC(t, src, "-fno-data-sections")
	_, err := Generate(post, []string{"target"}, nil, syms, Options{ModuleName: "lp_test", NewData: []string{"hits", "warned.0"}})
	var ue *UnsupportedError
	if !errors.As(err, &ue) || !strings.Contains(ue.Reason, "shares its section") {
		t.Fatalf("err = %v, want a refusal saying the new variable shares its section", err)
	}
}

// TestGenerateCopiesBugAndExceptionEntries: the __bug_table and
// __ex_table entries of a replaced function go into the module with it,
// their addresses re-targeted to the new code and the WARN's file name
// copied; the entries of functions not copied stay out.
func TestGenerateCopiesBugAndExceptionEntries(t *testing.T) {
	const src = `
extern void exported(void);
#define ENTRY(sec, second) asm volatile("1: ud2\n.pushsection " sec ",\"aw\"\n" \
	"2: .long 1b - .\n .long " second "\n .word 7\n .word 0x0900\n .org 2b+12\n.popsection" :: "i"("file.c"))
void with_entries(int a)
{
	exported();
	if (a == 1)
		ENTRY("__bug_table", "%c0 - .");
	if (a == 2)
		ENTRY("__ex_table", "1b - .");
}
void untouched(int a)
{
	if (a)
		ENTRY("__bug_table", "%c0 - .");
}
`
	syms := symbolsFor(t, []string{"exported"}, "with_entries", "untouched")
	out, err := Generate(compileC(t, src), []string{"with_entries"}, nil, syms, Options{ModuleName: "lp_test"})
	if err != nil {
		t.Fatal(err)
	}
	f := parseELF(t, out.Object)
	for _, tc := range []struct {
		sec     string
		targets []string
	}{
		{"__bug_table", []string{".text.with_entries", ".rodata.with_entries.str1.1"}},
		{"__ex_table", []string{".text.with_entries", ".text.with_entries"}},
	} {
		if b := sectionData(t, f, tc.sec); len(b) != 12 {
			t.Errorf("%s holds %d bytes, want the one entry of with_entries", tc.sec, len(b))
			continue
		}
		var got []string
		for _, r := range relocsOf(t, f, ".rela"+tc.sec) {
			got = append(got, r.Sym)
		}
		if !slices.Equal(got, tc.targets) {
			t.Errorf("%s relocations point at %v, want %v", tc.sec, got, tc.targets)
		}
	}
}

// TestGenerateForAModule: a unit built into a module is patched through
// a klp_object named after the module. The module's own symbols (the
// replaced function, its static helper and variables) are reached as
// .klp.sym.MODULE.NAME,POS, resolved when the module loads, never linked
// by name (the livepatch must not depend on the module it patches); an
// unexported vmlinux symbol stays .klp.sym.vmlinux, an export links.
func TestGenerateForAModule(t *testing.T) {
	// The module as installed: this unit and another one.
	mod, err := LoadModuleSymbols(compileC(t, kernelUnit+"int other_unit(void) { return 1; }\n"))
	if err != nil {
		t.Fatal(err)
	}
	syms := symbolsFor(t, []string{"printk_like"}, "unexported_global")
	out, _ := generateUnitOpts(t, kernelUnit, []string{"target"}, syms, Options{ModuleName: "lp_test", Module: "mymod", ModuleSymbols: mod})
	want := []KLPSymbol{{Object: "mymod", Name: "counter"}, {Object: "mymod", Name: "helper"}, {Object: "mymod", Name: "table"}, {Object: "vmlinux", Name: "unexported_global"}}
	got := slices.Clone(out.KLPSymbols)
	slices.SortFunc(got, func(a, b KLPSymbol) int { return strings.Compare(a.Object+a.Name, b.Object+b.Name) })
	if !slices.Equal(got, want) {
		t.Errorf("KLPSymbols = %v, want %v", got, want)
	}
	if !strings.Contains(string(out.Stub), `.name = "mymod"`) || strings.Contains(string(out.Stub), "NULL, /* vmlinux */") {
		t.Errorf("the stub does not patch module mymod:\n%s", out.Stub)
	}

	// A replaced function the module does not have is missing, named so.
	_, err = Generate(compileC(t, kernelUnit), []string{"target"}, nil, syms, Options{ModuleName: "lp_test", Module: "othermod",
		ModuleSymbols: symbolsOfModule(t, "int unrelated(void) { return 0; }\n")})
	var missing *MissingSymbolError
	if !errors.As(err, &missing) || missing.Name != "target" || !strings.Contains(err.Error(), "module othermod") {
		t.Errorf("err = %v, want target missing from module othermod", err)
	}
	// Module without its symbols.
	if _, err := Generate(compileC(t, kernelUnit), []string{"target"}, nil, syms, Options{ModuleName: "lp_test", Module: "mymod"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a module without symbols: %v", err)
	}
}

func symbolsOfModule(t *testing.T, src string) *Symbols {
	t.Helper()
	s, err := LoadModuleSymbols(compileC(t, src))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func generateUnitOpts(t *testing.T, src string, changed []string, syms *Symbols, opts Options) (*Output, []byte) {
	t.Helper()
	post := compileC(t, src)
	out, err := Generate(post, changed, nil, syms, opts)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return out, post
}

// TestCombineParts: a bundle of two units, one of vmlinux and one of a
// module, each with a static function "target": one module of two
// objects whose copies do not clash, and a stub with a klp_object for
// vmlinux and one for the module; the same function replaced by two
// parts is refused.
func TestCombineParts(t *testing.T) {
	syms := symbolsFor(t, []string{"printk_like"}, kernelUnitMap...)
	mod := symbolsOfModule(t, kernelUnit)
	opts := Options{ModuleName: "lp_test"}
	a, _ := generateUnitOpts(t, kernelUnit, []string{"target"}, syms, opts)
	b, _ := generateUnitOpts(t, kernelUnit, []string{"target"}, syms, Options{ModuleName: "lp_test", Part: 1, Module: "mymod", ModuleSymbols: mod})
	out, err := Combine(opts, []*Output{a, b})
	if err != nil {
		t.Fatal(err)
	}
	files := out.Files()
	for _, name := range []string{StubFile, KbuildFile, "patch.o", ".patch.o.cmd", "patch1.o", ".patch1.o.cmd"} {
		if files[name] == nil {
			t.Errorf("no %s among the files", name)
		}
	}
	if k := string(out.Kbuild); !strings.Contains(k, "lp_test-y := stub.o patch.o patch1.o") {
		t.Errorf("Kbuild:\n%s", k)
	}
	if sym := symbolNamed(t, parseELF(t, files["patch1.o"]), "__klp_new1_target"); sym.Name == "" {
		t.Error("part 1's copy is not named __klp_new1_target")
	}
	stub := string(out.Stub)
	for _, w := range []string{".new_func = __klp_new_target,", ".new_func = __klp_new1_target,", ".name = NULL, /* vmlinux */", `.name = "mymod"`, ".funcs = splicefleet_funcs_1,"} {
		if !strings.Contains(stub, w) {
			t.Errorf("stub lacks %q:\n%s", w, stub)
		}
	}
	if _, err := Combine(opts, []*Output{a, a}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "replaced by two parts") {
		t.Errorf("the same function twice: %v", err)
	}
}

// jumpUnit has a static-key jump entry as the kernel's static_branch and
// tracepoints write it on x86-64: code, target, and the key.
const jumpUnit = `
extern void exported(void);
extern int KEY;
void with_jump(int a)
{
	exported();
	asm goto("1: .byte 0x0f,0x1f,0x44,0,0\n"
		".pushsection __jump_table,\"aw\"\n .balign 8\n"
		" .long 1b - .\n .long %l[yes] - .\n .quad KEY - .\n .popsection" :::: yes);
	return;
yes:
	exported();
}
`

// TestGenerateCopiesJumpEntries: a replaced function's static-key jump
// entries go into the module, its key reached in vmlinux (exported:
// linked; not: a livepatch relocation, which the module loader applies
// before it registers the entries); a key of the patched module is
// refused, since the kernel would register the entry before it resolves
// that module's symbols.
func TestGenerateCopiesJumpEntries(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		exports   []string
		mapNames  []string
		module    bool
		want      string // the key relocation's symbol, or the refusal
	}{
		{"exported key", "my_key", []string{"exported", "my_key"}, []string{"with_jump"}, false, "my_key"},
		{"vmlinux key", "my_key", []string{"exported"}, []string{"with_jump", "my_key"}, false, "__klp_sym__vmlinux__my_key__0"},
		{"module key", "my_key", []string{"exported"}, nil, true, "names my_key of module mymod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.ReplaceAll(jumpUnit, "KEY", tc.key)
			opts := Options{ModuleName: "lp_test"}
			if tc.module {
				opts.Module, opts.ModuleSymbols = "mymod", symbolsOfModule(t, src+"int "+tc.key+";\n")
			}
			out, err := Generate(compileC(t, src), []string{"with_jump"}, nil, symbolsFor(t, tc.exports, tc.mapNames...), opts)
			if tc.module {
				var u *UnsupportedError
				if !errors.As(err, &u) || u.Section != "__jump_table" || !strings.Contains(u.Reason, tc.want) {
					t.Fatalf("err = %v, want a refusal saying %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f := parseELF(t, out.Object)
			if b := sectionData(t, f, "__jump_table"); len(b) != 16 {
				t.Fatalf("__jump_table of %d bytes, want one entry", len(b))
			}
			var got []string
			for _, r := range relocsOf(t, f, ".rela__jump_table") {
				got = append(got, r.Sym)
			}
			if want := []string{".text.with_jump", ".text.with_jump", tc.want}; !slices.Equal(got, want) {
				t.Errorf("__jump_table relocations %v, want %v", got, want)
			}
		})
	}
}

// staticCallUnit has a static call site as the kernel's static_call
// writes it on x86-64: a call to the key's trampoline, and the site's
// entry (addr, key).
const staticCallUnit = `
extern void exported(void);
extern void __SCT__tp_func_my_event(void);
extern int __SCK__tp_func_my_event;
void with_call(int a)
{
	exported();
	asm volatile("1: call __SCT__tp_func_my_event\n"
		".pushsection .static_call_sites,\"aw\"\n"
		" .long 1b - .\n .long __SCK__tp_func_my_event - .\n .popsection");
}
`

// TestGenerateModuleTracepoints: the kernel registers a livepatch
// module's jump entries and static call sites before it resolves the
// symbols of the module it patches. A tracepoint branch of that module
// compiled off is left out and stays off, with a warning; a static call
// site of it is left out and calls through the trampoline, with a
// warning; a tracepoint branch compiled on is still refused.
func TestGenerateModuleTracepoints(t *testing.T) {
	mod := func(src string) Options {
		return Options{ModuleName: "lp_test", Module: "mymod", ModuleSymbols: symbolsOfModule(t, src)}
	}
	syms := symbolsFor(t, []string{"exported"})

	off := strings.ReplaceAll(jumpUnit, "KEY", "__tracepoint_my_event")
	out, err := Generate(compileC(t, off), []string{"with_jump"}, nil, syms, mod(off+"int __tracepoint_my_event;\n"))
	if err != nil {
		t.Fatalf("a tracepoint branch compiled off: %v", err)
	}
	if s := parseELF(t, out.Object).Section("__jump_table"); s != nil && s.Size > 0 {
		t.Errorf("the module has a __jump_table of %d bytes, want the tracepoint's entry left out", s.Size)
	}
	if !slices.ContainsFunc(out.Warnings, func(w string) bool {
		return strings.Contains(w, "tracepoint my_event of module mymod stays off")
	}) {
		t.Errorf("warnings %q do not say the tracepoint stays off", out.Warnings)
	}

	on := strings.ReplaceAll(off, `.byte 0x0f,0x1f,0x44,0,0`, `.byte 0xe9,0,0,0,0`)
	_, err = Generate(compileC(t, on), []string{"with_jump"}, nil, syms, mod(on+"int __tracepoint_my_event;\n"))
	var u *UnsupportedError
	if !errors.As(err, &u) || u.Section != "__jump_table" || !strings.Contains(u.Reason, "names __tracepoint_my_event of module mymod") {
		t.Errorf("a tracepoint branch compiled on: err = %v, want the refusal", err)
	}

	out, err = Generate(compileC(t, staticCallUnit), []string{"with_call"}, nil, syms,
		mod(staticCallUnit+"int __SCK__tp_func_my_event;\nvoid __SCT__tp_func_my_event(void) {}\n"))
	if err != nil {
		t.Fatalf("a static call site of the module: %v", err)
	}
	f := parseELF(t, out.Object)
	if s := f.Section(".static_call_sites"); s != nil && s.Size > 0 {
		t.Errorf("the module has .static_call_sites of %d bytes, want the site left out", s.Size)
	}
	var calls []string
	for _, r := range relocsOf(t, f, ".rela.text.with_call") {
		calls = append(calls, r.Sym)
	}
	if !slices.ContainsFunc(calls, func(s string) bool { return strings.Contains(s, "__SCT__tp_func_my_event") }) {
		t.Errorf("the new code's relocations %v do not reach the trampoline", calls)
	}
	if !slices.ContainsFunc(out.Warnings, func(w string) bool { return strings.Contains(w, "goes through the trampoline") }) {
		t.Errorf("warnings %q do not say the call goes through the trampoline", out.Warnings)
	}
}

const constantUnit = `
extern int printk_like(const char *fmt, ...);
static void helper(void) { printk_like("helper\n"); }
struct ops { void (*f)(void); };
static const struct ops my_ops = { helper };
extern void use_ops(const struct ops *o);
void target(void) { printk_like("%s: done\n", __func__); }
void with_ops(void) { use_ops(&my_ops); }
`

// TestGenerateCopiesAmbiguousConstant: a constant without addresses that
// the running kernel has many of (every unit's __func__.N) is carried as
// a copy, with a warning; a constant that holds an address (an ops
// table, whose address code may compare) stays ambiguous and refused.
func TestGenerateCopiesAmbiguousConstant(t *testing.T) {
	post := compileC(t, constantUnit)
	f := parseELF(t, post)
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var fn string
	for _, s := range syms {
		if strings.HasPrefix(s.Name, "__func__.") {
			fn = s.Name
		}
	}
	if fn == "" {
		t.Fatalf("gcc named no __func__ object: %v", syms)
	}
	m := slices.Concat(fillers("a", 100), []string{fn, "my_ops"}, fillers("b", 100), []string{fn, "my_ops"}, fillers("c", 100),
		[]string{"target", "helper", "with_ops"})
	sm := symbolsFor(t, []string{"printk_like", "use_ops"}, m...)
	out, err := Generate(post, []string{"target"}, nil, sm, Options{ModuleName: "lp_test"})
	if err != nil {
		t.Fatalf("target reads %s, which is ambiguous but constant: %v", fn, err)
	}
	mod := parseELF(t, out.Object)
	sec := ".rodata." + fn
	if b := sectionData(t, mod, sec); !bytes.Equal(b, []byte("target\x00")) {
		t.Errorf("%s in the module = %q, want the copied name of the function", sec, b)
	}
	found := false
	for _, r := range relocsOf(t, mod, ".rela.text.target") {
		found = found || r.Sym == sec
	}
	if !found {
		t.Errorf("the new code does not read its own copy %s", sec)
	}
	if !slices.ContainsFunc(out.Warnings, func(w string) bool { return strings.Contains(w, fn) && strings.Contains(w, "its own copy") }) {
		t.Errorf("warnings = %q, want one naming %s", out.Warnings, fn)
	}
	for _, k := range out.KLPSymbols {
		if k.Name == fn {
			t.Errorf("%s is reached through livepatch as well: %v", fn, out.KLPSymbols)
		}
	}

	_, err = Generate(post, []string{"with_ops"}, nil, sm, Options{ModuleName: "lp_test"})
	var amb *AmbiguousSymbolError
	if !errors.As(err, &amb) || amb.Name != "my_ops" {
		t.Fatalf("with_ops reads my_ops, which holds an address: %v, want *AmbiguousSymbolError for my_ops", err)
	}
}

const onceUnit = `
extern void note(void);
#define ONCE(c) ({ static _Bool __attribute__((section(".data.once"))) __already_done; \
	int r_ = !!(c); if (r_ && !__already_done) { __already_done = 1; note(); } r_; })
int other(int x) { return ONCE(x > 1); }
int target(int x) { ONCE(x > 3); return ONCE(x > 5); }
`

// TestGenerateCopiesOnceFlags: every once flag the new code uses (all
// of a unit's share .data.once, and their numbers shift when a fix adds
// a WARN_ONCE) gets a fresh one-byte copy of its own in the module, not
// a lookup of a numbered name in the running kernel.
func TestGenerateCopiesOnceFlags(t *testing.T) {
	post := compileC(t, onceUnit)
	m := slices.Concat(fillers("a", 50), []string{"__already_done.0", "__already_done.1"}, fillers("b", 50),
		[]string{"__already_done.0", "__already_done.1", "target", "other"})
	out, err := Generate(post, []string{"target"}, nil, symbolsFor(t, []string{"note"}, m...), Options{ModuleName: "lp_test"})
	if err != nil {
		t.Fatal(err)
	}
	mod := parseELF(t, out.Object)
	var flags []*elf.Section
	for _, sec := range mod.Sections {
		if sec.Name == ".data.once" {
			flags = append(flags, sec)
		}
	}
	if len(flags) != 2 {
		t.Fatalf("the module has %d .data.once sections, want one per flag target uses (2)", len(flags))
	}
	for _, f := range flags {
		if f.Size != 1 || f.Flags&elf.SHF_WRITE == 0 {
			t.Errorf(".data.once copy: size %d, flags %v; want one writable byte", f.Size, f.Flags)
		}
	}
	for _, k := range out.KLPSymbols {
		if strings.HasPrefix(k.Name, "__already_done") {
			t.Errorf("once flag %s is looked up in the running kernel", k.Name)
		}
	}
	n := 0
	for _, r := range relocsOf(t, mod, ".rela.text.target") {
		if r.Sym == ".data.once" {
			n++
		}
	}
	if n < 2 {
		t.Errorf("target's code refers to its flags %d times, want both copies used", n)
	}
}

const ratelimitUnit = `
struct ratelimit_state { int lock; int interval; int burst; int printed; int missed; unsigned long begin; unsigned long flags; };
extern int ___ratelimit(struct ratelimit_state *rs, const char *func);
extern void say(const char *m);
#define SAY_RATELIMITED(m) do { static struct ratelimit_state _rs = { .interval = 1250, .burst = 10 }; \
	if (___ratelimit(&_rs, "f")) say(m); } while (0)
void other(int x) { if (x) SAY_RATELIMITED("other"); }
void target(int x) { if (x > 1) SAY_RATELIMITED("one"); if (x > 2) SAY_RATELIMITED("two"); }
`

// TestGenerateCopiesRatelimitStates: a ratelimit state the new code uses
// (printk_ratelimited's _rs, renumbered by any fix that adds one) gets a
// fresh copy in the module with its initial interval and burst, not a
// lookup of a numbered name in the running kernel.
func TestGenerateCopiesRatelimitStates(t *testing.T) {
	post := compileC(t, ratelimitUnit)
	m := slices.Concat(fillers("a", 50), []string{"_rs.0", "_rs.1", "_rs.2"}, fillers("b", 50),
		[]string{"_rs.0", "_rs.1", "_rs.2", "target", "other"})
	out, err := Generate(post, []string{"target"}, nil, symbolsFor(t, []string{"___ratelimit", "say"}, m...), Options{ModuleName: "lp_test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range out.KLPSymbols {
		if strings.HasPrefix(k.Name, "_rs.") {
			t.Errorf("ratelimit state %s is looked up in the running kernel", k.Name)
		}
	}
	mod := parseELF(t, out.Object)
	var states int
	for _, sec := range mod.Sections {
		if !strings.HasPrefix(sec.Name, ".data._rs.") {
			continue
		}
		states++
		b := sectionData(t, mod, sec.Name)
		if len(b) != 40 || binary.LittleEndian.Uint32(b[4:]) != 1250 || binary.LittleEndian.Uint32(b[8:]) != 10 {
			t.Errorf("%s = %x, want the 40-byte state with interval 1250 and burst 10", sec.Name, b)
		}
	}
	if states != 2 {
		t.Errorf("the module has %d ratelimit states, want target's 2", states)
	}
}

// TestGenerateRefusesObjectWithoutFtrace: compiled with the kernel's own
// flags, an object that calls no __fentry__ was built without ftrace
// (kernel/trace/), so the kernel's copy of a replaced function cannot be
// redirected: refused. Compiled another way, it is only a warning.
func TestGenerateRefusesObjectWithoutFtrace(t *testing.T) {
	post := compileC(t, kernelUnit)
	syms := symbolsFor(t, []string{"printk_like", "unexported_global"}, kernelUnitMap...)
	_, err := Generate(post, []string{"target"}, nil, syms, Options{ModuleName: "lp_test", KernelFlags: true})
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Function != "target" || !strings.Contains(ue.Reason, "compiled without ftrace") {
		t.Fatalf("err = %v, want target refused: its object is compiled without ftrace", err)
	}
	out, err := Generate(post, []string{"target"}, nil, syms, Options{ModuleName: "lp_test"})
	if err != nil || !slices.ContainsFunc(out.Warnings, func(w string) bool { return strings.Contains(w, "calls no __fentry__") }) {
		t.Fatalf("without KernelFlags: %v, warnings %q; want a warning", err, out.Warnings)
	}
}

// TestGenerateClonedFunctionName: a gcc clone's name has dots
// (free_request_key_auth.part.0); its copy gets a C identifier the stub
// can declare, and the stub replaces the kernel's function by its own
// name.
func TestGenerateClonedFunctionName(t *testing.T) {
	src := `
extern int printk_like(const char *fmt, ...);
int part_fn(int x) __asm__("target.part.0");
int part_fn(int x) { printk_like("%d\\n", x); return x + 1; }
`
	post := compileC(t, src)
	syms := symbolsFor(t, []string{"printk_like"}, "target.part.0")
	out, err := Generate(post, []string{"target.part.0"}, nil, syms, Options{ModuleName: "lp_test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Functions) != 1 || out.Functions[0].Symbol != "__klp_new_target__part__0" {
		t.Fatalf("functions %+v, want the copy named __klp_new_target__part__0", out.Functions)
	}
	stub := string(out.Stub)
	if !strings.Contains(stub, `.old_name = "target.part.0"`) || !strings.Contains(stub, "__klp_new_target__part__0") || strings.Contains(stub, "__klp_new_target.part") {
		t.Errorf("the stub does not replace target.part.0 by a C name:\n%s", stub)
	}
}

const lockKeyUnit = `
struct lock_class_key { };
struct mutex { int owner; };
extern void __mutex_init(struct mutex *m, const char *name, struct lock_class_key *key);
static int counter;
void target(struct mutex *m) { static struct lock_class_key __key; __mutex_init(m, "m", &__key); }
void counted(struct mutex *m) { static struct lock_class_key __key; __mutex_init(m, "c", &__key); counter++; }
`

// TestGenerateCarriesAmbiguousEmptyLockKey: a static lock class key,
// empty in a kernel without lockdep, that the running kernel has many
// of under one name (__key.N) holds no state: the module carries its
// own, with a warning. A writable static with bytes keeps the refusal.
func TestGenerateCarriesAmbiguousEmptyLockKey(t *testing.T) {
	post := compileC(t, lockKeyUnit)
	syms, err := parseELF(t, post).Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, s := range syms {
		if strings.HasPrefix(s.Name, "__key.") {
			keys = append(keys, s.Name)
		}
	}
	if len(keys) != 2 {
		t.Fatalf("gcc named %d __key objects, want 2: %v", len(keys), syms)
	}
	m := slices.Concat(fillers("a", 100), keys, []string{"counter"}, fillers("b", 100), keys, []string{"counter"}, fillers("c", 100),
		[]string{"target", "counted"})
	sm := symbolsFor(t, []string{"__mutex_init"}, m...)
	out, err := Generate(post, []string{"target"}, nil, sm, Options{ModuleName: "lp_test"})
	if err != nil {
		t.Fatalf("target passes an empty, ambiguous lock key: %v", err)
	}
	if !slices.ContainsFunc(out.Warnings, func(w string) bool { return strings.Contains(w, "holds no bytes") }) {
		t.Errorf("warnings = %q, want one saying the key holds no bytes", out.Warnings)
	}
	for _, k := range out.KLPSymbols {
		if strings.HasPrefix(k.Name, "__key.") {
			t.Errorf("the key is reached through livepatch as well: %v", out.KLPSymbols)
		}
	}
	_, err = Generate(post, []string{"counted"}, nil, sm, Options{ModuleName: "lp_test"})
	var amb *AmbiguousSymbolError
	if !errors.As(err, &amb) || amb.Name != "counter" {
		t.Fatalf("counted writes counter, which holds state: %v, want *AmbiguousSymbolError for counter", err)
	}
}
