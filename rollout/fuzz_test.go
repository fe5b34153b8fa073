package rollout

import (
	"bytes"
	"encoding/hex"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The decoders of this package read bytes from other members of the
// cluster (gossip events, tags, documents served by peers). Fuzzing
// asserts that they never panic, refuse with their own error, and that
// what they accept re-encodes to what decodes to the same value.

const fuzzDigest = "3f1c0000000000000000000000000000000000000000000000000000000000e9"

func FuzzDecodePlan(f *testing.F) {
	f.Add([]byte("id: cve-1\nbundle: " + fuzzDigest + "\nstages:\n  - ring: canary\n    soak: 10m\n  - percent: 1.5\n  - percent: 100\n" +
		"target:\n  kernels: [6.1.0-56-cloud-amd64]\n  tags: {role: web}\ngates:\n  max_failures: -1\n  max_failure_ratio: 0.1\n" +
		"  min_healthy: 0.9\n  health_window: 5m\non_halt: halt\nexpires: 2026-12-31T00:00:00Z\n"))
	f.Add([]byte("id: x\nbundle: " + fuzzDigest + "\nstages: [{percent: 100}]\n"))
	f.Add([]byte("{id: x, bundle: " + fuzzDigest + ", stages: [{ring: a}, {ring: a}]}"))
	f.Add([]byte("id: &a x\nbundle: *a\n---\nid: y\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePlan(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidPlan) {
				t.Fatalf("error %v is not ErrInvalidPlan", err)
			}
			return
		}
		enc, err := p.Encode()
		if err != nil {
			t.Fatalf("accepted plan does not encode: %v", err)
		}
		if len(enc) > MaxPlanSize {
			return // a compact plan may encode longer than the limit
		}
		back, err := DecodePlan(enc)
		if err != nil {
			t.Fatalf("re-decode of\n%s: %v", enc, err)
		}
		if !samePlan(p, back) {
			t.Fatalf("round trip:\n%+v\n%+v", p, back)
		}
	})
}

func samePlan(a, b *Plan) bool {
	if (a.Expires == nil) != (b.Expires == nil) || (a.Expires != nil && !a.Expires.Equal(*b.Expires)) {
		return false
	}
	x, y := *a, *b
	x.Expires, y.Expires = nil, nil
	if len(x.Target.Tags) == 0 && len(y.Target.Tags) == 0 {
		x.Target.Tags, y.Target.Tags = nil, nil
	}
	if len(x.Target.Kernels) == 0 && len(y.Target.Kernels) == 0 {
		x.Target.Kernels, y.Target.Kernels = nil, nil
	}
	return reflect.DeepEqual(x, y)
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []Command{
		{Plan: fuzzDigest, Seq: 1, Action: ActionPromote, Stage: 2, Issued: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Plan: fuzzDigest, Seq: 1 << 60, Action: ActionRevoke, Reason: "regression", Issued: time.Date(2026, 1, 1, 0, 0, 0, 5, time.FixedZone("x", 3600))},
	} {
		b, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"plan":"` + fuzzDigest + `","seq":1,"action":"halt","issued":"2026-01-01T00:00:00Z","digest":"x"}`))
	f.Add([]byte(`{"plan":"` + fuzzDigest + `","seq":1,"action":"halt","issued":"2026-01-01T00:00:00Z"} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("error %v is not ErrInvalidCommand", err)
			}
			return
		}
		enc, err := EncodeCommand(*c)
		if err != nil {
			t.Fatalf("accepted command does not encode: %v", err)
		}
		back, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		again, err := EncodeCommand(*back)
		if err != nil || !bytes.Equal(enc, again) || !c.Issued.Equal(back.Issued) {
			t.Fatalf("round trip: %s, then %s (%v)", enc, again, err)
		}
	})
}

func FuzzDecodeDocument(f *testing.F) {
	d := &Document{Kind: KindPlan, Body: []byte("id: x\n"), Signatures: [][]byte{{1, 2, 3}, {4}}}
	wire, err := d.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(wire)
	f.Add([]byte(`{"kind":"command","body":"eA==","signatures":[]}`))
	f.Add([]byte(`{"kind":"plan","body":"eA==","signatures":["AA=="],"extra":1}`))
	f.Add([]byte(`{"kind":"plan","body":"eA==","signatures":["AA=="]}[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDocument(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidDocument) {
				t.Fatalf("error %v is not ErrInvalidDocument", err)
			}
			return
		}
		if len(d.Signatures) > maxSignatures || d.Err() != nil {
			t.Fatalf("accepted a document out of bounds: %d signatures, %v", len(d.Signatures), d.Err())
		}
		enc, err := d.Encode()
		if err != nil {
			t.Fatalf("accepted document does not encode: %v", err)
		}
		back, err := DecodeDocument(enc)
		if err != nil || !reflect.DeepEqual(d, back) || back.Digest() != d.Digest() {
			t.Fatalf("round trip: %+v, then %+v (%v)", d, back, err)
		}
	})
}

func FuzzDecodeReport(f *testing.F) {
	key := testHostKey(f, 3)
	for _, r := range []HostReport{
		{Plan: fuzzDigest, Node: "node-01", State: StateFailed, Seq: 3, Reason: "health check: exit 1"},
		{Plan: fuzzDigest, Node: strings.Repeat("n", 128), State: StateHealthy, Seq: 1 << 40, Reason: strings.Repeat("r", 200)},
		{Plan: fuzzDigest, Node: "n", State: StateApplying},
	} {
		b, err := EncodeReport(r, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{1})
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeReport(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedEvent) && !errors.Is(err, ErrReportSignature) && !errors.Is(err, ErrUnsignedReport) {
				t.Fatalf("error %v is none of the report errors", err)
			}
			return
		}
		if d, err := hex.DecodeString(r.Plan); err != nil || len(d) != 32 {
			t.Fatalf("plan %q is not a digest", r.Plan)
		}
		if !bytes.Equal(r.Key, key.Public()) {
			t.Fatalf("a report verified under a key nobody holds: %x", r.Key)
		}
		enc, err := EncodeReport(r.HostReport, key)
		if err != nil {
			t.Fatalf("accepted report %+v does not encode: %v", r, err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", data, enc)
		}
	})
}

func FuzzDecodeDocAnnouncement(f *testing.F) {
	for _, a := range []DocAnnouncement{
		{Kind: KindPlan, Digest: fuzzDigest, Origin: "10.0.0.1:7947"},
		{Kind: KindCommand, Digest: fuzzDigest, Origin: strings.Repeat("h", 255)},
	} {
		b, err := EncodeDocAnnouncement(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeDocAnnouncement(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedEvent) {
				t.Fatalf("error %v is not ErrMalformedEvent", err)
			}
			return
		}
		enc, err := EncodeDocAnnouncement(a)
		if err != nil {
			t.Fatalf("accepted announcement %+v does not encode: %v", a, err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", data, enc)
		}
	})
}

func FuzzDecodeReports(f *testing.F) {
	f.Add("3f1c0000e9=h,0123456789=f")
	f.Add("3f1c0000e9=h,3f1c0000e9=x,,=,abc=h,0123456789=hh,0123456789=z")
	f.Add("")
	f.Fuzz(func(t *testing.T, tag string) {
		got := DecodeReports(tag)
		if len(got) > strings.Count(tag, ",")+1 {
			t.Fatalf("%d reports from %d parts", len(got), strings.Count(tag, ",")+1)
		}
		var rs []Report
		for k, s := range got {
			if len(k) != reportKeyLen || s.String() == "unknown" || s == StateNone {
				t.Fatalf("report %q=%q", k, s)
			}
			rs = append(rs, Report{Plan: k, State: s})
		}
		if len(rs) > MaxReports {
			return
		}
		if back := DecodeReports(EncodeReports(rs)); !maps.Equal(back, got) {
			t.Fatalf("round trip: %v, then %v", got, back)
		}
	})
}
