package klpgen

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
)

// dyndbgUnit has two pr_debug sites as Linux 6.1 emits them with
// CONFIG_DYNAMIC_DEBUG and CONFIG_JUMP_LABEL on x86-64: a function-local
// 56-byte struct _ddebug in __dyndbg (module, function, file, format,
// lineno:18 class_id:6 flags:8, static key), a jump entry naming the
// descriptor's key, and a call passing the descriptor. CLASS is the
// class_id, 63 for a site of no class.
const dyndbgUnit = `
struct static_key { int enabled; union { unsigned long type; void *entries; }; };
struct _ddebug {
	const char *modname, *function, *filename, *format;
	unsigned int lineno:18, class_id:6, flags:8;
	union { struct static_key dd_key_false; } key;
} __attribute__((aligned(8)));
extern void __dynamic_pr_debug(struct _ddebug *, const char *, ...);
extern int consume(int);
static inline __attribute__((always_inline)) int dd_branch(void *key)
{
	asm goto("1: .byte 0x0f,0x1f,0x44,0,0\n.pushsection __jump_table,\"aw\"\n.balign 8\n"
		".long 1b - .\n.long %l[yes] - .\n.quad %c0 - .\n.popsection" :: "i"(key) :: yes);
	return 0;
yes:
	return 1;
}
#define pr_debug(fmt, ...) do { \
	static struct _ddebug __attribute__((aligned(8), section("__dyndbg"))) dd = \
		{ "mymod", __func__, "drivers/mymod/unit.c", fmt, __LINE__, CLASS, 0, { { 0, { 0 } } } }; \
	if (dd_branch(&dd.key)) __dynamic_pr_debug(&dd, fmt, ##__VA_ARGS__); \
} while (0)
int other(int x)
{
	pr_debug("other %d\n", x);
	return consume(x + 1);
}
int fixed(int x)
{
	pr_debug("fixed %d\n", x);
	return consume(x);
}
`

// TestGenerateCarriesDynamicDebugDescriptors: the replaced function's
// descriptor, and only it, goes into the module's own __dyndbg as the
// kernel reads it (an array of 56-byte struct _ddebug, writable, 8-byte
// aligned), its four pointers relocated to copies of the strings, the
// new code and its jump entry pointing at the copy, for vmlinux and for
// a module alike (the key lies in the livepatch module, which
// jump_label_add_module binds).
func TestGenerateCarriesDynamicDebugDescriptors(t *testing.T) {
	src := strings.ReplaceAll(dyndbgUnit, "CLASS", "63")
	for _, module := range []bool{false, true} {
		opts := Options{ModuleName: "lp_test"}
		syms := symbolsFor(t, []string{"consume", "__dynamic_pr_debug"}, "other", "fixed")
		if module {
			opts.Module, opts.ModuleSymbols = "mymod", symbolsOfModule(t, src)
			syms = symbolsFor(t, []string{"consume", "__dynamic_pr_debug"})
		}
		post := compileC(t, src)
		out, err := Generate(post, []string{"fixed"}, nil, syms, opts)
		if err != nil {
			t.Fatalf("module %t: %v", module, err)
		}
		f := parseELF(t, out.Object)
		s := f.Section("__dyndbg")
		if s == nil {
			t.Fatalf("module %t: no __dyndbg in %v", module, sectionNames(f))
		}
		if s.Flags&(elf.SHF_ALLOC|elf.SHF_WRITE) != elf.SHF_ALLOC|elf.SHF_WRITE || s.Addralign != 8 || s.Type != elf.SHT_PROGBITS {
			t.Errorf("__dyndbg flags %v align %d type %v", s.Flags, s.Addralign, s.Type)
		}
		b := sectionData(t, f, "__dyndbg")
		if len(b) != 56 {
			t.Fatalf("__dyndbg of %d bytes, want the replaced function's one descriptor", len(b))
		}
		// The line and flags word is the compiler's: fixed's line, no
		// flags, no class.
		line := uint32(strings.Count(src[:strings.Index(src, `pr_debug("fixed`)], "\n") + 1)
		if w, want := binary.LittleEndian.Uint32(b[32:]), line|63<<18; w != want {
			t.Errorf("line/flags word %#x, want %#x", w, want)
		}
		var targets []string
		for _, r := range relocsOf(t, f, ".rela__dyndbg") {
			if r.Type != elf.R_X86_64_64 || r.Off%8 != 0 || r.Off >= 32 {
				t.Errorf("descriptor relocation %v", r)
			}
			if !slices.Equal(b[r.Off:r.Off+8], make([]byte, 8)) {
				t.Errorf("relocation %v over non-zero bytes", r)
			}
			targets = append(targets, r.Sym)
			if !strings.HasPrefix(r.Sym, ".rodata") || f.Section(r.Sym) == nil {
				t.Errorf("descriptor pointer %v is not to strings copied into the module", r)
			}
		}
		if len(targets) != 4 {
			t.Errorf("descriptor relocations to %v, want modname, function, filename and format", targets)
		}
		// The strings themselves: the function name is fixed's.
		if fn := sectionData(t, f, targets[1]); !strings.HasPrefix(string(fn[relocsOf(t, f, ".rela__dyndbg")[1].Addend:]), "fixed\x00") {
			t.Errorf("function name %q", fn)
		}
		var code, key []testReloc
		for _, r := range relocsOf(t, f, ".rela.text.fixed") {
			if r.Sym == "__dyndbg" {
				code = append(code, r)
			}
		}
		for _, r := range relocsOf(t, f, ".rela__jump_table") {
			if r.Off == 8 {
				key = append(key, r)
			}
		}
		if len(code) == 0 || code[0].Addend != 0 {
			t.Errorf("new code's references to the descriptor: %v", code)
		}
		if len(key) != 1 || key[0].Sym != "__dyndbg" || key[0].Addend < 40 || key[0].Addend > 41 {
			t.Errorf("jump entry key %v, want the copied descriptor's key at +40", key)
		}
		readelfClean(t, out.Object, "-a")
	}
}

// TestGenerateRefusesClassedDebugPrint: a site of a class (drm's
// DECLARE_DYNDBG_CLASSMAP) is selected through its module's class map,
// which the livepatch module does not have.
func TestGenerateRefusesClassedDebugPrint(t *testing.T) {
	src := strings.ReplaceAll(dyndbgUnit, "CLASS", "2")
	_, err := Generate(compileC(t, src), []string{"fixed"}, nil, symbolsFor(t, []string{"consume", "__dynamic_pr_debug"}, "other", "fixed"), Options{ModuleName: "lp_test"})
	var u *UnsupportedError
	if !errors.As(err, &u) || u.Section != "__dyndbg" || !strings.Contains(u.Reason, "class 2") {
		t.Fatalf("err = %v, want a refusal of the classed site", err)
	}
}
