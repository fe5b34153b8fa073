package splice

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzDecodeHead: a head is what a peer serves before any module; the
// decoder never panics, stays within its bounds, and what it accepts
// re-encodes to a head that decodes to the same value.
func FuzzDecodeHead(f *testing.F) {
	good, err := EncodeHead(&Head{Manifest: []byte(`{"id":"x"}`), Signatures: [][]byte{{1, 2}, {3}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"manifest":"eA==","signatures":[]}`))
	f.Add([]byte(`{"manifest":"eA==","signatures":null} {}`))
	f.Add([]byte(`{"manifest":"","signatures":["AA=="],"x":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHead(data)
		if err != nil {
			return
		}
		if len(data) > MaxHeadSize || h.check() != nil {
			t.Fatalf("accepted a head out of bounds: %d bytes, %v", len(data), h.check())
		}
		enc, err := EncodeHead(h)
		if err != nil {
			t.Fatalf("accepted head does not encode: %v", err)
		}
		back, err := DecodeHead(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(h.Signatures) == 0 && len(back.Signatures) == 0 {
			h.Signatures, back.Signatures = nil, nil
		}
		if !reflect.DeepEqual(h, back) || !bytes.Equal(enc, mustEncodeHead(t, back)) {
			t.Fatalf("round trip: %+v, then %+v", h, back)
		}
	})
}

func mustEncodeHead(t *testing.T, h *Head) []byte {
	t.Helper()
	b, err := EncodeHead(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
