package splice_test

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/splicefleet/splicefleet/splice"
)

const benchModuleSize = 1 << 20

func benchFixture(b *testing.B) *fixture {
	f := newFixture(b, 3)
	f.module = make([]byte, benchModuleSize)
	rand.Read(f.module)
	return f
}

// BenchmarkVerify decodes and verifies a bundle with a 1 MiB module and
// three signatures under a 3-of-3 policy: what an agent does per bundle.
func BenchmarkVerify(b *testing.B) {
	f := benchFixture(b)
	raw := encode(b, f.bundle(b, testManifest(), f.signers...))
	p := f.policy(b, 3)
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for b.Loop() {
		bb, err := splice.Decode(bytes.NewReader(raw))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := splice.Verify(bb, p, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateAndSign builds a bundle around a 1 MiB module, signs it
// with three keys and encodes it: what a publisher does per bundle.
func BenchmarkCreateAndSign(b *testing.B) {
	f := benchFixture(b)
	b.SetBytes(benchModuleSize)
	b.ResetTimer()
	for b.Loop() {
		bb, err := splice.New(testManifest(), f.module)
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range f.signers {
			sig, err := s.Sign(bb.Manifest, now)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := bb.AddSignature(sig); err != nil {
				b.Fatal(err)
			}
		}
		if err := bb.Encode(&bytes.Buffer{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaseline is the irreducible work of BenchmarkVerify, run beside
// it for a ratio: one SHA-256 pass over the module and three signature
// checks over the manifest, with nothing else.
func BenchmarkBaseline(b *testing.B) {
	f := benchFixture(b)
	bb := f.bundle(b, testManifest(), f.signers...)
	p := f.policy(b, 3)
	b.SetBytes(int64(len(bb.Module)))
	b.ResetTimer()
	for b.Loop() {
		_ = splice.Digest(bb.Module)
		if _, err := p.Verify(bb.Manifest, bb.Signatures); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseManifest parses a typical manifest, the duplicate-key pass
// included: the cost of the strict parse per verified bundle.
func BenchmarkParseManifest(b *testing.B) {
	raw := newFixture(b, 0).bundle(b, testManifest()).Manifest
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := splice.ParseManifest(raw); err != nil {
			b.Fatal(err)
		}
	}
}
