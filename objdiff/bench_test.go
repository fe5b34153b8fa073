package objdiff

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkDiffLargeUnit compares a unit of 2,000 functions, each
// calling functions other objects define, before and after a change to
// one of them: the size of a large driver's object. Every Compare also
// judges every reference to those functions (externCalls), which
// decodes the code of each function that refers to one.
func BenchmarkDiffLargeUnit(b *testing.B) {
	var src strings.Builder
	src.WriteString("extern int ext_a(int);\nextern int ext_b(int, int);\nextern int table[];\n")
	for i := range 2000 {
		fmt.Fprintf(&src, "int f%d(int x) { int y = ext_a(x + %d); if (y > %d) y = ext_b(y, x); return y + table[x & 7] + CHANGE%d; }\n", i, i, i%13, i)
	}
	text := src.String()
	pre := compile(b, "pre", strings.NewReplacer("CHANGE", "0*").Replace(text), false)
	post := compile(b, "post", strings.NewReplacer("CHANGE1999", "1+0*1999", "CHANGE", "0*").Replace(text), false)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := Diff("pre.o", pre, "post.o", post)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Changed) != 1 {
			b.Fatalf("changed %v, want f1999 alone", names(res.Changed))
		}
	}
}
