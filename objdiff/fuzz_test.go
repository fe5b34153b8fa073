package objdiff

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// fuzzLimits are small, so the fuzzer also finds the edges of the bounds.
var fuzzLimits = Limits{MaxSize: 1 << 20, MaxSections: 256, MaxSymbols: 1024, MaxRelocations: 4096}

// FuzzCompare feeds arbitrary bytes to Open and compares what opens with
// itself and with a real object. No panic may escape, every error wraps a
// sentinel, an object within the limits opens only if its counts are
// within them, and an object never differs from itself.
func FuzzCompare(f *testing.F) {
	seed := compile(f, "seed", smallSource, false)
	f.Add(seed)
	f.Add(compile(f, "inline", inlinePre, false))
	f.Add(compile(f, "plain", smallSource, true))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	ref, err := fuzzLimits.Open("seed.o", seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := fuzzLimits.Open("fuzz.o", data)
		if err != nil {
			if o != nil {
				t.Fatalf("object returned with error %v", err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			if strings.Contains(err.Error(), "panic") {
				t.Fatalf("parser panicked: %v", err)
			}
			return
		}
		var relocs int
		for _, s := range o.sections {
			relocs += len(s.relocs)
		}
		if len(data) > fuzzLimits.MaxSize || len(o.sections) > fuzzLimits.MaxSections ||
			len(o.syms)-1 > fuzzLimits.MaxSymbols || relocs > fuzzLimits.MaxRelocations {
			t.Fatalf("limits not enforced: %d bytes, %d sections, %d symbols, %d relocations",
				len(data), len(o.sections), len(o.syms)-1, relocs)
		}
		self := Compare(o, o)
		if !self.Safe() || len(self.Changed)+len(self.Added)+len(self.Removed) > 0 {
			t.Fatalf("object differs from itself: %+v", self)
		}
		for _, res := range []*Result{Compare(ref, o), Compare(o, ref)} {
			if !slices.IsSortedFunc(res.Changed, func(a, b Function) int { return strings.Compare(a.Name, b.Name) }) ||
				!slices.IsSortedFunc(res.Unsafe, func(a, b Problem) int { return strings.Compare(a.Name, b.Name) }) {
				t.Fatalf("result not sorted: %+v", res)
			}
			if (res.Err() == nil) != res.Safe() {
				t.Fatalf("Err() %v disagrees with Safe() %v", res.Err(), res.Safe())
			}
		}
	})
}
