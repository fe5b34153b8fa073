package agent

import (
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/distrib"
	"github.com/splicefleet/splicefleet/internal/testutil"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// TestFetchStoresThroughTheWantsGuard: a fetch whose Want carries the
// agent's store guard stores only when the guard lets it, so anti-entropy
// does not store back a bundle that retention or a forget dropped while
// it was fetched (a drop counted twice, a forgotten bundle back).
func TestFetchStoresThroughTheWantsGuard(t *testing.T) {
	f := newTestFleet(t)
	policy, err := signing.NewPolicy(signing.NewKeyring(f.signer.Public()), 1)
	if err != nil {
		t.Fatal(err)
	}
	raw := f.bundle("cve-2024-1086", 3, f.signer, 5000)
	b, err := splice.Decode(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := splice.Verify(b, policy, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	originStore, err := splice.OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := originStore.Put(v); err != nil {
		t.Fatal(err)
	}
	origin := httptest.NewServer(distrib.NewBlobServer(originStore, distrib.BlobServerOptions{Logger: testutil.Logger(t, -4)}))
	t.Cleanup(origin.Close)
	store, err := splice.OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	fe, err := distrib.NewFetcher(distrib.FetcherOptions{Store: store, Verifier: policy, Retries: 1, Backoff: 5 * time.Millisecond, Logger: testutil.Logger(t, -4)})
	if err != nil {
		t.Fatal(err)
	}
	want := func() distrib.Want { return distrib.Want{ManifestDigest: v.ManifestDigest, Size: int64(len(raw))} }
	addr := strings.TrimPrefix(origin.URL, "http://")

	a := &Agent{ro: &rollouts{}}
	if a.forgotten, err = openForgotten(filepath.Join(t.TempDir(), "forgotten.json")); err != nil {
		t.Fatal(err)
	}
	// Dropped here after the fetch began, before it stored.
	w := want()
	guard := a.storeUnlessForgotten(v.ManifestDigest)
	w.Store = func(put func() error) error {
		if err := a.forgotten.add(v.ManifestDigest, time.Now()); err != nil {
			t.Fatal(err)
		}
		return guard(put)
	}
	if _, err := fe.Fetch(t.Context(), w, nil, addr); !errors.Is(err, errForgottenMeanwhile) {
		t.Fatalf("fetch of a bundle dropped meanwhile: %v", err)
	}
	if store.Has(v.ManifestDigest) {
		t.Fatal("stored a bundle forgotten meanwhile")
	}
	if held, err := store.List(); err != nil || len(held) != 0 {
		t.Fatalf("the store holds %v (%v)", held, err)
	}

	// Not dropped: stored.
	w = want()
	w.Store = (&Agent{ro: &rollouts{}, forgotten: &forgotten{at: map[string]time.Time{}}}).storeUnlessForgotten(v.ManifestDigest)
	if _, err := fe.Fetch(t.Context(), w, nil, addr); err != nil {
		t.Fatal(err)
	}
	if !store.Has(v.ManifestDigest) {
		t.Fatal("not stored")
	}
}
