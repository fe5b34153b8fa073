package kmod

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/internal/fakemodule"
)

func TestParseModInfo(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    map[string][]string
		wantErr bool
	}{
		{name: "empty", data: "", want: map[string][]string{}},
		{name: "only padding", data: "\x00\x00\x00", want: map[string][]string{}},
		{
			name: "typical",
			data: "livepatch=Y\x00license=GPL\x00depends=\x00name=lp\x00vermagic=6.1.0-56-cloud-amd64 SMP \x00",
			want: map[string][]string{
				"livepatch": {"Y"},
				"license":   {"GPL"},
				"depends":   {""},
				"name":      {"lp"},
				"vermagic":  {"6.1.0-56-cloud-amd64 SMP "},
			},
		},
		{
			name: "repeated keys keep order",
			data: "alias=b\x00alias=a\x00alias=c\x00",
			want: map[string][]string{"alias": {"b", "a", "c"}},
		},
		{
			name: "padding between entries and no final NUL",
			data: "\x00\x00a=1\x00\x00\x00\x00b=2",
			want: map[string][]string{"a": {"1"}, "b": {"2"}},
		},
		{
			name: "value containing equals",
			data: "parm=opt:x=y (int)\x00",
			want: map[string][]string{"parm": {"opt:x=y (int)"}},
		},
		{name: "entry without equals", data: "license=GPL\x00garbage\x00", wantErr: true},
		{name: "empty key", data: "=value\x00", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseModInfo([]byte(tt.data))
			if tt.wantErr {
				if !errors.Is(err, ErrNotModule) {
					t.Fatalf("parseModInfo(%q) error = %v, want ErrNotModule", tt.data, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseModInfo(%q): %v", tt.data, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseModInfo(%q) mismatch (-want +got):\n%s", tt.data, diff)
			}
		})
	}
}

func TestReadModInfo(t *testing.T) {
	tests := []struct {
		name string
		opts fakemodule.Options
		want *ModInfo
	}{
		{
			name: "livepatch x86_64",
			opts: fakemodule.Options{
				Name:      "lp_cmdline",
				Livepatch: true,
				Functions: []string{"meminfo_proc_show", "cmdline_proc_show", "version_proc_show", "cmdline_proc_show"},
			},
			want: &ModInfo{
				Name:      "lp_cmdline",
				Vermagic:  fakemodule.DefaultVermagic,
				Release:   "6.1.0-56-cloud-amd64",
				Livepatch: true,
				License:   "GPL",
				Fields: map[string][]string{
					"livepatch": {"Y"},
					"license":   {"GPL"},
					"depends":   {""},
					"name":      {"lp_cmdline"},
					"vermagic":  {fakemodule.DefaultVermagic},
				},
				Functions: []string{"cmdline_proc_show", "meminfo_proc_show", "version_proc_show"},
				Arch:      "x86_64",
			},
		},
		{
			name: "livepatch aarch64 with extras",
			opts: fakemodule.Options{
				Name:      "lp_arm",
				Vermagic:  "6.1.0-56-cloud-arm64 SMP mod_unload modversions aarch64",
				Livepatch: true,
				License:   "GPL v2",
				Functions: []string{"do_sys_open", "vfs_read.isra.0"},
				Extra:     map[string]string{"srcversion": "ABCDEF0123456789", "alias": "lp-arm"},
				Machine:   elf.EM_AARCH64,
			},
			want: &ModInfo{
				Name:       "lp_arm",
				Vermagic:   "6.1.0-56-cloud-arm64 SMP mod_unload modversions aarch64",
				Release:    "6.1.0-56-cloud-arm64",
				Livepatch:  true,
				License:    "GPL v2",
				SrcVersion: "ABCDEF0123456789",
				Fields: map[string][]string{
					"alias":      {"lp-arm"},
					"srcversion": {"ABCDEF0123456789"},
					"livepatch":  {"Y"},
					"license":    {"GPL v2"},
					"depends":    {""},
					"name":       {"lp_arm"},
					"vermagic":   {"6.1.0-56-cloud-arm64 SMP mod_unload modversions aarch64"},
				},
				Functions: []string{"do_sys_open", "vfs_read.isra.0"},
				Arch:      "aarch64",
			},
		},
		{
			name: "plain module",
			opts: fakemodule.Options{Name: "plain"},
			want: &ModInfo{
				Name:     "plain",
				Vermagic: fakemodule.DefaultVermagic,
				Release:  "6.1.0-56-cloud-amd64",
				License:  "GPL",
				Fields: map[string][]string{
					"license":  {"GPL"},
					"depends":  {""},
					"name":     {"plain"},
					"vermagic": {fakemodule.DefaultVermagic},
				},
				Arch: "x86_64",
			},
		},
		{
			name: "unsupported machine finds no functions",
			opts: fakemodule.Options{Name: "rv", Livepatch: true, Functions: []string{"f"}, Machine: elf.EM_RISCV},
			want: &ModInfo{
				Name:      "rv",
				Vermagic:  fakemodule.DefaultVermagic,
				Release:   "6.1.0-56-cloud-amd64",
				Livepatch: true,
				License:   "GPL",
				Fields: map[string][]string{
					"livepatch": {"Y"},
					"license":   {"GPL"},
					"depends":   {""},
					"name":      {"rv"},
					"vermagic":  {fakemodule.DefaultVermagic},
				},
				Arch: "riscv64",
			},
		},
		{
			name: "depends list",
			opts: fakemodule.Options{Name: "dep", Extra: map[string]string{"depends": "a,,b, c,"}},
			want: &ModInfo{
				Name:     "dep",
				Vermagic: fakemodule.DefaultVermagic,
				Release:  "6.1.0-56-cloud-amd64",
				License:  "GPL",
				Depends:  []string{"a", "b", "c"},
				Fields: map[string][]string{
					"license":  {"GPL"},
					"depends":  {"a,,b, c,", ""},
					"name":     {"dep"},
					"vermagic": {fakemodule.DefaultVermagic},
				},
				Arch: "x86_64",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadModInfo(fakemodule.Build(tt.opts))
			if err != nil {
				t.Fatalf("ReadModInfo: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ReadModInfo mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadModInfoPadding(t *testing.T) {
	mod := fakemodule.Build(fakemodule.Options{Name: "big", Livepatch: true, Functions: []string{"f"}, Padding: 1 << 20})
	if len(mod) < 1<<20 {
		t.Fatalf("padded module is %d bytes, want at least 1 MiB", len(mod))
	}
	info, err := ReadModInfo(mod)
	if err != nil {
		t.Fatalf("ReadModInfo: %v", err)
	}
	if info.Name != "big" || !slices.Equal(info.Functions, []string{"f"}) {
		t.Errorf("got name %q functions %q, want \"big\" [f]", info.Name, info.Functions)
	}
}

func TestRequireLivepatch(t *testing.T) {
	lp, err := ReadModInfo(fakemodule.Build(fakemodule.Options{Name: "lp", Livepatch: true}))
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.RequireLivepatch(); err != nil {
		t.Errorf("RequireLivepatch on a livepatch module: %v", err)
	}

	plain, err := ReadModInfo(fakemodule.Build(fakemodule.Options{Name: "foo"}))
	if err != nil {
		t.Fatal(err)
	}
	err = plain.RequireLivepatch()
	if !errors.Is(err, ErrNotLivepatch) {
		t.Fatalf("RequireLivepatch = %v, want ErrNotLivepatch", err)
	}
	if errors.Is(err, ErrNotModule) {
		t.Errorf("RequireLivepatch error %v also matches ErrNotModule", err)
	}
	const want = `module "foo" is not a livepatch module (no MODULE_INFO(livepatch, "Y"))`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("RequireLivepatch error %q does not contain %q", err, want)
	}

	// livepatch=N or lowercase is not a livepatch.
	notY, err := ReadModInfo(fakemodule.Build(fakemodule.Options{Name: "n", Extra: map[string]string{"livepatch": "y"}}))
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(notY.RequireLivepatch(), ErrNotLivepatch) {
		t.Errorf("livepatch=y accepted as livepatch")
	}
}

// sectionHeaderOffset returns the file offset of the header of the named
// section in an ELF64 file.
func sectionHeaderOffset(t *testing.T, mod []byte, name string) int {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(mod))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range f.Sections {
		if s.Name == name {
			return int(binary.LittleEndian.Uint64(mod[40:])) + i*64
		}
	}
	t.Fatalf("no section %s", name)
	return 0
}

func TestReadModInfoNameFallback(t *testing.T) {
	mod := fakemodule.Build(fakemodule.Options{Name: "oldstyle"})
	mod = bytes.Replace(mod, []byte("\x00name=oldstyle\x00"), []byte("\x00nome=oldstyle\x00"), 1)
	info, err := ReadModInfo(mod)
	if err != nil {
		t.Fatalf("ReadModInfo: %v", err)
	}
	if info.Name != "oldstyle" {
		t.Errorf("Name = %q, want name from struct module %q", info.Name, "oldstyle")
	}

	// No name anywhere is not a module.
	mod = bytes.Replace(mod, []byte("oldstyle\x00\x00"), []byte("\x00ldstyle\x00\x00"), 1)
	if _, err := ReadModInfo(mod); !errors.Is(err, ErrNotModule) {
		t.Errorf("module without a name: error = %v, want ErrNotModule", err)
	}
}

func TestReadModInfoErrors(t *testing.T) {
	good := func() []byte {
		return fakemodule.Build(fakemodule.Options{Name: "lp", Livepatch: true, Functions: []string{"f"}})
	}
	tests := []struct {
		name    string
		mod     func() []byte
		want    error
		wantMsg string
	}{
		{name: "nil", mod: func() []byte { return nil }, want: ErrNotModule},
		{name: "garbage", mod: func() []byte { return []byte("this is not an elf file at all, just text") }, want: ErrNotModule},
		{name: "elf magic only", mod: func() []byte { return []byte("\x7fELF") }, want: ErrNotModule},
		{
			name: "too large",
			mod:  func() []byte { return make([]byte, MaxModuleSize+1) },
			want: ErrTooLarge,
		},
		{
			name: "executable, not relocatable",
			mod: func() []byte {
				m := good()
				binary.LittleEndian.PutUint16(m[16:], uint16(elf.ET_EXEC))
				return m
			},
			want:    ErrNotModule,
			wantMsg: "ET_EXEC",
		},
		{
			name: "no .modinfo",
			mod: func() []byte {
				return bytes.Replace(good(), []byte("\x00.modinfo\x00"), []byte("\x00.modinfX\x00"), 1)
			},
			want:    ErrNotModule,
			wantMsg: "not a kernel module: no .modinfo section",
		},
		{
			name: "no .gnu.linkonce.this_module",
			mod: func() []byte {
				return bytes.Replace(good(), []byte(".gnu.linkonce.this_module"), []byte(".gnu.linkonce.that_module"), 1)
			},
			want:    ErrNotModule,
			wantMsg: "no .gnu.linkonce.this_module section",
		},
		{
			name: ".modinfo larger than input",
			mod: func() []byte {
				m := good()
				h := sectionHeaderOffset(t, m, ".modinfo")
				binary.LittleEndian.PutUint64(m[h+32:], uint64(len(m))+1)
				return m
			},
			want:    ErrNotModule,
			wantMsg: "exceeds",
		},
		{
			name: ".modinfo offset overflows",
			mod: func() []byte {
				m := good()
				h := sectionHeaderOffset(t, m, ".modinfo")
				binary.LittleEndian.PutUint64(m[h+24:], ^uint64(0)-4)
				binary.LittleEndian.PutUint64(m[h+32:], 16)
				return m
			},
			want: ErrNotModule,
		},
		{
			name: ".modinfo is nobits",
			mod: func() []byte {
				m := good()
				h := sectionHeaderOffset(t, m, ".modinfo")
				binary.LittleEndian.PutUint32(m[h+4:], uint32(elf.SHT_NOBITS))
				return m
			},
			want: ErrNotModule,
		},
		{
			name: "malformed .modinfo entry",
			mod: func() []byte {
				return bytes.Replace(good(), []byte("license=GPL"), []byte("license_GPL"), 1)
			},
			want:    ErrNotModule,
			wantMsg: "malformed .modinfo entry",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ReadModInfo(tt.mod())
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadModInfo = %+v, %v; want error %v", info, err, tt.want)
			}
			if info != nil {
				t.Errorf("ReadModInfo returned info %+v with error", info)
			}
			if !strings.HasPrefix(err.Error(), "kmod: read module info: ") {
				t.Errorf("error %q lacks the step prefix", err)
			}
			if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}

// TestReadModInfoTruncated feeds every prefix of a small module: each must
// give an error or a result, never a panic (ReadModInfo recovers, so a
// panic would show as an error mentioning it).
func TestReadModInfoTruncated(t *testing.T) {
	mod := fakemodule.Build(fakemodule.Options{Name: "lp", Livepatch: true, Functions: []string{"a", "b", "c"}})
	for n := 0; n < len(mod); n++ {
		info, err := ReadModInfo(mod[:n])
		if err == nil {
			if info == nil || info.Name == "" {
				t.Fatalf("prefix %d: nil error with info %+v", n, info)
			}
			continue
		}
		if !errors.Is(err, ErrNotModule) {
			t.Fatalf("prefix %d: error %v does not wrap ErrNotModule", n, err)
		}
		if strings.Contains(err.Error(), "panic") {
			t.Fatalf("prefix %d: parser panicked: %v", n, err)
		}
	}
}

// TestReadModInfoCorruptHeaders flips bytes across the section header table
// and the relocations; ReadModInfo must never report a panic.
func TestReadModInfoCorruptHeaders(t *testing.T) {
	mod := fakemodule.Build(fakemodule.Options{Name: "lp", Livepatch: true, Functions: []string{"a", "b"}})
	for i := range mod {
		for _, v := range []byte{0x00, 0xff, 0x7f, 0x80} {
			m := bytes.Clone(mod)
			m[i] = v
			_, err := ReadModInfo(m)
			if err != nil && strings.Contains(err.Error(), "panic") {
				t.Fatalf("byte %d = %#x: parser panicked: %v", i, v, err)
			}
		}
	}
}

// TestReadModInfoRealLivepatch reads a livepatch module built by kbuild
// and GCC against Debian's cloud kernel headers (see
// testdata/livepatch-cmdline/build.sh). It checks that the klp_func
// relocation heuristic works on real compiler output.
func TestReadModInfoRealLivepatch(t *testing.T) {
	mod, err := os.ReadFile(filepath.Join("testdata", "livepatch-cmdline", "livepatch_cmdline.ko"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := ReadModInfo(mod)
	if err != nil {
		t.Fatalf("ReadModInfo: %v", err)
	}
	if err := info.RequireLivepatch(); err != nil {
		t.Error(err)
	}
	if info.Name != "livepatch_cmdline" {
		t.Errorf("Name = %q, want livepatch_cmdline", info.Name)
	}
	if !strings.HasPrefix(info.Release, "6.1.0-") {
		t.Errorf("Release = %q, want 6.1.0-*", info.Release)
	}
	if !strings.HasPrefix(info.Vermagic, info.Release+" ") {
		t.Errorf("Vermagic %q does not start with Release %q", info.Vermagic, info.Release)
	}
	if info.License != "GPL" {
		t.Errorf("License = %q, want GPL", info.License)
	}
	if info.Arch != "x86_64" {
		t.Errorf("Arch = %q, want x86_64", info.Arch)
	}
	if len(info.Depends) != 0 {
		t.Errorf("Depends = %q, want none", info.Depends)
	}
	if diff := cmp.Diff([]string{"cmdline_proc_show"}, info.Functions); diff != "" {
		t.Errorf("Functions mismatch (-want +got):\n%s", diff)
	}
}

// FuzzReadModInfo checks that ReadModInfo never panics and keeps its
// invariants on arbitrary input. Seeds are the files in
// testdata/fuzz/FuzzReadModInfo plus the modules added below. Run it with
// a short minimization time; the seeds are several KB, and minimizing each
// new interesting input for the default 60 s stalls the run:
//
//	go test ./kmod -run '^$' -fuzz FuzzReadModInfo -fuzztime 30s -fuzzminimizetime 2s
func FuzzReadModInfo(f *testing.F) {
	f.Add(fakemodule.Build(fakemodule.Options{Name: "lp", Livepatch: true, Functions: []string{"cmdline_proc_show"}}))
	f.Add(fakemodule.Build(fakemodule.Options{Name: "plain"}))
	f.Add(fakemodule.Build(fakemodule.Options{Name: "arm", Livepatch: true, Functions: []string{"a", "b"}, Machine: elf.EM_AARCH64}))
	if real, err := os.ReadFile(filepath.Join("testdata", "livepatch-cmdline", "livepatch_cmdline.ko")); err == nil {
		f.Add(real)
	}
	f.Fuzz(func(t *testing.T, mod []byte) {
		info, err := ReadModInfo(mod)
		if err != nil {
			if info != nil {
				t.Fatalf("info %+v returned with error %v", info, err)
			}
			if !errors.Is(err, ErrNotModule) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			if strings.Contains(err.Error(), "panic") {
				t.Fatalf("parser panicked: %v", err)
			}
			return
		}
		if info.Name == "" {
			t.Fatal("module without a name accepted")
		}
		if !slices.IsSorted(info.Functions) || len(slices.Compact(slices.Clone(info.Functions))) != len(info.Functions) {
			t.Fatalf("Functions not sorted and unique: %q", info.Functions)
		}
		for _, fn := range info.Functions {
			if fn == "" {
				t.Fatal("empty function name")
			}
		}
		if slices.Contains(info.Depends, "") {
			t.Fatalf("empty entry in Depends %q", info.Depends)
		}
		_ = info.RequireLivepatch()
	})
}

// TestFunctionsHeuristicRejects corrupts the klp_func relocations of a
// built module: the module must still read, with the bad entries dropped.
func TestFunctionsHeuristicRejects(t *testing.T) {
	// Relocations in .rela.data: name of "first" at 0, its function at 24,
	// name of "second" at 48, its function (.text + 16) at 72.
	build := func() []byte {
		return fakemodule.Build(fakemodule.Options{Name: "lp", Livepatch: true, Functions: []string{"first", "second"}})
	}
	relaAt := func(t *testing.T, m []byte) int {
		h := sectionHeaderOffset(t, m, ".rela.data")
		return int(binary.LittleEndian.Uint64(m[h+24:]))
	}
	const symData = 2 // section symbol of .data in fakemodule's symtab
	tests := []struct {
		name    string
		corrupt func(t *testing.T, m []byte)
		want    []string
	}{
		{name: "intact", corrupt: func(*testing.T, []byte) {}, want: []string{"first", "second"}},
		{
			name: "name addend past the string section",
			corrupt: func(t *testing.T, m []byte) {
				binary.LittleEndian.PutUint64(m[relaAt(t, m)+16:], 1<<40)
			},
			want: []string{"second"},
		},
		{
			name: "negative name addend",
			corrupt: func(t *testing.T, m []byte) {
				binary.LittleEndian.PutUint64(m[relaAt(t, m)+16:], ^uint64(0))
			},
			want: []string{"second"},
		},
		{
			name: "new_func points at data",
			corrupt: func(t *testing.T, m []byte) {
				r := relaAt(t, m) + 24
				binary.LittleEndian.PutUint64(m[r+8:], uint64(symData)<<32|uint64(elf.R_X86_64_64))
			},
			want: []string{"second"},
		},
		{
			name: "symbol index out of range",
			corrupt: func(t *testing.T, m []byte) {
				r := relaAt(t, m) + 72
				binary.LittleEndian.PutUint64(m[r+8:], uint64(1<<31)<<32|uint64(elf.R_X86_64_64))
			},
			want: []string{"first"},
		},
		{
			name: "not an absolute relocation",
			corrupt: func(t *testing.T, m []byte) {
				r := relaAt(t, m)
				binary.LittleEndian.PutUint32(m[r+8:], uint32(elf.R_X86_64_PC32))
			},
			want: []string{"second"},
		},
		{
			name: "name not terminated inside its section",
			corrupt: func(t *testing.T, m []byte) {
				// "second" is the last string; overwrite its NUL.
				i := bytes.Index(m, []byte("second\x00"))
				m[i+len("second")] = 'x'
			},
			want: []string{"first"},
		},
		{
			name: "name with characters no symbol has",
			corrupt: func(t *testing.T, m []byte) {
				i := bytes.Index(m, []byte("first\x00"))
				m[i] = ' '
			},
			want: []string{"second"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := build()
			tt.corrupt(t, m)
			info, err := ReadModInfo(m)
			if err != nil {
				t.Fatalf("ReadModInfo: %v", err)
			}
			if diff := cmp.Diff(tt.want, info.Functions); diff != "" {
				t.Errorf("Functions mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
