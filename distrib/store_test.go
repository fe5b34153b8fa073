package distrib

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// distNow is the fixed time the distribution tests judge signatures by.
var distNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// distFixture holds a trusted signer, a stranger, and a policy trusting
// only the first.
type distFixture struct {
	trusted, stranger *signing.Signer
	policy            *signing.Policy
}

func newDistFixture(t testing.TB) *distFixture {
	t.Helper()
	f := &distFixture{}
	var err error
	if f.trusted, err = signing.GenerateSigner("Release Signer <release@example.com>", distNow.Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if f.stranger, err = signing.GenerateSigner("Mallory <mallory@example.com>", distNow.Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	f.policy, err = signing.NewPolicy(signing.NewKeyring(f.trusted.Public()), 1, signing.WithClock(func() time.Time { return distNow }))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// bundle builds a bundle around a fakemodule livepatch module of about
// padding bytes more than the minimum, signed by signers.
func (f *distFixture) bundle(t testing.TB, id string, version uint64, padding int, signers ...*signing.Signer) *splice.Bundle {
	t.Helper()
	return f.bundleFrom(t, distManifest(id, version), padding, signers...)
}

func (f *distFixture) bundleFrom(t testing.TB, m splice.Manifest, padding int, signers ...*signing.Signer) *splice.Bundle {
	t.Helper()
	module := fakemodule.Build(fakemodule.Options{Name: m.Module.Name, Livepatch: true, Functions: m.Functions, Padding: padding})
	b, err := splice.New(m, module)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		sig, err := s.Sign(b.Manifest, distNow.Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddSignature(sig); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func distManifest(id string, version uint64) splice.Manifest {
	return splice.Manifest{
		ID:        id,
		Version:   version,
		Target:    splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"},
		Module:    splice.ModuleRef{Name: "livepatch_" + strings.ReplaceAll(id, "-", "_")},
		Functions: []string{"nft_verdict_init"},
		Created:   distNow.Add(-time.Hour),
	}
}

func (f *distFixture) verified(t testing.TB, b *splice.Bundle) *splice.Verified {
	t.Helper()
	v, err := splice.Verify(b, f.policy, distNow)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newTestStore(t testing.TB) *splice.Store {
	t.Helper()
	s, err := splice.OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storeFiles lists every file under the store's folders, relative to it.
func storeFiles(t testing.TB, s *splice.Store) []string {
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

// testLogger sends logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
