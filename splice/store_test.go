package splice_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/splicefleet/splicefleet/internal/bundletest"

	"github.com/splicefleet/splicefleet/splice"
)

// storeNow is the fixed time the store tests judge signatures by.
var storeNow = bundletest.Now

var (
	newStoreFixture = bundletest.New
	newTestStore    = bundletest.OpenStore
	storeFiles      = bundletest.StoreFiles
)

func encodeBundle(t testing.TB, b *splice.Bundle) []byte {
	t.Helper()
	raw, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestStoreRoundTripSurvivesReopen(t *testing.T) {
	f := newStoreFixture(t)
	b := f.Bundle(t, "cve-2024-1086", 3, 100, f.Trusted)
	v := f.Verified(t, b)
	dir := t.TempDir()
	s, err := splice.OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Has(v.ManifestDigest) {
		t.Fatal("empty store has the bundle")
	}
	if err := s.Put(v); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(v); err != nil {
		t.Fatalf("second Put: %v", err)
	}

	s2, err := splice.OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]*splice.Store{"same": s, "reopened": s2} {
		if !st.Has(v.ManifestDigest) {
			t.Fatalf("%s: Has = false", name)
		}
		h, err := st.Head(v.ManifestDigest)
		if err != nil || !bytes.Equal(h.Manifest, b.Manifest) || len(h.Signatures) != 1 || !bytes.Equal(h.Signatures[0], b.Signatures[0]) {
			t.Fatalf("%s: splice.Head = %+v, %v", name, h, err)
		}
		got, err := st.Bundle(v.ManifestDigest)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(encodeBundle(t, got), encodeBundle(t, b)) {
			t.Fatalf("%s: reassembled bundle differs", name)
		}
		if _, err := splice.Verify(got, f.Policy, storeNow); err != nil {
			t.Fatalf("%s: stored bundle does not verify: %v", name, err)
		}
		mf, size, err := st.OpenModule(v.Manifest.Module.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(mf)
		mf.Close()
		if size != int64(len(b.Module)) || !bytes.Equal(data, b.Module) {
			t.Fatalf("%s: module %d bytes (size %d), want %d", name, len(data), size, len(b.Module))
		}
		list, err := st.List()
		want := splice.Entry{Digest: v.ManifestDigest, ID: "cve-2024-1086", Version: 3, ModuleSHA256: v.Manifest.Module.SHA256, Size: int64(len(b.Module))}
		if err != nil || len(list) != 1 || list[0] != want {
			t.Fatalf("%s: List = %+v, %v; want %+v", name, list, err, want)
		}
	}
	if files := storeFiles(t, s2); len(files) != 2 {
		t.Fatalf("files %v, want one head and one module", files)
	}
}

func TestStoreRemovesUnverifiedAtOpen(t *testing.T) {
	f := newStoreFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 0, f.Trusted))
	s := newTestStore(t)
	if err := s.Put(v); err != nil {
		t.Fatal(err)
	}
	strays := []string{
		filepath.Join(s.Dir(), "modules", strings.Repeat("a", 64)+".123"+splice.UnverifiedSuffix),
		filepath.Join(s.Dir(), "modules", "x"+splice.UnverifiedSuffix),
		filepath.Join(s.Dir(), "heads", strings.Repeat("b", 64)+".json.9"+splice.UnverifiedSuffix),
	}
	for _, p := range strays {
		if err := os.WriteFile(p, []byte("half a download"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := splice.OpenStore(filepath.Dir(s.Dir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strays {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived open: %v", p, err)
		}
	}
	if _, err := s2.Bundle(v.ManifestDigest); err != nil {
		t.Fatalf("verified entry lost: %v", err)
	}
	if files := storeFiles(t, s2); len(files) != 2 {
		t.Fatalf("files %v", files)
	}
}

func TestStoreConcurrentPutOfOneBundle(t *testing.T) {
	f := newStoreFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 4096, f.Trusted))
	s := newTestStore(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() { errs <- s.Put(v) })
	}
	wg.Go(func() {
		for range 100 {
			if s.Has(v.ManifestDigest) {
				if _, err := s.Bundle(v.ManifestDigest); err != nil {
					errs <- err // a visible head means a complete bundle
					return
				}
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if files := storeFiles(t, s); len(files) != 2 {
		t.Fatalf("files %v, want one head and one module", files)
	}
	if list, err := s.List(); err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}
}

func TestStoreRefusals(t *testing.T) {
	f := newStoreFixture(t)
	s := newTestStore(t)
	unknown := strings.Repeat("0", 64)
	if _, err := s.Head(unknown); !errors.Is(err, splice.ErrNotStored) {
		t.Errorf("splice.Head(unknown) = %v", err)
	}
	if _, _, err := s.OpenModule(unknown); !errors.Is(err, splice.ErrNotStored) {
		t.Errorf("OpenModule(unknown) = %v", err)
	}
	for _, bad := range []string{"", "../../etc/passwd", strings.Repeat("A", 64), strings.Repeat("0", 63), strings.Repeat("0", 65), strings.Repeat("g", 64)} {
		if _, err := s.Head(bad); !errors.Is(err, splice.ErrInvalidDigest) {
			t.Errorf("splice.Head(%q) = %v", bad, err)
		}
		if _, _, err := s.OpenModule(bad); !errors.Is(err, splice.ErrInvalidDigest) {
			t.Errorf("OpenModule(%q) = %v", bad, err)
		}
		if s.Has(bad) {
			t.Errorf("Has(%q)", bad)
		}
	}

	// A Verified whose bytes disagree with its digests is not stored.
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 0, f.Trusted))
	bad := *v
	bad.Module = append([]byte(nil), v.Module...)
	bad.Module[10] ^= 1
	if err := s.Put(&bad); err == nil {
		t.Fatal("stored a module that does not match its manifest")
	}
	bad = *v
	bad.ManifestDigest = unknown
	if err := s.Put(&bad); err == nil {
		t.Fatal("stored a manifest under another digest")
	}
	if files := storeFiles(t, s); len(files) != 0 {
		t.Fatalf("refused Put left %v", files)
	}

	// A head file changed on disk is noticed, not served.
	if err := s.Put(v); err != nil {
		t.Fatal(err)
	}
	other := f.Verified(t, f.Bundle(t, "cve-2024-9999", 1, 0, f.Trusted))
	raw, _ := splice.EncodeHead(&splice.Head{Manifest: other.Bundle.Manifest, Signatures: other.Bundle.Signatures})
	if err := os.WriteFile(filepath.Join(s.Dir(), "heads", v.ManifestDigest+".json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Head(v.ManifestDigest); !errors.Is(err, splice.ErrCorruptStore) {
		t.Fatalf("splice.Head of a swapped file = %v", err)
	}
}

func TestHeadWireFormat(t *testing.T) {
	f := newStoreFixture(t)
	b := f.Bundle(t, "cve-2024-1086", 3, 0, f.Trusted)
	raw, err := splice.EncodeHead(&splice.Head{Manifest: b.Manifest, Signatures: b.Signatures})
	if err != nil {
		t.Fatal(err)
	}
	h, err := splice.DecodeHead(raw)
	if err != nil || !bytes.Equal(h.Manifest, b.Manifest) || len(h.Signatures) != 1 {
		t.Fatalf("round trip: %+v, %v", h, err)
	}
	unsigned, err := splice.EncodeHead(&splice.Head{Manifest: b.Manifest})
	if err != nil || !bytes.Contains(unsigned, []byte(`"signatures":[]`)) {
		t.Fatalf("unsigned head %s, %v", unsigned, err)
	}
	tooMany := make([]string, splice.MaxSignatures+1)
	for i := range tooMany {
		tooMany[i] = `"AA=="`
	}
	for name, bad := range map[string]string{
		"unknown field": `{"manifest":"e30=","signatures":[],"module":"AA=="}`,
		"trailing data": `{"manifest":"e30=","signatures":[]} {}`,
		"no manifest":   `{"signatures":[]}`,
		"not base64":    `{"manifest":"!!!","signatures":[]}`,
		"empty sig":     `{"manifest":"e30=","signatures":[""]}`,
		"too many sigs": `{"manifest":"e30=","signatures":[` + strings.Join(tooMany, ",") + `]}`,
		"oversized":     `{"manifest":"` + strings.Repeat("A", splice.MaxHeadSize) + `","signatures":[]}`,
		"not json":      "\x89SPLICE\n",
	} {
		if _, err := splice.DecodeHead([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	largest := &splice.Head{Manifest: bytes.Repeat([]byte{0xff}, splice.MaxManifestSize)}
	for range splice.MaxSignatures {
		largest.Signatures = append(largest.Signatures, bytes.Repeat([]byte{0xfe}, splice.MaxSignatureSize))
	}
	raw, err = splice.EncodeHead(largest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := splice.DecodeHead(raw); err != nil {
		t.Fatalf("the largest head (%d bytes, limit %d) is refused: %v", len(raw), splice.MaxHeadSize, err)
	}
}

// TestStoreHostAndDistributionShareOneCopy: a bundle kept for the host
// alone is not held for distribution (neither its head nor its module is
// offered to peers); a Put of it holds it without a
// second copy; Remove drops it from distribution and, with no journal
// naming it, its bytes too. A write in progress of a live process
// survives another open; one of a dead process does not.
func TestStoreHostAndDistributionShareOneCopy(t *testing.T) {
	f := newStoreFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 100, f.Trusted))
	s := newTestStore(t)
	if err := s.Keep(v); err != nil {
		t.Fatal(err)
	}
	if s.Has(v.ManifestDigest) {
		t.Fatal("a bundle kept for the host is held for distribution")
	}
	if _, err := s.Head(v.ManifestDigest); !errors.Is(err, splice.ErrNotStored) {
		t.Fatalf("Head of a local bundle = %v", err)
	}
	// Nor is its module offered to peers, though the host loads it.
	if _, _, err := s.OpenHeldModule(v.Manifest.Module.SHA256); !errors.Is(err, splice.ErrNotStored) {
		t.Fatalf("OpenHeldModule of a local bundle's module = %v", err)
	}
	if f, _, err := s.OpenModule(v.Manifest.Module.SHA256); err != nil {
		t.Fatalf("the host cannot open its local bundle's module: %v", err)
	} else {
		f.Close()
	}
	if err := s.Put(v); err != nil {
		t.Fatal(err)
	}
	if f, _, err := s.OpenHeldModule(v.Manifest.Module.SHA256); err != nil {
		t.Fatalf("OpenHeldModule of a held bundle's module: %v", err)
	} else {
		f.Close()
	}
	if !s.Has(v.ManifestDigest) {
		t.Fatal("Put did not hold the bundle")
	}
	if files := storeFiles(t, s); len(files) != 2 {
		t.Fatalf("files %v, want one head and one module", files)
	}
	live := filepath.Join(s.Dir(), "modules", fmt.Sprintf("%s.pid%d.7%s", strings.Repeat("d", 64), os.Getpid(), splice.UnverifiedSuffix))
	dead := filepath.Join(s.Dir(), "modules", strings.Repeat("e", 64)+".pid999999999.7"+splice.UnverifiedSuffix)
	for _, p := range []string{live, dead} {
		if err := os.WriteFile(p, []byte("part"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := splice.OpenStore(filepath.Dir(s.Dir()), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live process's write was removed: %v", err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead process's leftover stayed: %v", err)
	}
	_ = os.Remove(live)
	if err := s.Remove(v.ManifestDigest); err != nil {
		t.Fatal(err)
	}
	if files := storeFiles(t, s); len(files) != 0 {
		t.Fatalf("Remove of a bundle no journal needs left %v", files)
	}
}
