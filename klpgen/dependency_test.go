package klpgen

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// callerUnit is a unit of module "mymod" whose changed function calls
// fat_thing, which it does not define: another module exports it.
const callerUnit = `
extern int fat_thing(int);
static int local_count;

int target(int x)
{
	local_count++;
	return fat_thing(x) + local_count;
}
`

// modinfo is a module's .modinfo entries, as modpost writes them.
func modinfo(entries ...string) string {
	var b strings.Builder
	for i, e := range entries {
		fmt.Fprintf(&b, "static const char modinfo%d[] __attribute__((section(\".modinfo\"), used, aligned(1))) = %q;\n", i, e)
	}
	return b.String()
}

// symversWith builds Symbols whose Module.symvers lists, besides a
// vmlinux export, the module exports given as "name path/of/module" or
// "name path/of/module NS".
func symversWith(t *testing.T, modExports ...string) *Symbols {
	t.Helper()
	symvers := "0x00000001\tprintk_like\tvmlinux\tEXPORT_SYMBOL\t\n"
	for i, e := range modExports {
		f := strings.Fields(e)
		ns := ""
		if len(f) == 3 {
			ns = f[2]
		}
		symvers += fmt.Sprintf("0x%08x\t%s\t%s\tEXPORT_SYMBOL_GPL\t%s\n", i+2, f[0], f[1], ns)
	}
	s, err := LoadSymbols(strings.NewReader(symvers), strings.NewReader("ffffffff81000000 T _stext\nffffffff81000010 T printk_like\n"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// generateInModule generates the patch of target in callerUnit for
// module mymod, built with the given .modinfo entries, against deps.
func generateInModule(t *testing.T, syms *Symbols, deps map[string]*Symbols, info ...string) (*Output, error) {
	t.Helper()
	mod := symbolsOfModule(t, callerUnit+modinfo(info...))
	return Generate(compileC(t, callerUnit), []string{"target"}, nil, syms,
		Options{ModuleName: "lp_test", Module: "mymod", ModuleSymbols: mod, Dependencies: deps})
}

// TestGenerateReachesADependencysExport: fat_thing, exported by module
// fatmod, which mymod depends on, is reached as .klp.sym.fatmod.fat_thing
// from mymod's livepatch relocation sections; mymod's own static stays
// .klp.sym.mymod. After kbuild and Finalize, the relocation against it
// is in .klp.rela.mymod.*, never in a section of fatmod.
func TestGenerateReachesADependencysExport(t *testing.T) {
	fat := symbolsOfModule(t, "int fat_thing(int x) { return x; }\n"+modinfo("name=fatmod"))
	out, err := generateInModule(t, symversWith(t, "fat_thing fs/fat/fatmod"), map[string]*Symbols{"fatmod": fat}, "depends=fatmod")
	if err != nil {
		t.Fatal(err)
	}
	want := []KLPSymbol{{Object: "fatmod", Name: "fat_thing", Section: "mymod"}, {Object: "mymod", Name: "local_count"}}
	if !slices.Equal(out.KLPSymbols, want) {
		t.Errorf("KLPSymbols = %+v, want %+v", out.KLPSymbols, want)
	}
	if slices.Contains(out.Exports, "fat_thing") {
		t.Errorf("fat_thing is linked by name (the livepatch would depend on fatmod): exports %v", out.Exports)
	}
	ko := linkAsModule(t, out.Object)
	fin, err := Finalize(ko)
	if err != nil {
		t.Fatal(err)
	}
	f := parseELF(t, fin)
	got := map[string][]string{}
	for _, sec := range f.Sections {
		if strings.HasPrefix(sec.Name, ".klp.rela.") {
			for _, r := range relocsOf(t, f, sec.Name) {
				got[sec.Name] = append(got[sec.Name], r.Sym)
			}
		}
	}
	wantRelas := map[string][]string{".klp.rela.mymod..text.target": {".klp.sym.mymod.local_count,0", ".klp.sym.fatmod.fat_thing,0", ".klp.sym.mymod.local_count,0"}}
	for name, syms := range got {
		slices.Sort(syms)
		got[name] = slices.Compact(syms)
	}
	for name, syms := range wantRelas {
		slices.Sort(syms)
		wantRelas[name] = slices.Compact(syms)
	}
	if fmt.Sprint(got) != fmt.Sprint(wantRelas) {
		t.Errorf("livepatch relocation sections %v, want %v", got, wantRelas)
	}
}

// linkAsModule links patch.o alone as kbuild's final link does (ld -r),
// enough for Finalize.
func linkAsModule(t *testing.T, obj []byte) []byte {
	t.Helper()
	return linkObjects(t, namedObject{"patch.o", obj})
}

// namedObject is an object file's name and contents.
type namedObject struct {
	name string
	obj  []byte
}

// linkObjects links objects, in order, into one relocatable object with
// ld -r, as kbuild's final link of a module does.
func linkObjects(t *testing.T, objs ...namedObject) []byte {
	t.Helper()
	dir := t.TempDir()
	args := []string{"-r", "-o", "linked.ko"}
	for _, o := range objs {
		if err := os.WriteFile(filepath.Join(dir, o.name), o.obj, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, o.name)
	}
	cmd := exec.Command("ld", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ld %v: %v\n%s", args, err, out)
	}
	ko, err := os.ReadFile(filepath.Join(dir, "linked.ko"))
	if err != nil {
		t.Fatal(err)
	}
	return ko
}

// TestGenerateReachesATransitiveDependency: mymod depends on midmod,
// which depends on basemod, the exporter: basemod is loaded whenever
// mymod is, so the symbol is reached there.
func TestGenerateReachesATransitiveDependency(t *testing.T) {
	// kbuild names the exporter base-mod; the kernel, and modinfo's
	// depends, base_mod.
	mid := symbolsOfModule(t, "int mid_thing(void) { return 2; }\n"+modinfo("depends=base-mod", "name=midmod"))
	base := symbolsOfModule(t, "int fat_thing(int x) { return x; }\n"+modinfo("depends=", "name=base_mod"))
	deps := map[string]*Symbols{"midmod": mid, "base_mod": base}
	out, err := generateInModule(t, symversWith(t, "fat_thing drivers/base/base-mod", "mid_thing x/midmod"), deps, "depends=midmod")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(out.KLPSymbols, KLPSymbol{Object: "base_mod", Name: "fat_thing", Section: "mymod"}) {
		t.Errorf("KLPSymbols = %+v, want fat_thing of base_mod from mymod's sections", out.KLPSymbols)
	}
	// Every module on the way must be given.
	_, err = generateInModule(t, symversWith(t, "fat_thing drivers/base/base-mod"),
		map[string]*Symbols{"midmod": mid}, "depends=midmod")
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "base_mod (through midmod -> base_mod)") {
		t.Errorf("a dependency not given: err = %v", err)
	}
}

// TestGenerateRefusesAnExportOfANonDependency: fat_thing is exported by
// othermod, which mymod does not depend on: the kernel could patch mymod
// while othermod is not loaded, so it is refused, naming both modules.
func TestGenerateRefusesAnExportOfANonDependency(t *testing.T) {
	fat := symbolsOfModule(t, "int unrelated(int x) { return x; }\n")
	_, err := generateInModule(t, symversWith(t, "fat_thing fs/other/othermod"), map[string]*Symbols{"fatmod": fat}, "depends=fatmod")
	var de *DependencyError
	if !errors.As(err, &de) || de.Exporter != "othermod" || de.Module != "mymod" || de.Name != "fat_thing" || de.Function != "target" {
		t.Fatalf("err = %v, want a DependencyError for fat_thing of othermod", err)
	}
	if !strings.Contains(err.Error(), "othermod is not among the modules mymod depends on") {
		t.Errorf("the refusal does not say why: %v", err)
	}
}

// TestGenerateRefusesAnUnimportedNamespace: a namespaced export of a
// dependency is reached only when the patched module imports the
// namespace, as the module loader requires for linking it.
func TestGenerateRefusesAnUnimportedNamespace(t *testing.T) {
	fat := symbolsOfModule(t, "int fat_thing(int x) { return x; }\n")
	syms := symversWith(t, "fat_thing fs/fat/fatmod FAT_NS")
	deps := map[string]*Symbols{"fatmod": fat}
	_, err := generateInModule(t, syms, deps, "depends=fatmod")
	var de *DependencyError
	if !errors.As(err, &de) || de.Namespace != "FAT_NS" || !strings.Contains(err.Error(), "namespace FAT_NS, which mymod does not import") {
		t.Fatalf("err = %v, want the namespace refused", err)
	}
	if _, err := generateInModule(t, syms, deps, "depends=fatmod", "import_ns=FAT_NS"); err != nil {
		t.Errorf("with the namespace imported: %v", err)
	}
}

// TestGenerateFindsADependencysExportAtItsPosition: the exporter has a
// static of the same name in another unit (earlier in its symbol table,
// as ld puts locals first), so the export is at kallsyms position 2 of
// the module, the position of its global definition.
func TestGenerateFindsADependencysExportAtItsPosition(t *testing.T) {
	a := compileC(t, "static __attribute__((noinline, used)) int fat_thing(int x) { return x * 3; }\nint a_user(int x) { return fat_thing(x); }\n")
	b := compileC(t, "int fat_thing(int x) { return x; }\n"+modinfo("name=fatmod"))
	ko := linkObjects(t, namedObject{"a.o", a}, namedObject{"b.o", b})
	fat, err := LoadModuleSymbols(ko)
	if err != nil {
		t.Fatal(err)
	}
	if fat.Count("fat_thing") != 2 {
		t.Fatalf("the linked module has %d fat_thing, want 2", fat.Count("fat_thing"))
	}
	out, err := generateInModule(t, symversWith(t, "fat_thing fs/fat/fatmod"), map[string]*Symbols{"fatmod": fat}, "depends=fatmod")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(out.KLPSymbols, KLPSymbol{Object: "fatmod", Name: "fat_thing", Pos: 2, Section: "mymod"}) {
		t.Errorf("KLPSymbols = %+v, want fat_thing of fatmod at position 2", out.KLPSymbols)
	}
}

// TestLoadModuleSymbolsReadsModinfo: depends (with "-" as the kernel
// writes it, "_") and import_ns come from .modinfo.
func TestLoadModuleSymbolsReadsModinfo(t *testing.T) {
	s := symbolsOfModule(t, "int f(void) { return 0; }\n"+modinfo("license=GPL", "depends=fat,nls-base", "import_ns=A", "import_ns=B"))
	if d := s.Depends(); !slices.Equal(d, []string{"fat", "nls_base"}) {
		t.Errorf("Depends() = %v", d)
	}
	if !s.ImportsNamespace("A") || !s.ImportsNamespace("B") || s.ImportsNamespace("C") {
		t.Errorf("namespaces: A %v B %v C %v", s.ImportsNamespace("A"), s.ImportsNamespace("B"), s.ImportsNamespace("C"))
	}
	if _, err := LoadModuleSymbols(compileC(t, "int f(void) { return 0; }\n"+modinfo("depends=a.b"))); !errors.Is(err, ErrMalformed) {
		t.Errorf("a dependency named a.b: %v", err)
	}
}

// TestLoadDependencies reads a module's dependencies transitively,
// each once, and bounds how many.
func TestLoadDependencies(t *testing.T) {
	kos := map[string][]byte{
		"a": compileC(t, "int a(void) { return 0; }\n"+modinfo("depends=b,c")),
		"b": compileC(t, "int b(void) { return 0; }\n"+modinfo("depends=c")),
		"c": compileC(t, "int c(void) { return 0; }\n"+modinfo("depends=")),
	}
	var loaded []string
	load := func(name string) ([]byte, error) {
		loaded = append(loaded, name)
		if ko, ok := kos[name]; ok {
			return ko, nil
		}
		return nil, os.ErrNotExist
	}
	mod := symbolsOfModule(t, "int m(void) { return 0; }\n"+modinfo("depends=a"))
	deps, err := LoadDependencies("m", mod, load)
	if err != nil {
		t.Fatal(err)
	}
	if len(deps) != 3 || !slices.Equal(loaded, []string{"a", "b", "c"}) {
		t.Errorf("loaded %v, deps %d, want a, b, c once each", loaded, len(deps))
	}
	missing := symbolsOfModule(t, "int m(void) { return 0; }\n"+modinfo("depends=zz"))
	if _, err := LoadDependencies("m", missing, load); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "zz") {
		t.Errorf("a dependency that is not there: %v", err)
	}
	// More modules than the bound.
	var many []string
	for i := 0; i <= maxDependencies; i++ {
		many = append(many, fmt.Sprintf("d%d", i))
	}
	leaf := compileC(t, "int f(void) { return 0; }\n")
	_, err = LoadDependencies("m", symbolsOfModule(t, "int m(void) { return 0; }\n"+modinfo("depends="+strings.Join(many, ","))),
		func(string) ([]byte, error) { return leaf, nil })
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("%d dependencies: %v", len(many), err)
	}
}
