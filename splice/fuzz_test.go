package splice_test

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/splice"
)

// FuzzDecode feeds arbitrary bytes to the container decoder: it must never
// panic, every failure must be a rejection, and whatever it accepts must
// survive an encode/decode round trip unchanged.
func FuzzDecode(f *testing.F) {
	fx := newFixture(f, 1)
	good, err := fx.bundle(f, testManifest(), fx.signers...).Bytes()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(container(1, sec(1, []byte("{}")), sec(2, []byte("m")), sec(0x90, []byte("x")), sec(0, nil)))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := splice.Decode(bytes.NewReader(data))
		if err != nil {
			if !splice.IsReject(err) {
				t.Fatalf("not a rejection: %v", err)
			}
			return
		}
		raw, err := b.Bytes()
		if err != nil {
			return // e.g. an empty manifest section decodes but does not encode
		}
		back, err := splice.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		back.Minor = b.Minor
		if diff := cmp.Diff(b, back); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzParseManifest: the manifest parser never panics, and an accepted
// manifest re-encodes to one that parses to the same value.
func FuzzParseManifest(f *testing.F) {
	fx := newFixture(f, 0)
	f.Add(fx.bundle(f, testManifest()).Manifest)
	f.Add([]byte(`{"id":"x","version":1}`))
	f.Add([]byte(`{"id":"a","version":18446744073709551615,"target":{"release":"r","arch":"x"},"module":{"name":"m","sha256":"` +
		"0000000000000000000000000000000000000000000000000000000000000000" + `","size":1},"replace":true,"functions":["f"],"created":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := splice.ParseManifest(data)
		if err != nil {
			if !splice.IsReject(err) {
				t.Fatalf("not a rejection: %v", err)
			}
			return
		}
		raw, err := m.Marshal()
		if err != nil {
			t.Fatalf("accepted manifest does not marshal: %v", err)
		}
		again, err := splice.ParseManifest(raw)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if diff := cmp.Diff(m, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
