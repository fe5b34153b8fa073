package distrib

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"

	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// testPeer is an HTTP server that counts head and module requests.
type testPeer struct {
	srv            *httptest.Server
	addr           string // host:port, as peers are named
	blobs          *BlobServer
	heads, modules atomic.Int64
}

func newTestPeer(t testing.TB, h http.Handler) *testPeer {
	t.Helper()
	p := &testPeer{}
	if b, ok := h.(*BlobServer); ok {
		p.blobs = b
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, HeadsPath):
			p.heads.Add(1)
		case strings.HasPrefix(r.URL.Path, ModulesPath):
			p.modules.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	p.addr = strings.TrimPrefix(p.srv.URL, "http://")
	return p
}

func (p *testPeer) requests() int64 { return p.heads.Load() + p.modules.Load() }

// blobPeer serves a store holding the given verified bundles.
func blobPeer(t testing.TB, vs ...*splice.Verified) *testPeer {
	t.Helper()
	s := newTestStore(t)
	for _, v := range vs {
		if err := s.Put(v); err != nil {
			t.Fatal(err)
		}
	}
	return newTestPeer(t, NewBlobServer(s, BlobServerOptions{Logger: testLogger(t)}))
}

// rawPeer serves whatever its handlers say, bundle or not; a nil handler
// answers 404.
func rawPeer(t testing.TB, head, module http.HandlerFunc) *testPeer {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+HeadsPath+"{digest}", orNotFound(head))
	mux.HandleFunc("GET "+ModulesPath+"{digest}", orNotFound(module))
	return newTestPeer(t, mux)
}

func orNotFound(h http.HandlerFunc) http.HandlerFunc {
	if h == nil {
		return http.NotFound
	}
	return h
}

func serveBytes(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(b) }
}

func headBytes(t testing.TB, b *splice.Bundle) []byte {
	t.Helper()
	raw, err := splice.EncodeHead(&splice.Head{Manifest: b.Manifest, Signatures: b.Signatures})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// endless writes until the client goes away.
func endless(w http.ResponseWriter, r *http.Request) {
	chunk := bytes.Repeat([]byte("A"), 32<<10)
	for r.Context().Err() == nil {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newTestFetcher(t testing.TB, f *distFixture, clock *fakeClock) (*Fetcher, *splice.Store) {
	t.Helper()
	if clock == nil {
		clock = &fakeClock{t: distNow}
	}
	store := newTestStore(t)
	fe, err := NewFetcher(FetcherOptions{Store: store, Verifier: f.Policy, Now: clock.Now,
		Retries: 1, Backoff: 5 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	fe.shuffle = func([]string) {} // peers are tried in the order given
	return fe, store
}

func want(v *splice.Verified) Want {
	raw, _ := v.Bundle.Bytes()
	return Want{ManifestDigest: v.ManifestDigest, Size: int64(len(raw))}
}

// assertNothingStored checks the store holds no bundle, module or partial
// download.
func assertNothingStored(t testing.TB, s *splice.Store) {
	t.Helper()
	if files := storeFiles(t, s); len(files) != 0 {
		t.Fatalf("store holds %v", files)
	}
}

func TestFetchFromOrigin(t *testing.T) {
	f := newDistFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 5000, f.Trusted))
	origin := blobPeer(t, v)
	fe, store := newTestFetcher(t, f, nil)

	got, err := fe.Fetch(t.Context(), want(v), nil, origin.addr)
	if err != nil {
		t.Fatal(err)
	}
	if got.ManifestDigest != v.ManifestDigest || !bytes.Equal(got.Module, v.Module) || len(got.Signers) != 1 {
		t.Fatalf("fetched %+v", got.Manifest)
	}
	if !store.Has(v.ManifestDigest) {
		t.Fatal("not stored")
	}
	origin.srv.Close() // waits for its handlers, which count after writing
	st := fe.Stats()
	if st.HeadsFetched != 1 || st.ModulesFetched != 1 || st.BytesFetchedFromPeers != 0 ||
		st.BytesFetchedFromOrigin != origin.blobs.Stats().BytesServed || st.BadPeerResponses != 0 {
		t.Fatalf("stats %+v, origin %+v", st, origin.blobs.Stats())
	}

	// Held now: no more requests (the origin is gone, too).
	before := origin.requests()
	if _, err := fe.Fetch(t.Context(), want(v), nil, origin.addr); err != nil {
		t.Fatal(err)
	}
	if origin.requests() != before {
		t.Fatal("a stored bundle was fetched again")
	}
	if files := storeFiles(t, store); len(files) != 2 {
		t.Fatalf("store files %v", files)
	}
}

// The head (small) comes from the origin, which surely has it; the module
// (large) from peers, the origin only as the last resort.
func TestFetchPrefersPeersAndSpreadsOverThem(t *testing.T) {
	f := newDistFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 20000, f.Trusted))
	empty, holderA, holderB := blobPeer(t), blobPeer(t, v), blobPeer(t, v)
	origin := blobPeer(t, v)
	fe, _ := newTestFetcher(t, f, nil)

	if _, err := fe.Fetch(t.Context(), want(v), []string{empty.addr, holderA.addr, holderB.addr}, origin.addr); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*testPeer{empty, holderA, holderB, origin} {
		p.srv.Close() // waits for the handlers, which count after writing
	}
	if o := origin.blobs.Stats(); origin.requests() != 1 || o.HeadsServed != 1 || o.ModuleBytesServed != 0 {
		t.Fatalf("origin served %d requests, %+v", origin.requests(), o)
	}
	// The module came from one of the holders.
	if a, b := holderA.blobs.Stats(), holderB.blobs.Stats(); a.ModulesServed+b.ModulesServed != 1 {
		t.Fatalf("holder A %+v, holder B %+v", a, b)
	}
	st := fe.Stats()
	if st.BytesFetchedFromPeers < uint64(len(v.Module)) || st.BytesFetchedFromOrigin >= uint64(len(v.Module)) {
		t.Fatalf("stats %+v", st)
	}
}

// TestFetchRefusesBadHeadsBeforeTheModule is one case per manifest that
// must not lead to a module download.
func TestFetchRefusesBadHeadsBeforeTheModule(t *testing.T) {
	f := newDistFixture(t)
	expired := distManifest("cve-2024-1086", 3)
	exp := distNow.Add(-time.Minute)
	expired.Expires = &exp
	cases := []struct {
		name   string
		bundle *splice.Bundle
		want   []error
		reason string
	}{
		{"unsigned", f.Bundle(t, "cve-2024-1086", 3, 0), []error{splice.ErrSignature, signing.ErrNoSignatures}, "signature"},
		{"untrusted signer", f.Bundle(t, "cve-2024-1086", 3, 0, f.Stranger), []error{splice.ErrSignature, signing.ErrUnknownSigner}, "signature"},
		{"expired", f.BundleFrom(t, expired, 0, f.Trusted), []error{splice.ErrExpired}, "expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			digest := splice.Digest(tc.bundle.Manifest)
			origin := rawPeer(t, serveBytes(headBytes(t, tc.bundle)), serveBytes(tc.bundle.Module))
			clock := &fakeClock{t: distNow}
			fe, store := newTestFetcher(t, f, clock)
			w := Want{ManifestDigest: digest, Size: 1000}

			_, err := fe.Fetch(t.Context(), w, nil, origin.addr)
			checkRefusal := func(err error) {
				t.Helper()
				if !splice.IsReject(err) || splice.Reason(err) != tc.reason {
					t.Fatalf("error %v (reason %q), want a %q refusal", err, splice.Reason(err), tc.reason)
				}
				for _, e := range tc.want {
					if !errors.Is(err, e) {
						t.Errorf("error %q does not wrap %q", err, e)
					}
				}
			}
			checkRefusal(err)
			if origin.modules.Load() != 0 {
				t.Fatal("the module of a refused manifest was requested")
			}
			if st := fe.Stats(); st.VerificationFailures[tc.reason] != 1 || st.HeadsFetched != 1 || st.ModulesFetched != 0 {
				t.Fatalf("stats %+v", st)
			}
			assertNothingStored(t, store)

			// Remembered: refused again at once, without a request.
			before := origin.requests()
			_, err = fe.Fetch(t.Context(), w, nil, origin.addr)
			checkRefusal(err)
			if origin.requests() != before {
				t.Fatal("a remembered refusal made a request")
			}
			if st := fe.Stats(); st.NegativeCacheHits != 1 || st.VerificationFailures[tc.reason] != 1 {
				t.Fatalf("stats %+v", st)
			}

			// Forgotten after NegativeTTL: the head is asked for again.
			clock.Advance(DefaultNegativeTTL + time.Second)
			_, err = fe.Fetch(t.Context(), w, nil, origin.addr)
			checkRefusal(err)
			if origin.heads.Load() != 2 || origin.modules.Load() != 0 {
				t.Fatalf("after the TTL: %d head and %d module requests", origin.heads.Load(), origin.modules.Load())
			}
			assertNothingStored(t, store)
		})
	}
}

func TestFetchSkipsPeerServingWrongHead(t *testing.T) {
	f := newDistFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 0, f.Trusted))
	other := f.Bundle(t, "cve-2024-9999", 1, 0, f.Trusted) // validly signed, but not what was asked for
	liar := rawPeer(t, serveBytes(headBytes(t, other)), serveBytes(other.Module))
	good := blobPeer(t, v)
	fe, store := newTestFetcher(t, f, nil)

	got, err := fe.Fetch(t.Context(), want(v), []string{liar.addr, good.addr}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.ManifestDigest != v.ManifestDigest {
		t.Fatalf("fetched %s", got.ManifestDigest)
	}
	if st := fe.Stats(); st.BadPeerResponses != 1 {
		t.Fatalf("stats %+v", st)
	}
	if liar.heads.Load() != 1 || liar.modules.Load() != 0 {
		t.Fatalf("liar saw %d head and %d module requests; it should be skipped after the head", liar.heads.Load(), liar.modules.Load())
	}
	if list, _ := store.List(); len(list) != 1 || list[0].ID != "cve-2024-1086" {
		t.Fatalf("store %+v", list)
	}

	// Alone, the liar gets nothing stored.
	fe2, store2 := newTestFetcher(t, f, nil)
	if _, err := fe2.Fetch(t.Context(), want(v), []string{liar.addr}, ""); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrBadPeer) {
		t.Fatalf("error %v", err)
	}
	if st := fe2.Stats(); st.BadPeerResponses != 1 || st.HeadsFetched != 0 {
		t.Fatalf("stats %+v", st)
	}
	assertNothingStored(t, store2)
}

func TestFetchSkipsPeerServingTamperedModule(t *testing.T) {
	f := newDistFixture(t)
	b := f.Bundle(t, "cve-2024-1086", 3, 2000, f.Trusted)
	v := f.Verified(t, b)
	tampered := bytes.Clone(b.Module)
	tampered[len(tampered)/2] ^= 0x40
	// The bad peer has no head, so the module is tried there first (the
	// fetcher prefers a peer other than the head's).
	bad := rawPeer(t, nil, serveBytes(tampered))
	good := blobPeer(t, v)
	fe, store := newTestFetcher(t, f, nil)

	got, err := fe.Fetch(t.Context(), want(v), []string{bad.addr, good.addr}, "")
	if err != nil {
		t.Fatal(err)
	}
	if bad.modules.Load() != 1 {
		t.Fatalf("the bad peer saw %d module requests", bad.modules.Load())
	}
	if st := fe.Stats(); st.BadPeerResponses != 1 || st.ModulesFetched != 1 {
		t.Fatalf("stats %+v", st)
	}
	if !bytes.Equal(got.Module, b.Module) {
		t.Fatal("fetched module differs")
	}
	mf, _, err := store.OpenModule(v.Manifest.Module.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	stored := make([]byte, len(b.Module)+1)
	n, _ := mf.Read(stored)
	mf.Close()
	if !bytes.Equal(stored[:n], b.Module) {
		t.Fatal("stored module is not the signed one")
	}
	if files := storeFiles(t, store); len(files) != 2 {
		t.Fatalf("store files %v (a leftover .unverified?)", files)
	}

	// Alone, the bad peer gets nothing stored, partial files included.
	fe2, store2 := newTestFetcher(t, f, nil)
	head := rawPeer(t, serveBytes(headBytes(t, b)), nil)
	_, err = fe2.Fetch(t.Context(), want(v), []string{head.addr, bad.addr}, "")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrBadPeer) || splice.IsReject(err) {
		t.Fatalf("error %v", err)
	}
	if st := fe2.Stats(); st.BadPeerResponses != 1 || st.ModulesFetched != 0 || len(st.VerificationFailures) != 0 {
		t.Fatalf("stats %+v", st)
	}
	assertNothingStored(t, store2)
}

func TestFetchCutsOffOversizedResponses(t *testing.T) {
	f := newDistFixture(t)
	b := f.Bundle(t, "cve-2024-1086", 3, 0, f.Trusted)
	v := f.Verified(t, b)
	cases := []struct {
		name         string
		head, module http.HandlerFunc
		limit        uint64
	}{
		{"endless head", endless, nil, splice.MaxHeadSize + 1},
		{"endless module", serveBytes(headBytes(t, b)), endless, uint64(len(headBytes(t, b)) + len(b.Module) + 1)},
		{"module one byte too long", serveBytes(headBytes(t, b)), serveBytes(append(bytes.Clone(b.Module), 0)), uint64(len(headBytes(t, b)) + len(b.Module) + 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			peer := rawPeer(t, tc.head, tc.module)
			fe, store := newTestFetcher(t, f, nil)
			_, err := fe.Fetch(t.Context(), want(v), []string{peer.addr}, "")
			if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrBadPeer) {
				t.Fatalf("error %v", err)
			}
			st := fe.Stats()
			if st.BadPeerResponses != 1 || st.BytesFetchedFromPeers > tc.limit {
				t.Fatalf("stats %+v, read limit %d", st, tc.limit)
			}
			if peer.requests() > 2 {
				t.Fatalf("a bad peer was asked again: %d requests", peer.requests())
			}
			assertNothingStored(t, store)
		})
	}
}

func TestFetchRespectsContextWithSlowPeer(t *testing.T) {
	f := newDistFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 0, f.Trusted))
	b := v.Bundle
	stop := make(chan struct{})
	defer close(stop)
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}
	for name, peer := range map[string]*testPeer{
		"slow head":   rawPeer(t, slow, nil),
		"slow module": rawPeer(t, serveBytes(headBytes(t, b)), slow),
	} {
		t.Run(name, func(t *testing.T) {
			fe, store := newTestFetcher(t, f, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := fe.Fetch(ctx, want(v), []string{peer.addr}, "")
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error %v", err)
			}
			if d := time.Since(start); d > testutil.Within(2*time.Second) {
				t.Fatalf("Fetch took %v after a 200ms deadline", d)
			}
			if st := fe.Stats(); st.BadPeerResponses != 0 {
				t.Fatalf("a slow peer counted as bad: %+v", st)
			}
			assertNothingStored(t, store)
		})
	}
}

func TestFetchRetriesWithBackoff(t *testing.T) {
	f := newDistFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 0, f.Trusted))
	var calls atomic.Int64
	good := NewBlobServer(func() *splice.Store {
		s := newTestStore(t)
		if err := s.Put(v); err != nil {
			t.Fatal(err)
		}
		return s
	}(), BlobServerOptions{})
	flaky := newTestPeer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		good.ServeHTTP(w, r)
	}))
	fe, _ := newTestFetcher(t, f, nil)
	if _, err := fe.Fetch(t.Context(), want(v), []string{flaky.addr}, ""); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || fe.Stats().BadPeerResponses != 0 {
		t.Fatalf("%d calls, stats %+v", calls.Load(), fe.Stats())
	}
}

func TestFetchSharesConcurrentDownloads(t *testing.T) {
	f := newDistFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 50000, f.Trusted))
	origin := blobPeer(t, v)
	fe, store := newTestFetcher(t, f, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := fe.Fetch(t.Context(), want(v), nil, origin.addr)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if origin.modules.Load() != 1 {
		t.Fatalf("%d module downloads for 8 concurrent fetches", origin.modules.Load())
	}
	if files := storeFiles(t, store); len(files) != 2 {
		t.Fatalf("store files %v", files)
	}
}

func TestFetchRefusesMalformedWants(t *testing.T) {
	f := newDistFixture(t)
	fe, store := newTestFetcher(t, f, nil)
	peer := rawPeer(t, nil, nil)
	for _, w := range []Want{
		{ManifestDigest: ""},
		{ManifestDigest: strings.Repeat("A", 64)},
		{ManifestDigest: "../" + strings.Repeat("a", 61)},
		{ManifestDigest: strings.Repeat("a", 64), Size: -1},
		{ManifestDigest: strings.Repeat("a", 64), Size: splice.MaxBundleSize + 1},
	} {
		if _, err := fe.Fetch(t.Context(), w, []string{peer.addr}, ""); err == nil {
			t.Errorf("accepted %+v", w)
		}
	}
	if peer.requests() != 0 {
		t.Fatalf("malformed wants made %d requests", peer.requests())
	}
	if _, err := fe.Fetch(t.Context(), Want{ManifestDigest: strings.Repeat("a", 64)}, []string{peer.addr}, ""); !errors.Is(err, ErrUnavailable) || splice.IsReject(err) {
		t.Fatalf("nobody has it: %v", err)
	}
	assertNothingStored(t, store)
}

func TestFetchSourceOrder(t *testing.T) {
	f := newDistFixture(t)
	fe, _ := newTestFetcher(t, f, nil)
	got := fe.sources([]string{"10.0.0.1:7946", "origin:80", "", "http://10.0.0.2:7946/", "10.0.0.1:7946"}, "origin:80")
	want := []source{{base: "http://10.0.0.1:7946"}, {base: "http://10.0.0.2:7946"}, {base: "http://origin:80", origin: true}}
	if !slices.Equal(got, want) {
		t.Fatalf("sources %+v, want %+v", got, want)
	}
}

func TestFetchNegativeCacheIsBounded(t *testing.T) {
	f := newDistFixture(t)
	fe, _ := newTestFetcher(t, f, nil)
	rej := &splice.RejectError{Reason: splice.ErrSignature, Err: signing.ErrNoSignatures}
	for i := range maxNegativeEntries + 10 {
		_ = fe.refuse(fmt.Sprintf("%064x", i), rej)
	}
	fe.mu.Lock()
	n := len(fe.negative)
	fe.mu.Unlock()
	if n > maxNegativeEntries {
		t.Fatalf("%d remembered refusals, limit %d", n, maxNegativeEntries)
	}
	if got := fe.Stats().VerificationFailures["signature"]; got != maxNegativeEntries+10 {
		t.Fatalf("counted %d refusals", got)
	}
}

// TestFetchDemotesSourcesThatTimeOut: a peer that holds a head request
// past HeadTimeout is asked once, not every round, and the next fetch
// asks it after every other source; a peer that answers 404 is asked at
// most maxAttempts times a fetch.
func TestFetchDemotesSourcesThatTimeOut(t *testing.T) {
	f := newDistFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 0, f.Trusted))
	stop := make(chan struct{})
	defer close(stop)
	slow := rawPeer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}, nil)
	missing := blobPeer(t)
	store := newTestStore(t)
	fe, err := NewFetcher(FetcherOptions{Store: store, Verifier: f.Policy, Now: (&fakeClock{t: distNow}).Now,
		Retries: 10, Backoff: time.Millisecond, HeadTimeout: 100 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	fe.shuffle = func([]string) {}
	if _, err := fe.Fetch(t.Context(), want(v), []string{slow.addr, missing.addr}, ""); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if n := slow.heads.Load(); n != 1 {
		t.Errorf("the slow peer was asked %d times in 11 rounds, want once", n)
	}
	if n := missing.heads.Load(); n != maxAttempts {
		t.Errorf("the peer without it was asked %d times, want %d", n, maxAttempts)
	}
	if st := fe.Stats(); st.SourcesDemoted != 1 || st.BadPeerResponses != 0 {
		t.Errorf("stats %+v", st)
	}
	// The next fetch asks the demoted peer last: the holder serves first.
	holder := blobPeer(t, v)
	if got := fe.sources([]string{slow.addr, holder.addr}, ""); got[0].base != "http://"+holder.addr {
		t.Errorf("order %+v: the demoted peer is not last", got)
	}
	if _, err := fe.Fetch(t.Context(), want(v), []string{slow.addr, holder.addr}, ""); err != nil {
		t.Fatal(err)
	}
	if n := slow.heads.Load(); n != 1 {
		t.Errorf("the demoted peer was asked again: %d", n)
	}
}

// TestFetchOnlyFromMembers: an origin, and a referral's hints, that no
// member advertises are never contacted, and are counted.
func TestFetchOnlyFromMembers(t *testing.T) {
	f := newDistFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 0, f.Trusted))
	outsider := blobPeer(t, v)
	referrer := rawPeer(t, serveBytes(headBytes(t, v.Bundle)), func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set(PeersHeader, outsider.addr)
		http.Error(w, "busy", http.StatusTooManyRequests)
	})
	fe, err := NewFetcher(FetcherOptions{Store: newTestStore(t), Verifier: f.Policy, Now: (&fakeClock{t: distNow}).Now,
		Retries: 2, Backoff: time.Millisecond, Logger: testLogger(t), Member: func(addr string) bool { return addr == referrer.addr }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fe.Fetch(t.Context(), want(v), nil, outsider.addr); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("an outsider as origin: %v", err)
	}
	if _, err := fe.Fetch(t.Context(), want(v), nil, referrer.addr); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a referral to an outsider: %v", err)
	}
	if n := outsider.requests(); n != 0 {
		t.Errorf("the outsider got %d requests", n)
	}
	if st := fe.Stats(); st.SourcesRefused != 1+3 { // the origin, then the hint in each of 3 rounds
		t.Errorf("%d sources refused, want 4", st.SourcesRefused)
	}
}
