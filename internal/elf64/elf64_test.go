package elf64

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/internal/fakemodule"
)

// module is a small relocatable x86-64 module: 11 sections, a symbol
// table and 4 relocations in .rela.data.
func module() []byte {
	return fakemodule.Build(fakemodule.Options{Name: "lp", Livepatch: true, Functions: []string{"a", "b"}})
}

var x86 = Options{Limits: Limits{MaxSize: MaxObjectSize}, Machine: elf.EM_X86_64, RelaOnly: true}

// header returns the offset of the section header of the named section.
func header(t *testing.T, m []byte, name string) int {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(m))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range f.Sections {
		if s.Name == name {
			return int(binary.LittleEndian.Uint64(m[40:])) + i*ShdrSize
		}
	}
	t.Fatalf("no section %s", name)
	return 0
}

func TestOpen(t *testing.T) {
	m := module()
	f, err := Open(m, x86)
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section(".modinfo")
	if s == nil {
		t.Fatal("no .modinfo")
	}
	b, err := SectionBytes(m, &s.SectionHeader)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("name=lp\x00")) {
		t.Errorf(".modinfo is %q", b)
	}
}

// TestCheckRefuses changes one thing of a good module per case: each
// must be refused with its kind, before debug/elf sees the bytes.
func TestCheckRefuses(t *testing.T) {
	le := binary.LittleEndian
	tests := []struct {
		name    string
		corrupt func(t *testing.T, m []byte) []byte
		opts    Options
		want    error
		detail  string
	}{
		{name: "too large", corrupt: keep, opts: Options{Limits: Limits{MaxSize: len(module()) - 1}}, want: ErrTooLarge, detail: "limit"},
		{name: "truncated header", corrupt: func(_ *testing.T, m []byte) []byte { return m[:EhdrSize-1] }, want: ErrMalformed, detail: "not an ELF file"},
		{name: "no magic", corrupt: func(_ *testing.T, m []byte) []byte { m[1] = 'X'; return m }, want: ErrMalformed, detail: "not an ELF file"},
		{name: "32-bit", corrupt: func(_ *testing.T, m []byte) []byte { m[elf.EI_CLASS] = byte(elf.ELFCLASS32); return m }, want: ErrUnsupported, detail: "ELFCLASS32"},
		{name: "big endian", corrupt: func(_ *testing.T, m []byte) []byte { m[elf.EI_DATA] = byte(elf.ELFDATA2MSB); return m }, want: ErrUnsupported, detail: "ELFDATA2MSB"},
		{name: "executable", corrupt: func(_ *testing.T, m []byte) []byte { le.PutUint16(m[16:], uint16(elf.ET_EXEC)); return m }, want: ErrUnsupported, detail: "ET_EXEC"},
		{name: "other machine", corrupt: func(_ *testing.T, m []byte) []byte { le.PutUint16(m[18:], uint16(elf.EM_AARCH64)); return m }, opts: x86, want: ErrUnsupported, detail: "EM_AARCH64"},
		{name: "no section headers", corrupt: func(_ *testing.T, m []byte) []byte { le.PutUint64(m[40:], 0); return m }, want: ErrMalformed, detail: "no section headers"},
		{name: "extended numbering", corrupt: func(_ *testing.T, m []byte) []byte { le.PutUint16(m[60:], 0); return m }, want: ErrTooLarge, detail: "extended"},
		{name: "section header size", corrupt: func(_ *testing.T, m []byte) []byte { le.PutUint16(m[58:], 40); return m }, want: ErrMalformed, detail: "header size 40"},
		{name: "name table index", corrupt: func(_ *testing.T, m []byte) []byte { le.PutUint16(m[62:], le.Uint16(m[60:])); return m }, want: ErrMalformed, detail: "name table"},
		{
			name:    "section headers past the end",
			corrupt: func(_ *testing.T, m []byte) []byte { return m[:le.Uint64(m[40:])+ShdrSize] },
			want:    ErrMalformed, detail: "section headers",
		},
		{
			name: "section past the end",
			corrupt: func(t *testing.T, m []byte) []byte {
				le.PutUint64(m[header(t, m, ".text")+32:], uint64(len(m)))
				return m
			},
			want: ErrMalformed, detail: "exceeds",
		},
		{
			name: "section offset overflows",
			corrupt: func(t *testing.T, m []byte) []byte {
				h := header(t, m, ".text")
				le.PutUint64(m[h+24:], ^uint64(0)-4)
				le.PutUint64(m[h+32:], 16)
				return m
			},
			want: ErrMalformed, detail: "exceeds",
		},
		{name: "too many sections", corrupt: keep, opts: Options{Limits: Limits{MaxSections: 3}}, want: ErrTooLarge, detail: "sections, limit 3"},
		{name: "too many symbols", corrupt: keep, opts: Options{Limits: Limits{MaxSymbols: 2}}, want: ErrTooLarge, detail: "symbols, limit 2"},
		{name: "too many relocations", corrupt: keep, opts: Options{Limits: Limits{MaxRelocations: 3}}, want: ErrTooLarge, detail: "4 relocations, limit 3"},
		{
			name: "SHT_REL",
			corrupt: func(t *testing.T, m []byte) []byte {
				le.PutUint32(m[header(t, m, ".rela.data")+4:], uint32(elf.SHT_REL))
				return m
			},
			opts: x86, want: ErrUnsupported, detail: "SHT_REL",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.corrupt(t, module())
			f, err := Open(m, tt.opts)
			var e *Error
			if f != nil || !errors.Is(err, tt.want) || !errors.As(err, &e) {
				t.Fatalf("Open = %v, %v; want an *Error of kind %v", f, err, tt.want)
			}
			if !strings.Contains(e.Detail, tt.detail) {
				t.Errorf("detail %q does not say %q", e.Detail, tt.detail)
			}
		})
	}
}

func keep(_ *testing.T, m []byte) []byte { return m }

// TestOptions: without Machine any machine is read, and SHT_REL is
// refused only under RelaOnly.
func TestOptions(t *testing.T) {
	arm := fakemodule.Build(fakemodule.Options{Name: "arm", Livepatch: true, Functions: []string{"a"}, Machine: elf.EM_AARCH64})
	if f, err := Open(arm, Options{}); err != nil || f.Machine != elf.EM_AARCH64 {
		t.Errorf("aarch64 module without Machine: %v, %v", f, err)
	}
	m := module()
	binary.LittleEndian.PutUint32(m[header(t, m, ".rela.data")+4:], uint32(elf.SHT_REL))
	if _, err := Open(m, Options{Machine: elf.EM_X86_64}); err != nil {
		t.Errorf("SHT_REL without RelaOnly: %v", err)
	}
	if _, err := Open(module(), Options{Limits: Limits{MaxSections: 1 << 20}}); err != nil {
		t.Errorf("MaxSections above 0xff00: %v", err)
	}
}

func TestSectionBytes(t *testing.T) {
	data := []byte("0123456789")
	tests := []struct {
		name string
		sh   elf.SectionHeader
		want []byte
		err  error
	}{
		{name: "inside", sh: elf.SectionHeader{Type: elf.SHT_PROGBITS, Offset: 2, FileSize: 3}, want: []byte("234")},
		{name: "to the end", sh: elf.SectionHeader{Type: elf.SHT_PROGBITS, Offset: 4, FileSize: 6}, want: []byte("456789")},
		{name: "nobits", sh: elf.SectionHeader{Type: elf.SHT_NOBITS, Offset: 100, FileSize: 100}},
		{name: "past the end", sh: elf.SectionHeader{Type: elf.SHT_PROGBITS, Offset: 4, FileSize: 7}, err: ErrMalformed},
		{name: "offset past the end", sh: elf.SectionHeader{Type: elf.SHT_PROGBITS, Offset: 11}, err: ErrMalformed},
		{name: "offset overflows", sh: elf.SectionHeader{Type: elf.SHT_PROGBITS, Offset: ^uint64(0) - 1, FileSize: 4}, err: ErrMalformed},
		{name: "compressed", sh: elf.SectionHeader{Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED, Offset: 0, FileSize: 4}, err: ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.sh.Name = ".x"
			b, err := SectionBytes(data, &tt.sh)
			if !errors.Is(err, tt.err) || !bytes.Equal(b, tt.want) {
				t.Fatalf("SectionBytes = %q, %v; want %q, %v", b, err, tt.want, tt.err)
			}
			if err != nil && !strings.Contains(err.Error(), "section .x") {
				t.Errorf("error %q does not name the section", err)
			}
		})
	}
}

func TestParseRefusesGarbage(t *testing.T) {
	for _, in := range [][]byte{nil, []byte("\x7fELF"), []byte("\x7fELF\x02\x01\x01" + strings.Repeat("\xff", 57))} {
		if f, err := Parse(in); f != nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) = %v, %v; want ErrMalformed", in, f, err)
		}
	}
}

func TestDecodeSym(t *testing.T) {
	b := []byte{
		5, 0, 0, 0, // name
		byte(elf.STB_GLOBAL)<<4 | byte(elf.STT_FUNC), 2, // info, other
		3, 0, // shndx
		0x10, 0, 0, 0, 0, 0, 0, 0, // value
		0x20, 0, 0, 0, 0, 0, 0, 0, // size
	}
	want := Sym{Name: 5, Info: b[4], Other: 2, Shndx: 3, Value: 0x10, Size: 0x20}
	if got := DecodeSym(b); got != want || got.Type() != elf.STT_FUNC || got.Bind() != elf.STB_GLOBAL {
		t.Errorf("DecodeSym = %+v, want %+v (FUNC GLOBAL)", got, want)
	}
}

func TestRelaRoundTrip(t *testing.T) {
	rs := []Rela{
		{Off: 8, Sym: 7, Type: uint32(elf.R_X86_64_PC32), Addend: -4},
		{Off: 1 << 40, Sym: 1<<32 - 1, Type: uint32(elf.R_X86_64_64), Addend: 1 << 62},
	}
	var b []byte
	for _, r := range rs {
		b = AppendRela(b, r)
	}
	if len(b) != len(rs)*RelaSize {
		t.Fatalf("%d bytes for %d relocations", len(b), len(rs))
	}
	// The layout of Elf64_Rela: r_offset, then r_info = sym<<32 | type.
	if info := binary.LittleEndian.Uint64(b[8:]); info != 7<<32|uint64(elf.R_X86_64_PC32) {
		t.Errorf("r_info %#x", info)
	}
	for i, want := range rs {
		if got := DecodeRela(b[i*RelaSize:]); got != want {
			t.Errorf("relocation %d: %+v, want %+v", i, got, want)
		}
	}
}

func TestErrorWrap(t *testing.T) {
	mine := errors.New("not a kernel module")
	_, err := Open([]byte("text"), Options{})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%v is not an *Error", err)
	}
	w := e.Wrap(mine)
	if !errors.Is(w, mine) || !errors.Is(w, ErrMalformed) {
		t.Errorf("%v matches not both %v and ErrMalformed", w, mine)
	}
	if got := w.Error(); got != "not a kernel module: not an ELF file" {
		t.Errorf("message %q", got)
	}
}

// FuzzOpen feeds Open arbitrary bytes. Seeds are the module corpus of
// kmod's FuzzReadModInfo (testdata/fuzz/FuzzOpen, plus a real module
// built by kbuild) and the modules below. No panic may escape, every
// error is an *Error of a known kind, and a file that opens is within
// its limits, and every section and record of it reads within the input.
func FuzzOpen(f *testing.F) {
	f.Add(module())
	f.Add(fakemodule.Build(fakemodule.Options{Name: "arm", Livepatch: true, Functions: []string{"a", "b"}, Machine: elf.EM_AARCH64}))
	lim := Options{Limits: Limits{MaxSize: 1 << 20, MaxSections: 64, MaxSymbols: 256, MaxRelocations: 256}}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Open(data, lim)
		if err != nil {
			var e *Error
			if file != nil || !errors.As(err, &e) {
				t.Fatalf("Open = %v, %v", file, err)
			}
			if !slices.Contains([]error{ErrMalformed, ErrUnsupported, ErrTooLarge}, e.Kind) {
				t.Fatalf("kind %v", e.Kind)
			}
			if strings.Contains(err.Error(), "panic") {
				t.Fatalf("parser panicked: %v", err)
			}
			return
		}
		if len(data) > lim.MaxSize || len(file.Sections) > lim.MaxSections {
			t.Fatalf("limits not enforced: %d bytes, %d sections", len(data), len(file.Sections))
		}
		var syms, relas int
		for _, s := range file.Sections {
			b, err := SectionBytes(data, &s.SectionHeader)
			if err != nil {
				continue
			}
			if s.Type != elf.SHT_NOBITS && uint64(len(b)) != s.FileSize {
				t.Fatalf("section %s: %d bytes, header says %d", s.Name, len(b), s.FileSize)
			}
			switch s.Type {
			case elf.SHT_SYMTAB:
				for ; len(b) >= SymSize; b = b[SymSize:] {
					DecodeSym(b)
					syms++
				}
			case elf.SHT_RELA:
				for ; len(b) >= RelaSize; b = b[RelaSize:] {
					DecodeRela(b)
					relas++
				}
			}
		}
		if syms > lim.MaxSymbols || relas > lim.MaxRelocations {
			t.Fatalf("limits not enforced: %d symbols, %d relocations", syms, relas)
		}
	})
}
