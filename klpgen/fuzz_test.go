package klpgen

import (
	"bytes"
	"testing"
)

// FuzzFinalize feeds Finalize arbitrary bytes: it must return an error
// or a module that parses and that a second Finalize leaves unchanged,
// and never panic. The seeds are a gcc-compiled object with placeholders
// and Generate's output.
func FuzzFinalize(f *testing.F) {
	f.Add(compileC(f, placeholderUnit))
	syms := symbolsFor(f, []string{"printk_like"}, kernelUnitMap...)
	out, _ := generateUnit(f, kernelUnit, []string{"target"}, nil, syms)
	f.Add(out.Object)
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 1<<20 {
			return
		}
		out, err := Finalize(in)
		if err != nil {
			return
		}
		if _, err := openELF(out); err != nil {
			t.Fatalf("Finalize wrote a module that does not parse: %v", err)
		}
		again, err := Finalize(out)
		if err != nil {
			t.Fatalf("a second Finalize failed: %v", err)
		}
		if !bytes.Equal(again, out) {
			t.Fatal("a second Finalize changed the module")
		}
	})
}
