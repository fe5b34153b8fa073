package objdiff

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

const smallSource = `
extern int puts(const char *);
static int hits;
static const int table[] = {1, 2, 3, 5};
int pick(int i) { hits++; return table[i & 3]; }
void hello(void) { puts("hello"); }
`

func TestDiffMalformedObjects(t *testing.T) {
	obj := compile(t, "small", smallSource, false)
	cases := map[string][]byte{
		"empty":          {},
		"garbage":        []byte("this is not an object file, just some text long enough for a header................"),
		"magic only":     []byte("\x7fELF"),
		"header only":    obj[:64],
		"half":           obj[:len(obj)/2],
		"one byte short": obj[:len(obj)-1],
	}
	// Section headers pointing past the end of the file.
	bad := slices.Clone(obj)
	binary.LittleEndian.PutUint64(bad[40:], uint64(len(obj)))
	cases["section headers past the end"] = bad
	// A section whose contents lie past the end of the file.
	bad = slices.Clone(obj)
	shoff := binary.LittleEndian.Uint64(bad[40:])
	binary.LittleEndian.PutUint64(bad[shoff+shdrSize+32:], uint64(len(obj)))
	cases["section past the end"] = bad
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			o, err := Open("bad.o", data)
			if o != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Open = %v, %v; want ErrMalformed", o, err)
			}
			if !strings.Contains(err.Error(), "bad.o") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	// Every truncation is refused, not parsed into a partial object.
	for n := 0; n < len(obj); n += 13 {
		if _, err := Open("cut.o", obj[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d bytes: %v, want ErrMalformed", n, err)
		}
	}
}

// When .debug_info ends inside a LEB128 number, debug/dwarf up to Go
// 1.26 returns null entries forever, without consuming input or failing
// (the walk must stop anyway: "do not advance"), and from Go 1.27 reports
// an underflow. Either way the object is refused as malformed, and Open
// returns.
func TestDiffDebugInfoThatDoesNotAdvance(t *testing.T) {
	obj := compile(t, "small", smallSource, false)
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	info := f.Section(".debug_info")
	if info == nil {
		t.Fatal("no .debug_info")
	}
	bad := slices.Clone(obj)
	// The unit ends with the null entry closing its children; make it a
	// LEB128 byte that says more follows.
	bad[info.Offset+info.Size-1] = 0x80
	o, err := Open("loop.o", bad)
	if o != nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "debug info") {
		t.Fatalf("Open = %v, %v; want ErrMalformed reading the debug info", o, err)
	}
}

// Random corruption never panics and never fails without a sentinel.
func TestDiffCorruptedObjects(t *testing.T) {
	pre := compile(t, "small", smallSource, false)
	good, err := Open("good.o", pre)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		data := slices.Clone(pre)
		for range 1 + rng.IntN(8) {
			data[rng.IntN(len(data))] = byte(rng.Uint32())
		}
		o, err := Open("corrupt.o", data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("case %d: error without a sentinel: %v", i, err)
			}
			continue
		}
		Compare(good, o)
		Compare(o, good)
		if res := Compare(o, o); !res.Safe() || len(res.Changed)+len(res.Added)+len(res.Removed) > 0 {
			t.Fatalf("case %d: object differs from itself: %+v", i, res)
		}
	}
}

func TestDiffUnsupportedObjects(t *testing.T) {
	obj := compile(t, "small", smallSource, false)
	patch := func(off int, b ...byte) []byte {
		d := slices.Clone(obj)
		copy(d[off:], b)
		return d
	}
	for name, data := range map[string][]byte{
		"no type":    append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 57)...),
		"32-bit":     patch(4, 1),
		"big endian": patch(5, 2),
		"executable": patch(16, 2, 0),
		"aarch64":    patch(18, 183, 0),
	} {
		if _, err := Open("x.o", data); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
}

// Aliases make symbols overlap, and comparing reads each symbol's bytes:
// overlap beyond a small multiple of the object is refused, so the work
// stays bounded by the input.
func TestDiffOverlappingSymbols(t *testing.T) {
	src := "void big(void) { asm volatile(\".fill 65536, 1, 0x90\"); }\n"
	for i := range 12 {
		src += fmt.Sprintf("void alias%d(void) __attribute__((alias(\"big\")));\n", i)
	}
	obj := compile(t, "aliases", src, true)
	if o, err := Open("aliases.o", obj); o != nil || !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "symbols overlap") {
		t.Fatalf("Open = %v, %v; want ErrTooLarge (symbols overlap)", o, err)
	}
	// Four aliases are within the bound, and each is compared.
	src = strings.Join(strings.SplitAfter(src, "\n")[:5], "")
	res, err := Diff("pre.o", compile(t, "pre", src, true), "post.o", compile(t, "post", strings.Replace(src, "0x90", "0xcc", 1), true))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(res.Changed); !slices.Equal(got, []string{"alias0", "alias1", "alias2", "alias3", "big"}) {
		t.Errorf("changed %q", got)
	}
}

func TestDiffLimits(t *testing.T) {
	obj := compile(t, "small", smallSource, false)
	if _, err := (Limits{}).Open("ok.o", obj); err != nil {
		t.Fatalf("zero Limits are the defaults: %v", err)
	}
	for name, l := range map[string]Limits{
		"size":        {MaxSize: len(obj) - 1},
		"sections":    {MaxSections: 3},
		"symbols":     {MaxSymbols: 2},
		"relocations": {MaxRelocations: 1},
	} {
		o, err := l.Open("big.o", obj)
		if o != nil || !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "big.o") {
			t.Errorf("%s: Open = %v, %v; want ErrTooLarge naming big.o", name, o, err)
		}
	}
	if _, err := Open("huge.o", make([]byte, MaxObjectSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("object over MaxObjectSize: %v", err)
	}
}

func TestDiffNamesArePrintable(t *testing.T) {
	for in, want := range map[string]string{
		"helper.isra.0":   "helper.isra.0",
		"long int":        "long int",
		"evil\x1b[2Jname": `"evil\x1b[2Jname"`,
		"line\nbreak":     `"line\nbreak"`,
		"caf\u00e9":       `"caf\u00e9"`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %s, want %s", in, got, want)
		}
	}
}
