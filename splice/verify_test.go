package splice_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// TestVerifyRefuses is one case per attack on a whole bundle. Each asserts
// the reason and that the bundle given to Verify was not changed.
func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t, 3)
	a, b := f.signers[0], f.signers[1]
	stranger := newFixture(t, 1).signers[0]

	expiring := testManifest()
	exp := now.Add(-time.Minute)
	expiring.Expires = &exp

	cases := []struct {
		name      string
		threshold int
		make      func() *splice.Bundle
		want      []error
	}{
		{"unsigned", 1, func() *splice.Bundle { return f.bundle(t, testManifest()) }, []error{splice.ErrSignature, signing.ErrNoSignatures}},
		{"tampered module", 1, func() *splice.Bundle {
			bb := f.bundle(t, testManifest(), a)
			bb.Module[len(bb.Module)/2] ^= 0x40
			return bb
		}, []error{splice.ErrModuleDigest}},
		{"module swapped for another of the same size", 1, func() *splice.Bundle {
			bb := f.bundle(t, testManifest(), a)
			bb.Module = bytes.Repeat([]byte{0}, len(bb.Module))
			return bb
		}, []error{splice.ErrModuleDigest}},
		{"module truncated", 1, func() *splice.Bundle {
			bb := f.bundle(t, testManifest(), a)
			bb.Module = bb.Module[:len(bb.Module)-1]
			return bb
		}, []error{splice.ErrModuleDigest}},
		{"tampered manifest", 1, func() *splice.Bundle {
			bb := f.bundle(t, testManifest(), a)
			bb.Manifest = bytes.Replace(bb.Manifest, []byte(`"version": 3`), []byte(`"version": 9`), 1)
			return bb
		}, []error{splice.ErrSignature, signing.ErrBadSignature}},
		{"untrusted signer", 1, func() *splice.Bundle { return f.bundle(t, testManifest(), stranger) }, []error{splice.ErrSignature, signing.ErrUnknownSigner}},
		{"below threshold", 2, func() *splice.Bundle { return f.bundle(t, testManifest(), a) }, []error{splice.ErrSignature, signing.ErrBelowThreshold}},
		{"same key twice", 2, func() *splice.Bundle {
			bb := f.bundle(t, testManifest(), a)
			sig, _ := a.Sign(bb.Manifest, now.Add(-2*time.Minute))
			if _, err := bb.AddSignature(sig); err != nil {
				t.Fatal(err)
			}
			return bb
		}, []error{splice.ErrSignature, signing.ErrDuplicateSigner}},
		{"expired bundle", 1, func() *splice.Bundle { return f.bundle(t, expiring, a) }, []error{splice.ErrExpired}},
		{"signed manifest with an unknown field", 1, func() *splice.Bundle {
			bb := f.bundle(t, testManifest())
			bb.Manifest = bytes.Replace(bb.Manifest, []byte(`"replace": false,`), []byte(`"replace": false, "force": true,`), 1)
			sig, _ := a.Sign(bb.Manifest, now)
			if _, err := bb.AddSignature(sig); err != nil {
				t.Fatal(err)
			}
			return bb
		}, []error{splice.ErrManifest}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bb := tc.make()
			before := encode(t, bb)
			v, err := splice.Verify(bb, f.policy(t, tc.threshold), now)
			if err == nil {
				t.Fatalf("accepted: %+v", v.Manifest)
			}
			if !splice.IsReject(err) {
				t.Fatalf("%v is not a rejection", err)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q does not wrap %q", err, w)
				}
			}
			if after := encode(t, bb); !bytes.Equal(before, after) {
				t.Error("Verify changed the bundle")
			}
		})
	}
	_ = b
}

func TestReasonLabels(t *testing.T) {
	f := newFixture(t, 1)
	bb := f.bundle(t, testManifest())
	_, err := splice.Verify(bb, f.policy(t, 1), now)
	if got := splice.Reason(err); got != "signature" {
		t.Fatalf("Reason = %q", got)
	}
	if got := splice.Reason(errors.New("disk on fire")); got != "" {
		t.Fatalf("Reason of an I/O error = %q", got)
	}
}

// Source patch digests for manifests built on top of each other.
var (
	digestA = strings.Repeat("a", 64)
	digestB = strings.Repeat("b", 64)
	digestC = strings.Repeat("c", 64)
)

func TestManifestValidation(t *testing.T) {
	cases := map[string]func(m *splice.Manifest){
		"empty id":           func(m *splice.Manifest) { m.ID = "" },
		"id with slash":      func(m *splice.Manifest) { m.ID = "../etc" },
		"version zero":       func(m *splice.Manifest) { m.Version = 0 },
		"bad cve":            func(m *splice.Manifest) { m.CVEs = []string{"CVE-24-1"} },
		"duplicate cve":      func(m *splice.Manifest) { m.CVEs = []string{"CVE-2024-1086", "CVE-2024-1086"} },
		"no release":         func(m *splice.Manifest) { m.Target.Release = "" },
		"release with space": func(m *splice.Manifest) { m.Target.Release = "6.1 evil" },
		"bad build id":       func(m *splice.Manifest) { m.Target.BuildID = "XYZ" },
		"no arch":            func(m *splice.Manifest) { m.Target.Arch = "" },
		"bad module name":    func(m *splice.Manifest) { m.Module.Name = "a/b" },
		"no functions":       func(m *splice.Manifest) { m.Functions = nil },
		"bad function":       func(m *splice.Manifest) { m.Functions = []string{"rm -rf"} },
		"duplicate function": func(m *splice.Manifest) { m.Functions = []string{"f", "f"} },
		"no created":         func(m *splice.Manifest) { m.Created = time.Time{} },
		"bad source patch":   func(m *splice.Manifest) { m.SourcePatch = "ABC" },
		"bad on_top_of digest": func(m *splice.Manifest) {
			m.OnTopOf = []splice.UpdateRef{{SourcePatch: "abc"}}
		},
		"on_top_of itself": func(m *splice.Manifest) {
			m.SourcePatch = digestA
			m.OnTopOf = []splice.UpdateRef{{SourcePatch: digestA}}
		},
		"on_top_of twice": func(m *splice.Manifest) {
			m.OnTopOf = []splice.UpdateRef{{SourcePatch: digestA}, {SourcePatch: digestA, Name: "again.patch"}}
		},
		"on_top_of name with a newline": func(m *splice.Manifest) {
			m.OnTopOf = []splice.UpdateRef{{SourcePatch: digestA, Name: "fix1.patch\nevil"}}
		},
		"replace on_top_of": func(m *splice.Manifest) {
			m.Replace = true
			m.OnTopOf = []splice.UpdateRef{{SourcePatch: digestA}}
		},
		"expires before created": func(m *splice.Manifest) {
			e := m.Created.Add(-time.Second)
			m.Expires = &e
		},
	}
	module := []byte("module")
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			m := testManifest()
			mutate(&m)
			if _, err := splice.New(m, module); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := splice.New(testManifest(), nil); err == nil {
		t.Fatal("empty module accepted")
	}
	// A bundle built on top of two earlier updates is valid.
	m := testManifest()
	m.SourcePatch = digestC
	m.OnTopOf = []splice.UpdateRef{{SourcePatch: digestA, Name: "fix1.patch"}, {SourcePatch: digestB}}
	if _, err := splice.New(m, module); err != nil {
		t.Fatalf("on_top_of of two updates: %v", err)
	}
	for _, bad := range []string{"", "{", "[]", `{"id":"x"}`, `{} {}`, `{"unknown": 1}`} {
		if _, err := splice.ParseManifest([]byte(bad)); !errors.Is(err, splice.ErrManifest) {
			t.Errorf("ParseManifest(%q) = %v", bad, err)
		}
	}
}

// TestVerifyRefusesAmbiguousManifest: a manifest signed by two trusted
// keys whose keys read differently to a reviewer's tool (jq, Python: exact
// names) and to encoding/json (case-insensitive, last wins) is refused, and
// the error names the key. Without the check the agent would apply
// "evil-id" while every reviewer saw the first value.
func TestVerifyRefusesAmbiguousManifest(t *testing.T) {
	f := newFixture(t, 2)
	cases := []struct {
		name, old, new, want string
	}{
		{"id twice in two cases", `"id": "cve-2024-1086",`, `"id": "cmdline", "ID": "evil-id",`,
			`ambiguous manifest: duplicate key "ID" in the object at $: it differs from "id" only in case`},
		{"version twice in two cases", `"version": 3,`, `"version": 3, "Version": 4000000000,`,
			`duplicate key "Version" in the object at $: it differs from "version" only in case`},
		{"the same key twice", `"version": 3,`, `"version": 3, "version": 4000000000,`,
			`duplicate key "version" in the object at $`},
		{"a field only by its case", `"version": 3,`, `"VERSION": 4000000000,`,
			`key "VERSION" in the object at $ is the field "version" only when case is ignored`},
		{"nested", `"sha256": "`, `"SHA256": "0000000000000000000000000000000000000000000000000000000000000000", "sha256": "`,
			`key "SHA256" in the object at $.module is the field "sha256" only when case is ignored`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bb := f.bundle(t, testManifest())
			if !bytes.Contains(bb.Manifest, []byte(tc.old)) {
				t.Fatalf("manifest has no %s:\n%s", tc.old, bb.Manifest)
			}
			bb.Manifest = bytes.Replace(bb.Manifest, []byte(tc.old), []byte(tc.new), 1)
			for _, s := range f.signers {
				sig, err := s.Sign(bb.Manifest, now.Add(-time.Minute))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := bb.AddSignature(sig); err != nil {
					t.Fatal(err)
				}
			}
			before := encode(t, bb)
			v, err := splice.Verify(bb, f.policy(t, 2), now)
			if err == nil {
				t.Fatalf("accepted: id %q version %d", v.Manifest.ID, v.Manifest.Version)
			}
			if !errors.Is(err, splice.ErrDuplicateKey) || splice.Reason(err) != "duplicate_key" {
				t.Fatalf("error %v (reason %q) is not a duplicate key", err, splice.Reason(err))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n%s\ndoes not say\n%s", err, tc.want)
			}
			if after := encode(t, bb); !bytes.Equal(before, after) {
				t.Error("Verify changed the bundle")
			}
		})
	}
}
