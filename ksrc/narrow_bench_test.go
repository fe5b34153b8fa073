package ksrc

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkMentionsPastes reads a header of 300 generator macros, each
// #undef'd after three invocations (as asm/io.h's BUILDIO), and 300
// pastes of other macros, for names that their pieces may make: every
// paste is a candidate, so each generator's invocations are read.
func BenchmarkMentionsPastes(b *testing.B) {
	var text strings.Builder
	for i := range 300 {
		fmt.Fprintf(&text, "#define GEN%d(bwl, type) \\\nstatic inline type in##bwl##_p%d(u16 port) \\\n{ return in##bwl(port); }\n", i, i)
		fmt.Fprintf(&text, "GEN%d(b, u8)\nGEN%d(w, u16)\nGEN%d(l, u32)\n#undef GEN%d\n\n", i, i, i, i)
		fmt.Fprintf(&text, "#define OTHER%d(x) x##_other%d\nstatic int v%d = %d;\n\n", i, i, i, i)
	}
	data := []byte(text.String())
	names := []string{"inet_reset_saddr", "ip_skb_dst_mtu", "ip_dst_mtu_maybe_forward"}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		mentions(data, names)
	}
}
