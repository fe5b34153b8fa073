package klpgen

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/lab"
)

// TestKernelBuild generates a livepatch for the lab's Debian 6.1 kernel
// from a patched fs/proc/cmdline.c compiled by the kernel's own build
// (its flags, objtool, ORC, return thunks, __fentry__), builds it with
// kbuild against the real headers and Module.symvers, finalizes it and
// checks the module the kernel would load. Booting it is the lab's.
//
// Debian's image package ships a placeholder System.map; unless the lab
// tree has a real one, the test checks that LoadSymbols refuses the
// placeholder and then lists the two vmlinux symbols the unit needs, as
// unique, which is what the kernel's kallsyms has. Set
// SPLICEFLEET_KLPGEN_KEEP to a folder to keep the finalized module.
func TestKernelBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kernel modules against the lab's Debian headers; skipped with -short")
	}
	for _, tool := range []string{"make", "gcc", "readelf"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (apt-get install build-essential binutils)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	k, err := lab.Fetch(ctx, lab.FetchOptions{Log: testLog{t}})
	if err != nil {
		t.Fatalf("fetch the lab kernel (set %s to share a cache): %v", lab.CacheEnv, err)
	}
	t.Logf("kernel: %s", k)

	// The patched unit, compiled by kbuild.
	unit := t.TempDir()
	for _, name := range []string{"cmdline.c", "Kbuild"} {
		b, err := os.ReadFile(filepath.Join("testdata", "cmdline", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(unit, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runMake(ctx, t, "-C", k.HeadersDir, "M="+unit, "cmdline.o")
	post, err := os.ReadFile(filepath.Join(unit, "cmdline.o"))
	if err != nil {
		t.Fatal(err)
	}

	syms := kernelSymbols(t, k)
	out, err := Generate(post, []string{"cmdline_proc_show"}, nil, syms,
		Options{ModuleName: "lp_klpgen_cmdline", Description: "splicefleet klpgen test: /proc/cmdline starts with 'splicefleet: '"})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if d := cmp.Diff([]KLPSymbol{{Object: "vmlinux", Name: "saved_command_line"}}, out.KLPSymbols); d != "" {
		t.Errorf("KLPSymbols (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"__fentry__", "__x86_return_thunk", "seq_putc", "seq_puts"}, out.Exports); d != "" {
		t.Errorf("Exports (-want +got):\n%s", d)
	}
	if len(out.Warnings) != 0 {
		t.Errorf("Warnings: %q", out.Warnings)
	}
	pf := parseELF(t, out.Object)
	for _, sec := range []string{".text.cmdline_proc_show", ".orc_unwind", ".orc_unwind_ip"} {
		if pf.Section(sec) == nil {
			t.Errorf("patch.o has no %s; sections %v", sec, sectionNames(pf))
		}
	}
	readelfClean(t, out.Object, "-a", "-W")

	// The module, built by kbuild.
	mod := t.TempDir()
	for name, b := range out.Files() {
		if err := os.WriteFile(filepath.Join(mod, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log := runMake(ctx, t, append([]string{"-C", k.HeadersDir, "M=" + mod}, append(out.MakeArgs, "modules")...)...)
	if !strings.Contains(log, `"__klp_sym__vmlinux__saved_command_line__0" [`) {
		t.Errorf("modpost did not warn about the placeholder; build output:\n%s", log)
	}
	ko, err := os.ReadFile(filepath.Join(mod, "lp_klpgen_cmdline.ko"))
	if err != nil {
		t.Fatal(err)
	}
	final, err := Finalize(ko)
	if err != nil {
		t.Fatalf("Finalize: %v", err)
	}

	// What the kernel reads.
	info, err := kmod.ReadModInfo(final)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Livepatch || info.Release != k.Release || info.License != "GPL" {
		t.Errorf("modinfo: livepatch %v, release %q (want %q), license %q", info.Livepatch, info.Release, k.Release, info.License)
	}
	if d := cmp.Diff([]string{"cmdline_proc_show"}, info.Functions); d != "" {
		t.Errorf("replaced functions (-want +got):\n%s", d)
	}
	f := parseELF(t, final)
	if !bytes.Contains(sectionData(t, f, ".modinfo"), []byte("livepatch=Y\x00")) {
		t.Error(".modinfo lacks livepatch=Y")
	}
	text := sectionIndex(f, ".text.cmdline_proc_show")
	klp := f.Section(".klp.rela.vmlinux..text.cmdline_proc_show")
	if klp == nil || text < 0 {
		t.Fatalf("sections %v", sectionNames(f))
	}
	if klp.Type != elf.SHT_RELA || klp.Flags != elf.SHF_ALLOC|elf.SHF_INFO_LINK|shfRelaLivepatch ||
		klp.Info != uint32(text) || klp.Link != uint32(sectionIndex(f, ".symtab")) || klp.Entsize != relaSize {
		t.Errorf("klp relocation section %+v", klp.SectionHeader)
	}
	rs := relocsOf(t, f, ".klp.rela.vmlinux..text.cmdline_proc_show")
	if len(rs) != 1 || rs[0].Sym != ".klp.sym.vmlinux.saved_command_line,0" || rs[0].Shndx != shnLivepatch || rs[0].Type != elf.R_X86_64_PC32 {
		t.Errorf("klp relocations %v", rs)
	}
	allSyms, _ := f.Symbols()
	for _, s := range allSyms {
		if strings.HasPrefix(s.Name, PlaceholderPrefix) {
			t.Errorf("placeholder %s left", s.Name)
		}
	}
	for _, r := range relocsOf(t, f, ".rela.text.cmdline_proc_show") {
		if r.Shndx == shnLivepatch {
			t.Errorf("%v left in .rela.text.cmdline_proc_show", r)
		}
	}
	if ip, orc := f.Section(".orc_unwind_ip"), f.Section(".orc_unwind"); ip == nil || orc == nil || ip.Size/4 != orc.Size/6 || ip.Size/4 < 8 {
		t.Errorf("ORC tables of the module are not parallel or miss the new code")
	}
	readelfClean(t, final, "-S", "-s", "-r", "-W")
	if keep := os.Getenv(keepModuleEnv); keep != "" {
		path := filepath.Join(keep, "lp_klpgen_cmdline.ko")
		if err := os.WriteFile(path, final, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("kept the finalized module as %s", path)
	}
}

// keepModuleEnv names a folder where TestKernelBuild keeps the finalized
// module, for booting it in the lab.
const keepModuleEnv = "SPLICEFLEET_KLPGEN_KEEP"

// kernelSymbols loads the lab kernel's Module.symvers and its System.map,
// or, when that is Debian's placeholder, the two vmlinux symbols the
// unit needs.
func kernelSymbols(t *testing.T, k *lab.DebianKernel) *Symbols {
	t.Helper()
	open := func(p string) *os.File {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	symvers := filepath.Join(k.HeadersDir, "Module.symvers")
	syms, err := LoadSymbols(open(symvers), open(filepath.Join(k.Root, "boot", "System.map-"+k.Release)))
	if err == nil {
		return syms
	}
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "placeholder") {
		t.Fatalf("LoadSymbols: %v", err)
	}
	t.Logf("the lab's System.map is Debian's placeholder (%v); listing the unit's two vmlinux symbols", err)
	syms, err = LoadSymbols(open(symvers), strings.NewReader(
		"ffffffff81000000 T _stext\nffffffff8132a0d0 t cmdline_proc_show\nffffffff83a6b0c8 D saved_command_line\n"))
	if err != nil {
		t.Fatal(err)
	}
	return syms
}

// runMake runs make and returns its output, failing the test with it.
func runMake(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, "make", append([]string{"-j2"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testLog sends the lab's progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
