package klpgen

import (
	"debug/elf"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// privateUnit is shaped like kernel/sched/fair.c's update_sd_lb_stats:
// a static function livepatch cannot redirect (the kernel's inline
// implies notrace), with a cold part, calling another notrace static
// (inner), called by a traceable find.
const privateUnit = `
extern void sink(int);
extern void __attribute__((cold)) complain(int);
static __attribute__((noinline, no_instrument_function)) int inner(int a) { sink(a); return a * 5; }
static __attribute__((noinline, no_instrument_function)) int stats(int a)
{
	if (__builtin_expect(a < 0, 0)) {
		complain(a);
		complain(a + 1);
		return -1;
	}
	sink(a * 3 + 2);
	return inner(a) + 1;
}
int find(int x) { return stats(x) + stats(x + 1); }
`

// privateSyms are the kernel's symbols for privateUnit, and the map
// names it lists besides find. The copies need none: a lookup of a
// name not listed fails.
func privateSyms(t *testing.T, mapNames ...string) *Symbols {
	return symbolsFor(t, []string{"sink", "complain", "__fentry__"}, append([]string{"find"}, mapNames...)...)
}

// TestGeneratePrivateNotrace: stats and inner changed, only find (which
// the bundle replaces) and stats call them: each is carried as a copy,
// with stats's cold part, and the copies call the copies, never the
// kernel's symbols.
func TestGeneratePrivateNotrace(t *testing.T) {
	post := compileC(t, privateUnit, "-pg", "-mfentry")
	out, err := Generate(post, []string{"find", "stats", "inner"}, nil, privateSyms(t),
		Options{ModuleName: "lp_test", Private: []string{"stats", "inner"}})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	type fn struct {
		Name, Symbol   string
		Added, Private bool
		Sections       []string
	}
	var got []fn
	for _, f := range out.Functions {
		got = append(got, fn{f.Name, f.Symbol, f.Added, f.Private, f.Sections})
	}
	want := []fn{
		{"find", "__klp_new_find", false, false, []string{".text.find"}},
		{"stats", "__klp_add_stats", true, true, []string{".text.stats", ".text.unlikely.stats"}},
		{"inner", "__klp_add_inner", true, true, []string{".text.inner"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Functions (-want +got):\n%s", d)
	}
	f := parseELF(t, out.Object)
	for _, name := range []string{"__klp_add_stats", "__klp_add_stats.cold", "__klp_add_inner"} {
		if s := symbolNamed(t, f, name); elf.ST_BIND(s.Info) != elf.STB_LOCAL || s.Section == elf.SHN_UNDEF {
			t.Errorf("%s = %+v, want a local definition", name, s)
		}
	}
	calls := func(sec string) []string {
		var to []string
		for _, r := range relocsOf(t, f, ".rela"+sec) {
			if r.Sym != "__fentry__" {
				to = append(to, r.Sym)
			}
		}
		return to
	}
	if c := calls(".text.find"); !slices.ContainsFunc(c, func(s string) bool { return s == "__klp_add_stats" || s == ".text.stats" }) ||
		slices.ContainsFunc(c, func(s string) bool {
			return strings.Contains(s, "stats") && s != "__klp_add_stats" && s != ".text.stats"
		}) {
		t.Errorf("find's copy calls %v, want the copy of stats", c)
	}
	if c := calls(".text.stats"); !slices.ContainsFunc(c, func(s string) bool { return s == "__klp_add_inner" || s == ".text.inner" }) {
		t.Errorf("stats's copy calls %v, want the copy of inner", c)
	}
	if len(out.KLPSymbols) != 0 {
		t.Errorf("KLPSymbols = %v, want none: the copies reach nothing of the kernel but exports", out.KLPSymbols)
	}
	if stub := string(out.Stub); strings.Contains(stub, "stats") || strings.Contains(stub, "inner") || !strings.Contains(stub, `.old_name = "find"`) {
		t.Errorf("the stub must redirect find alone:\n%s", stub)
	}
}

// TestGenerateNotraceExposed: stats cannot be redirected, and objdiff
// found code the bundle does not replace that calls it: the refusal
// says so.
func TestGenerateNotraceExposed(t *testing.T) {
	post := compileC(t, privateUnit, "-pg", "-mfentry")
	why := "before: other calls it and is not replaced by the patch"
	_, err := Generate(post, []string{"find", "stats"}, nil, privateSyms(t, "stats", "inner"),
		Options{ModuleName: "lp_test", Private: []string{"inner"}, Exposed: map[string]string{"stats": why}})
	var u *UnsupportedError
	if !errors.As(err, &u) || u.Function != "stats" ||
		!strings.Contains(u.Reason, "livepatch cannot redirect it, nor carry it as a copy only the replaced functions call: "+why) {
		t.Fatalf("err = %v, want *UnsupportedError for stats naming the unreplaced caller", err)
	}
}

// TestGeneratePrivateTransitiveRefused: inner may be a copy, but stats,
// which calls it, cannot be redirected nor copied: refused for stats.
func TestGeneratePrivateTransitiveRefused(t *testing.T) {
	post := compileC(t, privateUnit, "-pg", "-mfentry")
	why := "hook refers to it from .rodata.hook: its address is taken"
	_, err := Generate(post, []string{"find", "stats", "inner"}, nil, privateSyms(t, "stats", "inner"),
		Options{ModuleName: "lp_test", Private: []string{"inner"}, Exposed: map[string]string{"stats": why}})
	var u *UnsupportedError
	if !errors.As(err, &u) || u.Function != "stats" || !strings.Contains(u.Reason, why) {
		t.Fatalf("err = %v, want *UnsupportedError for stats, its address taken", err)
	}
}

// TestGeneratePrivateTraceable: a private function ftrace can redirect
// is replaced as any other, through its klp_func.
func TestGeneratePrivateTraceable(t *testing.T) {
	src := strings.ReplaceAll(privateUnit, "no_instrument_function", "used")
	out, err := Generate(compileC(t, src, "-pg", "-mfentry"), []string{"find", "stats"}, nil, privateSyms(t, "stats", "inner"),
		Options{ModuleName: "lp_test", Private: []string{"stats"}})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if f := out.Functions[1]; f.Name != "stats" || f.Added || f.Private || f.Symbol != "__klp_new_stats" {
		t.Errorf("stats = %+v, want replaced", f)
	}
}

// TestGeneratePrivateOnly: a module whose every function is a copy
// would redirect nothing, and is refused.
func TestGeneratePrivateOnly(t *testing.T) {
	post := compileC(t, privateUnit, "-pg", "-mfentry")
	_, err := Generate(post, []string{"stats"}, nil, privateSyms(t, "inner"), Options{ModuleName: "lp_test", Private: []string{"stats"}})
	var u *UnsupportedError
	if !errors.As(err, &u) || u.Function != "stats" || !strings.Contains(u.Reason, "would redirect no function") {
		t.Fatalf("err = %v, want *UnsupportedError: nothing redirected", err)
	}
}
