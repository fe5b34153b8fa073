package klpgen

import (
	"debug/elf"
	"errors"
	"slices"
	"strings"
	"testing"
)

// The shape of mlx4 in Debian's 6.1.190 update: the patch adds put_thing
// to module coremod (mlx4_core's mlx4_put_qp), whose code uses coremod's
// own static core_count, and changes target of module ibmod (mlx4_ib's
// mlx4_ib_qp_event) to call it.
const (
	coreBefore = "static int core_count;\nint core_get(void) { return core_count++; }\n"
	coreAfter  = coreBefore + "int put_thing(int x) { core_count -= x; return core_count; }\n"
	ibBefore   = "int target(int x) { return x + 1; }\n"
	ibAfter    = "extern int put_thing(int);\nint target(int x) { return put_thing(x) + 1; }\n"
)

// bundleParts generates the two parts of the bundle: ibmod's (part 0,
// built with the .modinfo entries info) and coremod's (part 1, which
// replaces nothing and only adds put_thing).
func bundleParts(t *testing.T, info ...string) (ib, core *Output, ibErr error) {
	t.Helper()
	syms := symbolsFor(t, []string{"__fentry__"})
	// Compiled for ftrace, as the kernel is: every part is checked for
	// what livepatch can redirect.
	corePost := compileC(t, coreAfter, "-pg", "-mfentry")
	coreOpts := Options{ModuleName: "lp_test", Part: 1, Module: "coremod", ModuleSymbols: symbolsOfModule(t, coreBefore)}
	adds, err := BundleAdds(corePost, []string{"put_thing"}, coreOpts)
	if err != nil {
		t.Fatal(err)
	}
	if want := []BundleSymbol{{Name: "put_thing", Object: "coremod", Part: 1}}; !slices.Equal(adds, want) {
		t.Fatalf("BundleAdds = %+v, want %+v", adds, want)
	}
	coreOpts.Bundle = adds
	if core, err = Generate(corePost, nil, []string{"put_thing"}, syms, coreOpts); err != nil {
		t.Fatalf("coremod's part: %v", err)
	}
	deps := map[string]*Symbols{}
	if slices.Contains(info, "depends=coremod") {
		deps["coremod"] = symbolsOfModule(t, coreBefore)
	}
	ib, ibErr = Generate(compileC(t, ibAfter, "-pg", "-mfentry"), []string{"target"}, nil, syms,
		Options{ModuleName: "lp_test", Module: "ibmod", ModuleSymbols: symbolsOfModule(t, ibBefore+modinfo(info...)),
			Dependencies: deps, Bundle: adds})
	return ib, core, ibErr
}

// TestGenerateBindsACallToAFunctionAnotherPartAdds: ibmod depends on
// coremod, so coremod is loaded (and its livepatch relocations applied
// to put_thing's copy) whenever ibmod's new code runs: the call is bound
// to part 1's copy, linked within the livepatch module. coremod gets a
// klp_object with no function to replace, which is what makes the
// kernel resolve the copy's .klp.sym.coremod.core_count.
func TestGenerateBindsACallToAFunctionAnotherPartAdds(t *testing.T) {
	ib, core, err := bundleParts(t, "depends=coremod")
	if err != nil {
		t.Fatalf("ibmod's part: %v", err)
	}
	if want := []BundleSymbol{{Name: "put_thing", Object: "coremod", Part: 1}}; !slices.Equal(ib.BundleRefs, want) {
		t.Errorf("BundleRefs = %+v, want %+v", ib.BundleRefs, want)
	}
	// __fentry__ is the ftrace call every function of the kernel makes.
	if exports := slices.DeleteFunc(slices.Clone(ib.Exports), func(e string) bool { return e == "__fentry__" }); len(exports) != 0 || len(ib.KLPSymbols) != 0 {
		t.Errorf("put_thing reached outside the module: exports %v, livepatch symbols %v", exports, ib.KLPSymbols)
	}
	out, err := Combine(Options{ModuleName: "lp_test"}, []*Output{ib, core})
	if err != nil {
		t.Fatal(err)
	}
	// put_thing is unreached in coremod's part alone, not in the bundle.
	if want := []BundleSymbol{{Name: "put_thing", Object: "coremod", Part: 1}}; !slices.Equal(core.Unreached, want) || len(out.Unreached) != 0 {
		t.Errorf("Unreached: coremod's part %+v (want %+v), the bundle %+v (want none)", core.Unreached, want, out.Unreached)
	}
	stub := string(out.Stub)
	for _, w := range []string{`.name = "ibmod"`, `.name = "coremod"`, ".new_func = __klp_new_target,",
		"static struct klp_func splicefleet_funcs_1[] = {\n\t{}\n};"} {
		if !strings.Contains(stub, w) {
			t.Errorf("stub lacks %q:\n%s", w, stub)
		}
	}
	if strings.Contains(stub, "put_thing,") {
		t.Errorf("the stub replaces put_thing:\n%s", stub)
	}
	// Linked as kbuild links the parts: the call lands on the copy, and
	// the copy's use of core_count is a relocation of coremod's.
	ko := linkObjects(t, namedObject{"patch.o", out.Parts["patch.o"]}, namedObject{"patch1.o", out.Parts["patch1.o"]})
	fin, err := Finalize(ko)
	if err != nil {
		t.Fatal(err)
	}
	f := parseELF(t, fin)
	if s := symbolNamed(t, f, "__klp_add1_put_thing"); s.Section == elf.SHN_UNDEF {
		t.Errorf("__klp_add1_put_thing is not defined in the linked module: %+v", s)
	}
	calls := relocsOf(t, f, ".rela.text.target")
	if !slices.ContainsFunc(calls, func(r testReloc) bool { return r.Sym == "__klp_add1_put_thing" }) {
		t.Errorf("target's relocations %v do not call the copy", calls)
	}
	uses := relocsOf(t, f, ".klp.rela.coremod..text.put_thing")
	if !slices.ContainsFunc(uses, func(r testReloc) bool { return r.Sym == ".klp.sym.coremod.core_count,0" }) {
		t.Errorf("put_thing's livepatch relocations %v do not reach coremod's core_count", uses)
	}
}

// TestGenerateRefusesAFunctionOfAModuleNotDependedOn: without depends
// on coremod, ibmod may be loaded, and its new code run, while coremod
// is not, and put_thing's copy would use a core_count never resolved:
// refused, saying which module must be loaded first.
func TestGenerateRefusesAFunctionOfAModuleNotDependedOn(t *testing.T) {
	_, _, err := bundleParts(t, "depends=")
	var be *BundleDependencyError
	if !errors.As(err, &be) || be.Name != "put_thing" || be.Function != "target" || be.Object != "ibmod" || be.Adder != "coremod" {
		t.Fatalf("err = %v, want a BundleDependencyError for put_thing of coremod called from ibmod", err)
	}
	if !strings.Contains(err.Error(), "ibmod does not depend on coremod") || !strings.Contains(err.Error(), "coremod must be loaded before ibmod") {
		t.Errorf("the refusal does not say why: %v", err)
	}
}

// TestGenerateRefusesVmlinuxCallingAModulesNewFunction: vmlinux's code
// runs whether coremod is loaded or not.
func TestGenerateRefusesVmlinuxCallingAModulesNewFunction(t *testing.T) {
	_, err := Generate(compileC(t, ibAfter), []string{"target"}, nil, symbolsFor(t, nil, "target"),
		Options{ModuleName: "lp_test", Bundle: []BundleSymbol{{Name: "put_thing", Object: "coremod", Part: 1}}})
	var be *BundleDependencyError
	if !errors.As(err, &be) || be.Object != "vmlinux" || be.Adder != "coremod" || !strings.Contains(err.Error(), "whether or not coremod is loaded") {
		t.Fatalf("err = %v, want vmlinux's call refused", err)
	}
}

// TestGenerateBindsAModulesCallToVmlinuxsNewFunction: a function the
// bundle adds to vmlinux is there for every module.
func TestGenerateBindsAModulesCallToVmlinuxsNewFunction(t *testing.T) {
	out, err := Generate(compileC(t, ibAfter), []string{"target"}, nil, symbolsFor(t, nil),
		Options{ModuleName: "lp_test", Module: "ibmod", ModuleSymbols: symbolsOfModule(t, ibBefore),
			Bundle: []BundleSymbol{{Name: "put_thing", Object: "vmlinux", Part: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []BundleSymbol{{Name: "put_thing", Object: "vmlinux", Part: 1}}; !slices.Equal(out.BundleRefs, want) {
		t.Errorf("BundleRefs = %+v, want %+v", out.BundleRefs, want)
	}
}

// The shape of rdma's restrack fix in Debian's 6.1.190 update: the patch
// gives module ibcore's exported count (rdma_restrack_count) a third
// parameter and changes its code, and fill, in another file of ibcore
// (nldev.c), calls it with the new argument. Livepatch would redirect
// callers the bundle leaves in place, compiled for two arguments, to
// the new code: the bundle carries count as a new function beside the
// kernel's copy instead, which the copy of fill calls.
const (
	countBefore = "int count(int dev, int type) { return dev + type; }\n"
	countAfter  = "int count(int dev, int type, int details) { return details ? dev + type : dev; }\n"
	fillBefore  = "extern int count(int, int);\nint fill(int dev) { return count(dev, 1) * 2; }\n"
	fillAfter   = "extern int count(int, int, int);\nint fill(int dev) { return count(dev, 1, 0) * 2; }\n"
)

// TestGenerateForkedFunction: count is copied under the bundle's name,
// global so that fill's part calls it, never redirected by the stub; the
// kernel's count is not reached at all.
func TestGenerateForkedFunction(t *testing.T) {
	syms := symbolsFor(t, []string{"__fentry__"})
	modSyms := symbolsOfModule(t, countBefore+fillBefore)
	countPost := compileC(t, countAfter, "-pg", "-mfentry")
	countOpts := Options{ModuleName: "lp_test", Part: 1, Module: "ibcore", ModuleSymbols: modSyms, Forked: []string{"count"}}
	adds, err := BundleAdds(countPost, nil, countOpts)
	if err != nil {
		t.Fatal(err)
	}
	if want := []BundleSymbol{{Name: "count", Object: "ibcore", Part: 1}}; !slices.Equal(adds, want) {
		t.Fatalf("BundleAdds = %+v, want %+v", adds, want)
	}
	countOpts.Bundle = adds
	core, err := Generate(countPost, []string{"count"}, nil, syms, countOpts)
	if err != nil {
		t.Fatalf("count's part: %v", err)
	}
	if f := core.Functions[0]; f.Name != "count" || !f.Forked || !f.Added || f.Symbol != "__klp_add1_count" {
		t.Errorf("count = %+v, want a forked copy", f)
	}
	if s := symbolNamed(t, parseELF(t, core.Object), "__klp_add1_count"); elf.ST_BIND(s.Info) != elf.STB_GLOBAL || s.Section == elf.SHN_UNDEF {
		t.Errorf("__klp_add1_count = %+v, want a global definition", s)
	}
	// Alone, nothing calls it: the caller of createpatch refuses that.
	if want := []BundleSymbol{{Name: "count", Object: "ibcore", Part: 1}}; !slices.Equal(core.Unreached, want) {
		t.Errorf("Unreached = %+v, want %+v", core.Unreached, want)
	}
	fill, err := Generate(compileC(t, fillAfter, "-pg", "-mfentry"), []string{"fill"}, nil, syms,
		Options{ModuleName: "lp_test", Module: "ibcore", ModuleSymbols: modSyms, Bundle: adds})
	if err != nil {
		t.Fatalf("fill's part: %v", err)
	}
	if !slices.Equal(fill.BundleRefs, adds) || len(fill.KLPSymbols) != 0 {
		t.Errorf("fill reaches BundleRefs %+v and livepatch symbols %v, want count's copy alone", fill.BundleRefs, fill.KLPSymbols)
	}
	out, err := Combine(Options{ModuleName: "lp_test"}, []*Output{fill, core})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Unreached) != 0 {
		t.Errorf("the bundle's Unreached = %+v, want none", out.Unreached)
	}
	if stub := string(out.Stub); strings.Contains(stub, `"count"`) || !strings.Contains(stub, `.old_name = "fill"`) {
		t.Errorf("the stub must redirect fill alone:\n%s", stub)
	}
	ko := linkObjects(t, namedObject{"patch.o", out.Parts["patch.o"]}, namedObject{"patch1.o", out.Parts["patch1.o"]})
	fin, err := Finalize(ko)
	if err != nil {
		t.Fatal(err)
	}
	if calls := relocsOf(t, parseELF(t, fin), ".rela.text.fill"); !slices.ContainsFunc(calls, func(r testReloc) bool { return r.Sym == "__klp_add1_count" }) {
		t.Errorf("fill's relocations %v do not call the new count", calls)
	}
}
