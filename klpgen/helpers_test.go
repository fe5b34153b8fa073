package klpgen

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// kernelCFlags are the code-generation flags of a kernel unit that
// matter here, without the kernel's headers.
var kernelCFlags = []string{
	"-c", "-O2", "-ffunction-sections", "-fdata-sections", "-fno-pic", "-mcmodel=kernel",
	"-mno-red-zone", "-fno-asynchronous-unwind-tables", "-fno-stack-protector",
}

// compileC compiles a C unit with gcc and returns the object.
func compileC(t testing.TB, src string, extra ...string) []byte {
	t.Helper()
	return testutil.CompileC(t, "unit", src, append(slices.Clone(kernelCFlags), extra...)...)
}

// symbolsFor builds Symbols from exported names (with an optional
// namespace after a colon, "name:NS") and System.map names, each listed
// as often as it should appear.
func symbolsFor(t testing.TB, exports []string, mapNames ...string) *Symbols {
	t.Helper()
	var symvers, sysmap strings.Builder
	exports = append([]string{"filler_export"}, exports...)
	for i, e := range exports {
		name, ns, _ := strings.Cut(e, ":")
		fmt.Fprintf(&symvers, "0x%08x\t%s\tvmlinux\tEXPORT_SYMBOL\t%s\n", i+1, name, ns)
	}
	// Filler so the map looks like one, exported names included.
	for i, n := range append(append([]string{"_stext", "_text"}, mapNames...), exportNames(exports)...) {
		fmt.Fprintf(&sysmap, "%016x T %s\n", 0xffffffff81000000+uint64(i)*16, n)
	}
	s, err := LoadSymbols(strings.NewReader(symvers.String()), strings.NewReader(sysmap.String()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func exportNames(exports []string) []string {
	var names []string
	for _, e := range exports {
		name, _, _ := strings.Cut(e, ":")
		names = append(names, name)
	}
	return names
}

func parseELF(t testing.TB, b []byte) *elf.File {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse output: %v", err)
	}
	return f
}

// testReloc is a relocation as the tests check it: the symbol by name
// and section index.
type testReloc struct {
	Off    uint64
	Type   elf.R_X86_64
	Sym    string
	Shndx  elf.SectionIndex
	Addend int64
}

func (r testReloc) String() string {
	return fmt.Sprintf("%#x %v %s(%v)%+d", r.Off, r.Type, r.Sym, r.Shndx, r.Addend)
}

// relocsOf decodes a relocation section by hand, independently of the
// package's own reader.
func relocsOf(t *testing.T, f *elf.File, name string) []testReloc {
	t.Helper()
	s := f.Section(name)
	if s == nil {
		t.Fatalf("no section %s; have %v", name, sectionNames(f))
	}
	b, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var rs []testReloc
	for i := 0; i+24 <= len(b); i += 24 {
		info := binary.LittleEndian.Uint64(b[i+8:])
		r := testReloc{
			Off:    binary.LittleEndian.Uint64(b[i:]),
			Type:   elf.R_X86_64(uint32(info)),
			Addend: int64(binary.LittleEndian.Uint64(b[i+16:])),
		}
		idx := int(info >> 32)
		if idx == 0 || idx > len(syms) {
			t.Fatalf("%s: relocation %d refers to symbol %d of %d", name, i/24, idx, len(syms))
		}
		sym := syms[idx-1]
		r.Sym, r.Shndx = sym.Name, sym.Section
		if elf.ST_TYPE(sym.Info) == elf.STT_SECTION {
			r.Sym = f.Sections[sym.Section].Name
		}
		rs = append(rs, r)
	}
	return rs
}

func sectionNames(f *elf.File) []string {
	var names []string
	for _, s := range f.Sections {
		names = append(names, s.Name)
	}
	return names
}

func symbolNamed(t *testing.T, f *elf.File, name string) elf.Symbol {
	t.Helper()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no symbol %s", name)
	return elf.Symbol{}
}

func sectionData(t *testing.T, f *elf.File, name string) []byte {
	t.Helper()
	s := f.Section(name)
	if s == nil {
		t.Fatalf("no section %s; have %v", name, sectionNames(f))
	}
	b, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readelfClean runs readelf with args on an object and fails the test
// on any warning or error; it returns the output.
func readelfClean(t *testing.T, obj []byte, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("readelf"); err != nil {
		t.Fatal("readelf not found (apt-get install binutils)")
	}
	path := filepath.Join(t.TempDir(), "check.o")
	if err := os.WriteFile(path, obj, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("readelf", append(args, path)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("readelf %v: %v\n%s", args, err, stderr.String())
	}
	if stderr.Len() > 0 || strings.Contains(stdout.String(), "Warning") || strings.Contains(stdout.String(), "Error") {
		t.Fatalf("readelf %v complains:\n%s\n%s", args, stderr.String(), stdout.String())
	}
	return stdout.String()
}

func sortedStrings(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}
