package klpgen

import (
	"errors"
	"strings"
	"testing"
)

func TestLoadSymbols(t *testing.T) {
	symvers := "0x8ef22deb\tseq_puts\tvmlinux\tEXPORT_SYMBOL\t\n" +
		"0x12345678\tcxl_thing\tvmlinux\tEXPORT_SYMBOL_GPL\tCXL\n" +
		"0x0000abcd\tkvm_thing\tarch/x86/kvm/kvm\tEXPORT_SYMBOL_GPL\t\n" +
		"0x00000001\tshort_line\tvmlinux\tEXPORT_SYMBOL\n"
	sysmap := "ffffffff81000000 T _stext\n" +
		"ffffffff81000100 t count.0\n" +
		"ffffffff81000200 T seq_puts\n" +
		"\n" +
		"ffffffff81000300 t count.0\n" +
		"ffffffffc0000000 t mod_local\t[kvm]\n" +
		"0000000000001234 D per_cpu_thing\n"
	s, err := LoadSymbols(strings.NewReader(symvers), strings.NewReader(sysmap))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		exported bool
		ns       string
		count    int
	}{
		{"seq_puts", true, "", 1},
		{"cxl_thing", true, "CXL", 0},
		{"kvm_thing", false, "", 0}, // a module's export
		{"short_line", true, "", 0},
		{"count.0", false, "", 2},
		{"mod_local", false, "", 0}, // a module's symbol
		{"per_cpu_thing", false, "", 1},
	} {
		if s.Exported(c.name) != c.exported || s.Namespace(c.name) != c.ns || s.Count(c.name) != c.count {
			t.Errorf("%s: exported %v ns %q count %d, want %v %q %d", c.name, s.Exported(c.name), s.Namespace(c.name),
				s.Count(c.name), c.exported, c.ns, c.count)
		}
	}
	if s.Len() != 5 {
		t.Errorf("Len() = %d, want 5", s.Len())
	}
}

func TestLoadSymbolsRefuses(t *testing.T) {
	okSymvers := "0x8ef22deb\tseq_puts\tvmlinux\tEXPORT_SYMBOL\t\n"
	okMap := "ffffffff81000000 T _stext\n"
	for _, tc := range []struct {
		name, symvers, sysmap, want string
		err                         error
	}{
		{"debian placeholder", okSymvers, "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n", "placeholder", ErrMalformed},
		{"empty map", okSymvers, "", "no vmlinux symbols", ErrMalformed},
		{"empty symvers", "", okMap, "no symbols exported", ErrMalformed},
		{"old symvers", "0x8ef22deb\tseq_puts\t\tvmlinux\tEXPORT_SYMBOL\n", okMap, "5.10", ErrMalformed},
		{"bad crc", "crc\tseq_puts\tvmlinux\tEXPORT_SYMBOL\t\n", okMap, "crc", ErrMalformed},
		{"bad address", okSymvers, "zz T x\n", "address", ErrMalformed},
		{"bad type", okSymvers, "ffffffff81000000 TT x\n", "type", ErrMalformed},
		{"two fields", okSymvers, "ffffffff81000000 T\n", "fields", ErrMalformed},
		{"bad module", okSymvers, "ffffffff81000000 T x kvm\n", "module", ErrMalformed},
		{"long name", okSymvers, "ffffffff81000000 T " + strings.Repeat("a", 512) + "\n", "name", ErrMalformed},
		{"long line", okSymvers, "ffffffff81000000 T " + strings.Repeat("a", 5000) + "\n", "longer", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadSymbols(strings.NewReader(tc.symvers), strings.NewReader(tc.sysmap))
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tc.err, tc.want)
			}
		})
	}
}

func TestLoadSymbolsBoundsInput(t *testing.T) {
	okSymvers := "0x8ef22deb\tseq_puts\tvmlinux\tEXPORT_SYMBOL\t\n"
	line := "ffffffff81000000 T a_symbol_name_of_some_length\n"
	big := strings.NewReader(strings.Repeat(line, maxSymbolsInput/len(line)+1))
	_, err := LoadSymbols(strings.NewReader(okSymvers), big)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

// TestColdParent: the cold parts gcc splits off a function name that
// function; other names, and names that only contain ".cold", do not.
func TestColdParent(t *testing.T) {
	for sym, want := range map[string]string{
		"btrfs_chunk_alloc_add_chunk_item.cold": "btrfs_chunk_alloc_add_chunk_item",
		"vfat_fill_super.cold.3":                "vfat_fill_super",
		"helper.isra.0.cold":                    "helper.isra.0",
		"cold":                                  "",
		".cold":                                 "",
		"f.coldness":                            "",
		"f.cold_start":                          "",
		"seq_show":                              "",
	} {
		got, ok := ColdParent(sym)
		if got != want || ok != (want != "") {
			t.Errorf("ColdParent(%q) = %q, %t; want %q", sym, got, ok, want)
		}
	}
}
