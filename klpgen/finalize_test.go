package klpgen

import (
	"bytes"
	"debug/elf"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// placeholderUnit refers to placeholders as gcc-compiled C does, one
// with a dotted name through an asm label, and has a .modinfo like a
// module's.
const placeholderUnit = `
extern void __klp_sym__vmlinux__secret_fn__0(void);
extern int __klp_sym__vmlinux__secret_var__0;
extern int static_count __asm__("__klp_sym__vmlinux__count.0__0");
extern void exported_fn(void);

int user(void)
{
	__klp_sym__vmlinux__secret_fn__0();
	exported_fn();
	return __klp_sym__vmlinux__secret_var__0 + static_count;
}

int other(void)
{
	exported_fn();
	return static_count;
}

static const char modinfo[] __attribute__((section(".modinfo"), used)) = "livepatch=Y";
`

func TestFinalize(t *testing.T) {
	in := compileC(t, placeholderUnit)
	out, err := Finalize(in)
	if err != nil {
		t.Fatal(err)
	}
	fi, fo := parseELF(t, in), parseELF(t, out)

	// The placeholders became livepatch symbols; nothing else changed.
	inSyms, _ := fi.Symbols()
	outSyms, _ := fo.Symbols()
	if len(inSyms) != len(outSyms) {
		t.Fatalf("%d symbols became %d", len(inSyms), len(outSyms))
	}
	want := map[string]string{
		"__klp_sym__vmlinux__secret_fn__0":  ".klp.sym.vmlinux.secret_fn,0",
		"__klp_sym__vmlinux__secret_var__0": ".klp.sym.vmlinux.secret_var,0",
		"__klp_sym__vmlinux__count.0__0":    ".klp.sym.vmlinux.count.0,0",
	}
	for i, s := range inSyms {
		o := outSyms[i]
		if klp, ok := want[s.Name]; ok {
			if o.Name != klp || o.Section != shnLivepatch || o.Info != s.Info || o.Value != 0 {
				t.Errorf("symbol %d: %s became %+v, want %s in section 0xff20", i+1, s.Name, o, klp)
			}
			continue
		}
		if d := cmp.Diff(s, o); d != "" {
			t.Errorf("symbol %d changed (-in +out):\n%s", i+1, d)
		}
	}

	// Every relocation against them moved into .klp.rela.vmlinux..text.user.
	klpSec := fo.Section(".klp.rela.vmlinux..text.user")
	if klpSec == nil {
		t.Fatalf("no .klp.rela.vmlinux..text.user; sections %v", sectionNames(fo))
	}
	textUser := sectionIndex(fo, ".text.user")
	wantHdr := elf.SectionHeader{
		Name: ".klp.rela.vmlinux..text.user", Type: elf.SHT_RELA,
		Flags: elf.SHF_ALLOC | elf.SHF_INFO_LINK | shfRelaLivepatch,
		Link:  uint32(sectionIndex(fo, ".symtab")), Info: uint32(textUser), Addralign: 8, Entsize: 24,
	}
	gotHdr := klpSec.SectionHeader
	gotHdr.Offset, gotHdr.Size, gotHdr.FileSize = 0, 0, 0
	if d := cmp.Diff(wantHdr, gotHdr); d != "" {
		t.Errorf("klp relocation section header (-want +got):\n%s", d)
	}
	var moved, kept []string
	for _, r := range relocsOf(t, fo, ".klp.rela.vmlinux..text.user") {
		moved = append(moved, r.Sym)
		if r.Shndx != shnLivepatch {
			t.Errorf("%v is not against a livepatch symbol", r)
		}
	}
	for _, r := range relocsOf(t, fo, ".rela.text.user") {
		kept = append(kept, r.Sym)
	}
	if d := cmp.Diff([]string{".klp.sym.vmlinux.count.0,0", ".klp.sym.vmlinux.secret_fn,0", ".klp.sym.vmlinux.secret_var,0"}, sortedStrings(moved)); d != "" {
		t.Errorf("moved relocations (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"exported_fn"}, kept); d != "" {
		t.Errorf("kept relocations (-want +got):\n%s", d)
	}
	// The relocations keep their places, types and addends.
	var before []testReloc
	for _, r := range relocsOf(t, fi, ".rela.text.user") {
		r.Sym = strings.NewReplacer("__klp_sym__vmlinux__", ".klp.sym.vmlinux.", "__0", ",0").Replace(r.Sym)
		r.Shndx = 0
		before = append(before, r)
	}
	var after []testReloc
	for _, sec := range []string{".rela.text.user", ".klp.rela.vmlinux..text.user"} {
		for _, r := range relocsOf(t, fo, sec) {
			r.Shndx = 0
			after = append(after, r)
		}
	}
	sortRelocs := func(rs []testReloc) []testReloc {
		out := append([]testReloc(nil), rs...)
		for i := range out {
			for j := i + 1; j < len(out); j++ {
				if out[j].Off < out[i].Off {
					out[i], out[j] = out[j], out[i]
				}
			}
		}
		return out
	}
	if d := cmp.Diff(sortRelocs(before), sortRelocs(after)); d != "" {
		t.Errorf("relocations of .text.user (-before +after):\n%s", d)
	}
	if fo.Section(".klp.rela.vmlinux..text.other") == nil {
		t.Error("no .klp.rela.vmlinux..text.other")
	}

	// Other sections are byte-identical, and the headers only moved
	// what was rewritten.
	rewritten := map[string]bool{".symtab": true, ".strtab": true, ".shstrtab": true, ".rela.text.user": true, ".rela.text.other": true}
	for i, s := range fi.Sections {
		o := fo.Sections[i]
		if s.Name != o.Name || s.Type != o.Type || s.Flags != o.Flags || s.Link != o.Link || s.Info != o.Info {
			t.Errorf("section %d header changed: %+v -> %+v", i, s.SectionHeader, o.SectionHeader)
		}
		if rewritten[s.Name] || s.Type == elf.SHT_NOBITS {
			continue
		}
		if s.Offset != o.Offset || !bytes.Equal(sectionData(t, fi, s.Name), sectionData(t, fo, s.Name)) {
			t.Errorf("section %s changed", s.Name)
		}
	}
	if !bytes.Equal(sectionData(t, fo, ".modinfo"), []byte("livepatch=Y\x00")) {
		t.Errorf(".modinfo = %q", sectionData(t, fo, ".modinfo"))
	}

	s := readelfClean(t, out, "-S", "-s", "-r", "-W")
	for _, line := range []string{".klp.rela.vmlinux..text.user", "AIo", "OS [0xff20] .klp.sym.vmlinux.secret_fn,0"} {
		if !strings.Contains(s, line) {
			t.Errorf("readelf output lacks %q:\n%s", line, s)
		}
	}
	readelfClean(t, out, "-a", "-W")

	// Finalizing again changes nothing.
	again, err := Finalize(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, out) {
		t.Error("a second Finalize changed the module")
	}
}

// TestFinalizeGeneratedObject: Finalize reads Generate's output too
// (it is what ld hands on), and every placeholder comes out.
func TestFinalizeGeneratedObject(t *testing.T) {
	syms := symbolsFor(t, []string{"printk_like"}, kernelUnitMap...)
	out, _ := generateUnit(t, kernelUnit, []string{"target"}, nil, syms)
	fin, err := Finalize(out.Object)
	if err != nil {
		t.Fatal(err)
	}
	f := parseELF(t, fin)
	syms2, _ := f.Symbols()
	var klp []string
	for _, s := range syms2 {
		if strings.HasPrefix(s.Name, PlaceholderPrefix) {
			t.Errorf("placeholder %s left", s.Name)
		}
		if s.Section == shnLivepatch {
			klp = append(klp, s.Name)
		}
	}
	var want []string
	for _, k := range out.KLPSymbols {
		want = append(want, k.String())
	}
	if d := cmp.Diff(want, sortedStrings(klp)); d != "" {
		t.Errorf("livepatch symbols (-want +got):\n%s", d)
	}
	if n := len(relocsOf(t, f, ".klp.rela.vmlinux..text.target")); n != 4 {
		t.Errorf("%d livepatch relocations, want 4", n)
	}
	readelfClean(t, fin, "-a", "-W")
}

func TestFinalizeWithoutPlaceholdersIsUnchanged(t *testing.T) {
	in := compileC(t, "extern void f(void);\nvoid g(void) { f(); }\n")
	out, err := Finalize(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, out) {
		t.Error("a module without placeholders changed")
	}
}

func TestFinalizeRefuses(t *testing.T) {
	good := compileC(t, placeholderUnit)
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"signed", append(append([]byte{}, good...), "signature bytes"+moduleSigMagic...), ErrSigned},
		{"not elf", []byte("hello"), ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"truncated", good[:len(good)/2], ErrMalformed},
		{"bad placeholder", compileC(t, "extern void __klp_sym__vmlinux__nopos(void);\nvoid g(void) { __klp_sym__vmlinux__nopos(); }\n"), ErrMalformed},
		{"long object name", compileC(t, "extern void __klp_sym__"+strings.Repeat("m", 56)+"__f__0(void);\nvoid g(void) { __klp_sym__"+strings.Repeat("m", 56)+"__f__0(); }\n"), ErrMalformed},
		{"unloaded section", compileC(t, `
extern int __klp_sym__vmlinux__v__0;
asm(".pushsection .notes.custom,\"\"\n .quad __klp_sym__vmlinux__v__0\n .popsection");
`), ErrMalformed},
		{"defined placeholder", compileC(t, "int __klp_sym__vmlinux__v__0 = 1;\n"), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Finalize(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPlaceholderRoundTrip(t *testing.T) {
	for _, k := range []KLPSymbol{
		{Object: "vmlinux", Name: "jiffies_lock"},
		{Object: "vmlinux", Name: "__per_cpu_offset", Pos: 3},
		{Object: "vmlinux", Name: "count.0"},
		{Object: "vmlinux", Name: "foo_", Pos: 12},
		{Object: "vmlinux", Name: "a__1"},
		{Object: "vmlinux", Name: "_x__"},
		// Another module's export, from the patched module's sections.
		{Object: "fat", Name: "fat_fill_super", Section: "vfat"},
		{Object: "sunrpc", Name: "svc_x__2", Pos: 2, Section: "nfsd"},
		{Object: "fat", Name: "a__1__b", Section: "x8021q"},
	} {
		got, ok, err := parsePlaceholder(k.Placeholder())
		if !ok || err != nil || got != k {
			t.Errorf("%s read back as %+v, %v, %v", k.Placeholder(), got, ok, err)
		}
	}
	if got := (KLPSymbol{Object: "vmlinux", Name: "count.0", Pos: 2}).String(); got != ".klp.sym.vmlinux.count.0,2" {
		t.Errorf("String() = %s", got)
	}
	if got := (KLPSymbol{Object: "fat", Name: "fat_fill_super", Section: "vfat"}).String(); got != ".klp.sym.fat.fat_fill_super,0" {
		t.Errorf("String() = %s", got)
	}
	for _, bad := range []string{"__klp_sym__vmlinux", "__klp_sym__vmlinux__x", "__klp_sym__vmlinux__x__", "__klp_sym__vmlinux__x__1a",
		"__klp_sym____x__0", "__klp_sym__vmlinux____0", "__klp_sym__vmlinux__a,b__0", "__klp_sym__vmlinux__x__99999999999999999999999",
		// A section: never vmlinux, nor the symbol's own object, nor for a vmlinux symbol.
		"__klp_sym__vmlinux__x__0__vfat", "__klp_sym__fat__x__0__vmlinux", "__klp_sym__fat__x__0__fat", "__klp_sym__fat__x__vfat"} {
		if _, ok, err := parsePlaceholder(bad); !ok || err == nil {
			t.Errorf("%s: ok %v, err %v; want a malformed placeholder", bad, ok, err)
		}
	}
	if _, ok, _ := parsePlaceholder("jiffies"); ok {
		t.Error("an ordinary name read as a placeholder")
	}
}
