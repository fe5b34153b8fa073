package splice_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func testManifest() splice.Manifest {
	return splice.Manifest{
		ID:          "cve-2024-1086",
		Version:     3,
		Description: "netfilter: nf_tables: reject verdicts in set elements",
		CVEs:        []string{"CVE-2024-1086"},
		Target:      splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"},
		Module:      splice.ModuleRef{Name: "livepatch_nft"},
		Functions:   []string{"nft_verdict_init"},
		Created:     now.Add(-time.Hour),
	}
}

type fixture struct {
	signers []*signing.Signer
	module  []byte
}

func newFixture(t testing.TB, n int) *fixture {
	t.Helper()
	f := &fixture{module: bytes.Repeat([]byte("\x7fELF module bytes "), 64)}
	for i := range n {
		s, err := signing.GenerateSigner(string(rune('A'+i))+" Signer <s@example.com>", now.Add(-48*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		f.signers = append(f.signers, s)
	}
	return f
}

func (f *fixture) policy(t testing.TB, threshold int) *signing.Policy {
	t.Helper()
	var keys []*signing.Key
	for _, s := range f.signers {
		keys = append(keys, s.Public())
	}
	p, err := signing.NewPolicy(signing.NewKeyring(keys...), threshold, signing.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// bundle makes a bundle signed by the given signers.
func (f *fixture) bundle(t testing.TB, m splice.Manifest, signers ...*signing.Signer) *splice.Bundle {
	t.Helper()
	b, err := splice.New(m, f.module)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		sig, err := s.Sign(b.Manifest, now.Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddSignature(sig); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func encode(t testing.TB, b *splice.Bundle) []byte {
	t.Helper()
	raw, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t, 2)
	unsigned := f.bundle(t, testManifest())
	manifest := append([]byte(nil), unsigned.Manifest...)
	b := f.bundle(t, testManifest(), f.signers...)
	if !bytes.Equal(b.Manifest, manifest) {
		t.Fatal("signing changed the manifest bytes")
	}
	back, err := splice.Decode(bytes.NewReader(encode(t, b)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b, back); diff != "" {
		t.Fatalf("decode(encode(b)) differs (-want +got):\n%s", diff)
	}
	v, err := splice.Verify(back, f.policy(t, 2), now)
	if err != nil {
		t.Fatal(err)
	}
	want := testManifest()
	want.Module.SHA256 = splice.Digest(f.module)
	want.Module.Size = int64(len(f.module))
	if diff := cmp.Diff(want, v.Manifest); diff != "" {
		t.Fatalf("manifest (-want +got):\n%s", diff)
	}
	if len(v.Signers) != 2 || v.ManifestDigest != splice.Digest(manifest) || !bytes.Equal(v.Module, f.module) {
		t.Fatalf("verified: signers %v digest %s", v.Signers, v.ManifestDigest)
	}
	// Adding the same signature again is a no-op.
	if added, err := b.AddSignature(b.Signatures[0]); added || err != nil {
		t.Fatalf("re-adding a signature: added %v err %v", added, err)
	}
}

func TestManifestIsIndentedJSON(t *testing.T) {
	f := newFixture(t, 0)
	b := f.bundle(t, testManifest())
	s := string(b.Manifest)
	for _, want := range []string{"{\n  \"id\": \"cve-2024-1086\",\n  \"version\": 3,", "\"functions\": [\n    \"nft_verdict_init\"\n  ]", "\"created\": \"2026-11-01T11:00:00Z\""} {
		if !strings.Contains(s, want) {
			t.Errorf("manifest lacks %q:\n%s", want, s)
		}
	}
	if !strings.HasSuffix(s, "}\n") {
		t.Errorf("manifest does not end in a newline")
	}
}

// section builds raw container bytes for structural tests.
func container(major uint16, sections ...[]byte) []byte {
	var buf bytes.Buffer
	buf.Write([]byte{0x89, 'S', 'P', 'L', 'I', 'C', 'E', '\n'})
	buf.Write(binary.BigEndian.AppendUint16(nil, major))
	buf.Write([]byte{0, 0})
	for _, s := range sections {
		buf.Write(s)
	}
	return buf.Bytes()
}

func sec(kind byte, body []byte) []byte {
	h := []byte{kind, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[1:], uint32(len(body)))
	return append(h, body...)
}

func secClaim(kind byte, size uint32) []byte {
	h := []byte{kind, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[1:], size)
	return h
}

func TestDecodeRefuses(t *testing.T) {
	f := newFixture(t, 1)
	good := encode(t, f.bundle(t, testManifest(), f.signers...))
	m, mod := sec(1, []byte("{}")), sec(2, []byte("mod"))
	end := sec(0, nil)
	cases := []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty", nil, splice.ErrFormat},
		{"garbage", []byte("this is not a bundle, just text that is long enough"), splice.ErrFormat},
		{"a gzip file", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0}, splice.ErrFormat},
		{"unknown major version", container(2, m, mod, end), splice.ErrVersion},
		{"truncated header", good[:10], splice.ErrTruncated},
		{"truncated in the module", good[:len(good)/2], splice.ErrTruncated},
		{"missing end marker", good[:len(good)-5], splice.ErrTruncated},
		{"trailing data", append(append([]byte(nil), good...), 0), splice.ErrFormat},
		{"manifest too large", container(1, secClaim(1, splice.MaxManifestSize+1)), splice.ErrTooLarge},
		{"module too large", container(1, m, secClaim(2, splice.MaxModuleSize+1)), splice.ErrTooLarge},
		{"signature too large", container(1, m, mod, secClaim(3, splice.MaxSignatureSize+1)), splice.ErrTooLarge},
		{"too many signatures", container(1, append(append([]byte(nil), m...), append(mod, bytes.Repeat(sec(3, []byte("s")), splice.MaxSignatures+1)...)...)), splice.ErrTooLarge},
		{"module before manifest", container(1, mod, m, end), splice.ErrFormat},
		{"two manifests", container(1, m, m, mod, end), splice.ErrFormat},
		{"no module", container(1, m, end), splice.ErrFormat},
		{"unknown required section", container(1, m, mod, sec(9, []byte("x")), end), splice.ErrFormat},
		{"end with a body", container(1, m, mod, sec(0, []byte("x"))), splice.ErrFormat},
		{"too many optional sections", container(1, append(append([]byte(nil), m...), append(mod, bytes.Repeat(sec(0x80, nil), splice.MaxOptionalSections+1)...)...)), splice.ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := splice.Decode(bytes.NewReader(tc.input))
			if err == nil {
				t.Fatalf("decoded: %+v", b)
			}
			if !errors.Is(err, tc.want) || !splice.IsReject(err) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

func TestDecodeEveryTruncation(t *testing.T) {
	f := newFixture(t, 1)
	good := encode(t, f.bundle(t, testManifest(), f.signers...))
	for n := 0; n < len(good); n++ {
		if _, err := splice.Decode(bytes.NewReader(good[:n])); err == nil || !splice.IsReject(err) {
			t.Fatalf("prefix of %d/%d bytes: err %v", n, len(good), err)
		}
	}
}

func TestDecodeSkipsOptionalSections(t *testing.T) {
	// A newer minor version may add optional sections; this reader skips
	// them and keeps everything else.
	raw := container(1, sec(1, []byte("{}")), sec(2, []byte("mod")), sec(0x81, []byte("future data")), sec(3, []byte("sig")), sec(0, nil))
	binary.BigEndian.PutUint16(raw[10:], 7)
	b, err := splice.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if b.Minor != 7 || string(b.Manifest) != "{}" || string(b.Module) != "mod" || len(b.Signatures) != 1 {
		t.Fatalf("decoded %+v", b)
	}
}
