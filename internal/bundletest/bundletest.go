// Package bundletest makes real signed bundles for the tests of the
// packages that store and move them (splice's store, distrib): a trusted
// signer, a stranger, and a policy that trusts only the first, judged at
// one fixed time so that signatures and expiries never depend on the
// clock. The modules are internal/fakemodule livepatch modules. Only
// _test.go files import it (depguard's no-test-helpers rule and
// cmd/splicefleet's TestLayering keep it out of the binary).
package bundletest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// Now is the fixed time the fixtures sign at and verify by.
var Now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// Fixture holds a trusted signer, a stranger, and a policy trusting only
// the first.
type Fixture struct {
	Trusted, Stranger *signing.Signer
	Policy            *signing.Policy
}

// New makes the signers and the policy.
func New(t testing.TB) *Fixture {
	t.Helper()
	f := &Fixture{}
	var err error
	if f.Trusted, err = signing.GenerateSigner("Release Signer <release@example.com>", Now.Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if f.Stranger, err = signing.GenerateSigner("Mallory <mallory@example.com>", Now.Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	f.Policy, err = signing.NewPolicy(signing.NewKeyring(f.Trusted.Public()), 1, signing.WithClock(func() time.Time { return Now }))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Bundle builds a bundle around a livepatch module of about padding
// bytes more than the minimum, signed by signers.
func (f *Fixture) Bundle(t testing.TB, id string, version uint64, padding int, signers ...*signing.Signer) *splice.Bundle {
	t.Helper()
	return f.BundleFrom(t, Manifest(id, version), padding, signers...)
}

// BundleFrom is Bundle with a manifest of the caller's.
func (f *Fixture) BundleFrom(t testing.TB, m splice.Manifest, padding int, signers ...*signing.Signer) *splice.Bundle {
	t.Helper()
	module := fakemodule.Build(fakemodule.Options{Name: m.Module.Name, Livepatch: true, Functions: m.Functions, Padding: padding})
	b, err := splice.New(m, module)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		sig, err := s.Sign(b.Manifest, Now.Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddSignature(sig); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// Manifest is a valid manifest for the simulated kernel's default release.
func Manifest(id string, version uint64) splice.Manifest {
	return splice.Manifest{
		ID:        id,
		Version:   version,
		Target:    splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"},
		Module:    splice.ModuleRef{Name: "livepatch_" + strings.ReplaceAll(id, "-", "_")},
		Functions: []string{"nft_verdict_init"},
		Created:   Now.Add(-time.Hour),
	}
}

// Verified verifies b under the fixture's policy.
func (f *Fixture) Verified(t testing.TB, b *splice.Bundle) *splice.Verified {
	t.Helper()
	v, err := splice.Verify(b, f.Policy, Now)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// OpenStore opens an empty bundle store in a temporary folder.
func OpenStore(t testing.TB) *splice.Store {
	t.Helper()
	s, err := splice.OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// StoreFiles lists every file under the store's heads and modules,
// relative to it.
func StoreFiles(t testing.TB, s *splice.Store) []string {
	t.Helper()
	var out []string
	for _, d := range []string{"heads", "modules"} {
		entries, err := os.ReadDir(filepath.Join(s.Dir(), d))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			out = append(out, d+"/"+e.Name())
		}
	}
	return out
}
