package fakemodule

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func open(t *testing.T, b []byte) *elf.File {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("debug/elf cannot open the built module: %v", err)
	}
	return f
}

func TestBuildSections(t *testing.T) {
	b := Build(Options{Name: "lp", Livepatch: true, Functions: []string{"cmdline_proc_show", "meminfo_proc_show"}})
	f := open(t, b)
	if f.Type != elf.ET_REL || f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		t.Fatalf("header: type %v machine %v class %v data %v", f.Type, f.Machine, f.Class, f.Data)
	}
	want := map[string]elf.SectionFlag{
		".text":                     elf.SHF_ALLOC | elf.SHF_EXECINSTR,
		".data":                     elf.SHF_ALLOC | elf.SHF_WRITE,
		".rela.data":                elf.SHF_INFO_LINK,
		".rodata.str1.1":            elf.SHF_ALLOC | elf.SHF_MERGE | elf.SHF_STRINGS,
		".modinfo":                  elf.SHF_ALLOC,
		".gnu.linkonce.this_module": elf.SHF_ALLOC | elf.SHF_WRITE,
		".symtab":                   0,
		".strtab":                   0,
		".shstrtab":                 0,
	}
	for name, flags := range want {
		s := f.Section(name)
		if s == nil {
			t.Errorf("no section %s", name)
			continue
		}
		if s.Flags != flags {
			t.Errorf("section %s flags %v, want %v", name, s.Flags, flags)
		}
	}
	if f.Section(".data.pad") != nil {
		t.Errorf("unexpected .data.pad without padding")
	}

	modinfo, err := f.Section(".modinfo").Data()
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range []string{"livepatch=Y", "license=GPL", "name=lp", "vermagic=" + DefaultVermagic} {
		if !bytes.Contains(modinfo, []byte(kv+"\x00")) {
			t.Errorf(".modinfo %q lacks %q", modinfo, kv)
		}
	}

	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var funcs []string
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			funcs = append(funcs, s.Name)
		}
	}
	if !slices.Equal(funcs, []string{"livepatch_cmdline_proc_show", "livepatch_meminfo_proc_show"}) {
		t.Errorf("function symbols %q", funcs)
	}

	rela := f.Section(".rela.data")
	if rela.Size != 4*24 {
		t.Errorf(".rela.data has %d bytes, want 4 relocations", rela.Size)
	}
	if f.Sections[rela.Info].Name != ".data" || f.Sections[rela.Link].Name != ".symtab" {
		t.Errorf(".rela.data info/link point at %s/%s", f.Sections[rela.Info].Name, f.Sections[rela.Link].Name)
	}
}

func TestBuildOptions(t *testing.T) {
	b := Build(Options{})
	f := open(t, b)
	modinfo, _ := f.Section(".modinfo").Data()
	if !bytes.Contains(modinfo, []byte("name=testmod\x00")) || bytes.Contains(modinfo, []byte("livepatch")) {
		t.Errorf("zero Options .modinfo = %q", modinfo)
	}

	padded := Build(Options{Padding: 1 << 20, Machine: elf.EM_AARCH64, Extra: map[string]string{"alias": "x"}})
	if len(padded) < 1<<20 {
		t.Errorf("padded module is %d bytes", len(padded))
	}
	f = open(t, padded)
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("machine %v", f.Machine)
	}
	if s := f.Section(".data.pad"); s == nil || s.Size != 1<<20 {
		t.Errorf(".data.pad = %+v", s)
	}
	modinfo, _ = f.Section(".modinfo").Data()
	if !strings.HasPrefix(string(modinfo), "alias=x\x00") {
		t.Errorf(".modinfo = %q, want alias first", modinfo)
	}
}

// TestReadelfAccepts runs binutils' readelf over built modules and fails on
// any warning or error it prints.
func TestReadelfAccepts(t *testing.T) {
	readelf, err := exec.LookPath("readelf")
	if err != nil {
		t.Fatal("readelf is not installed: run `make test-deps` (or apt-get install binutils)")
	}
	for _, o := range []Options{
		{},
		{Name: "lp", Livepatch: true, Functions: []string{"a", "b", "c"}, Padding: 100},
		{Name: "arm", Livepatch: true, Functions: []string{"a"}, Machine: elf.EM_AARCH64},
	} {
		path := filepath.Join(t.TempDir(), "m.ko")
		if err := os.WriteFile(path, Build(o), 0o644); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(readelf, "-a", "-W", path)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("readelf %+v: %v\n%s", o, err, stderr.String())
		}
		if lower := strings.ToLower(string(out)); strings.Contains(lower, "warning") || strings.Contains(lower, "error") {
			t.Errorf("readelf %+v printed a warning:\n%s", o, out)
		}
	}
}
