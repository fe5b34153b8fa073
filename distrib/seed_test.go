package distrib

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// seedPeer serves a store holding v, seeding its module with at most
// copies uploads before it refers fetchers elsewhere.
func seedPeer(t *testing.T, f *distFixture, copies int) (*testPeer, string) {
	t.Helper()
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 20000, f.Trusted))
	s := newTestStore(t)
	if err := s.Put(v); err != nil {
		t.Fatal(err)
	}
	bs := NewBlobServer(s, BlobServerOptions{Logger: testLogger(t), SeedCopies: copies})
	bs.Seed(v.Manifest.Module.SHA256)
	return newTestPeer(t, bs), v.Manifest.Module.SHA256
}

// getModuleAs downloads a module naming holder as the fetcher's blob
// service; after a 200 it waits until the server has recorded the upload
// (the handler counts after the client has the whole body).
func getModuleAs(t *testing.T, p *testPeer, sha, holder string) *http.Response {
	t.Helper()
	before := p.blobs.Stats().ModulesServed
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+ModulesPath+sha, nil)
	if holder != "" {
		req.Header.Set(HolderHeader, holder)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		deadline := time.Now().Add(10 * time.Second)
		for p.blobs.Stats().ModulesServed == before {
			if time.Now().After(deadline) {
				t.Fatal("the server never recorded the upload")
			}
			time.Sleep(time.Millisecond)
		}
	}
	return resp
}

// TestSeedingRefersToPeersServed: the origin of a module uploads it
// SeedCopies times, then answers 429 naming the fetchers it served.
func TestSeedingRefersToPeersServed(t *testing.T) {
	f := newDistFixture(t)
	origin, sha := seedPeer(t, f, 2)
	for _, h := range []string{"127.0.0.1:1111", "127.0.0.1:2222"} {
		if resp := getModuleAs(t, origin, sha, h); resp.StatusCode != http.StatusOK {
			t.Fatalf("copy for %s: %s", h, resp.Status)
		}
	}
	resp := getModuleAs(t, origin, sha, "127.0.0.1:3333")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(PeersHeader) != "127.0.0.1:1111,127.0.0.1:2222" {
		t.Fatalf("third copy: %s, peers %q", resp.Status, resp.Header.Get(PeersHeader))
	}
	// A forged holder name that is not host:port is never handed out.
	f2 := newDistFixture(t)
	o2, sha2 := seedPeer(t, f2, 1)
	getModuleAs(t, o2, sha2, "evil, 10.0.0.1:1")
	if resp := getModuleAs(t, o2, sha2, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("with no valid holder known the server must keep serving: %s", resp.Status)
	}
}

// TestFetchFollowsReferral: a fetcher turned away by a seeding origin
// fetches from the peer the origin named, and the origin uploads no
// further copy.
func TestFetchFollowsReferral(t *testing.T) {
	f := newDistFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 20000, f.Trusted))
	holder := blobPeer(t, v)
	s := newTestStore(t)
	if err := s.Put(v); err != nil {
		t.Fatal(err)
	}
	bs := NewBlobServer(s, BlobServerOptions{Logger: testLogger(t), SeedCopies: 1})
	bs.Seed(v.Manifest.Module.SHA256)
	origin := newTestPeer(t, bs)
	// The holder fetched its copy from the origin earlier.
	if resp := getModuleAs(t, origin, v.Manifest.Module.SHA256, holder.addr); resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	fe, _ := newTestFetcher(t, f, nil)
	if _, err := fe.Fetch(t.Context(), want(v), nil, origin.addr); err != nil {
		t.Fatal(err)
	}
	origin.srv.Close()
	holder.srv.Close()
	if got := origin.blobs.Stats().ModulesServed; got != 1 {
		t.Errorf("origin uploaded %d copies, want only the first", got)
	}
	if got := holder.blobs.Stats().ModulesServed; got != 1 {
		t.Errorf("the referred holder served %d copies, want 1", got)
	}
}

// heldUpload holds a module upload open at its first read until the test
// ends it: nil lets it go on, an error makes the read fail.
type heldUpload struct {
	r       io.Reader
	started chan struct{}
	end     chan error
	err     error
	once    bool
}

func (h *heldUpload) Read(p []byte) (int, error) {
	if !h.once {
		h.once = true
		close(h.started)
		h.err = <-h.end
	}
	if h.err != nil {
		return 0, h.err
	}
	return h.r.Read(p)
}

// heldOrigin is a blob server configured as an agent's, seeding the
// module it holds, whose uploads wait at their first read; each is sent
// on the channel once it has started.
func heldOrigin(t *testing.T) (*testPeer, string, int, chan *heldUpload) {
	t.Helper()
	f := newDistFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 20000, f.Trusted))
	s := newTestStore(t)
	if err := s.Put(v); err != nil {
		t.Fatal(err)
	}
	bs := NewBlobServer(s, BlobServerOptions{Logger: testLogger(t), SeedCopies: seedCopies})
	bs.Seed(v.Manifest.Module.SHA256)
	started := make(chan *heldUpload, 64)
	var mu sync.Mutex
	var all []*heldUpload
	bs.wrapRd = func(r io.Reader) io.Reader {
		h := &heldUpload{r: r, started: make(chan struct{}), end: make(chan error, 1)}
		mu.Lock()
		all = append(all, h)
		mu.Unlock()
		go func() { <-h.started; started <- h }()
		return h
	}
	p := newTestPeer(t, bs)
	t.Cleanup(func() { // before the server closes: it waits for its handlers
		mu.Lock()
		defer mu.Unlock()
		for _, h := range all {
			select {
			case h.end <- io.ErrUnexpectedEOF:
			default:
			}
		}
	})
	return p, v.Manifest.Module.SHA256, len(v.Module), started
}

// moduleResult is one module request's outcome as its fetcher saw it.
type moduleResult struct {
	holder string
	status int
	body   int
	peers  string
}

// askModule requests the module naming holder as the fetcher, in the
// background.
func askModule(p *testPeer, sha, holder string, out chan<- moduleResult) {
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+ModulesPath+sha, nil)
		req.Header.Set(HolderHeader, holder)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- moduleResult{holder: holder}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- moduleResult{holder: holder, status: resp.StatusCode, body: len(body), peers: resp.Header.Get(PeersHeader)}
	}()
}

// seedCopies is what the agent configures (agent: seedCopies).
const seedCopies = 3

// TestOriginUploadsAtMostSeedCopiesAtOnce: eight agents ask the origin
// for a new module at the same moment, before any upload has ended. At
// most three full copies leave the origin (it has four upload slots);
// the others are told to come back, and afterwards fetchers are referred
// to the agents it served.
func TestOriginUploadsAtMostSeedCopiesAtOnce(t *testing.T) {
	origin, sha, size, started := heldOrigin(t)
	const fetchers = 8
	results := make(chan moduleResult, fetchers)
	for i := range fetchers {
		askModule(origin, sha, fmt.Sprintf("127.0.0.1:%d", 2000+i), results)
	}
	// Every request is either an upload under way or answered.
	var held []*heldUpload
	var got []moduleResult
	timeout := time.After(10 * time.Second)
	for len(held)+len(got) < fetchers {
		select {
		case h := <-started:
			held = append(held, h)
		case r := <-results:
			got = append(got, r)
		case <-timeout:
			t.Fatalf("%d uploads started and %d answers after 10 s", len(held), len(got))
		}
	}
	for _, h := range held {
		h.end <- nil
	}
	for len(got) < fetchers {
		got = append(got, <-results)
	}
	var served []string
	for _, r := range got {
		switch {
		case r.status == http.StatusOK && r.body == size:
			served = append(served, r.holder)
		case r.status != http.StatusTooManyRequests:
			t.Errorf("%s: status %d, %d bytes", r.holder, r.status, r.body)
		}
	}
	if len(served) != seedCopies {
		t.Fatalf("the origin uploaded %d full copies to %d fetchers asking at once, want %d", len(served), fetchers, seedCopies)
	}
	// The server counts an upload when its handler returns, which may be
	// after the fetcher read the last byte.
	testutil.Eventually(t, 10*time.Second, "the uploads counted", func() error {
		if n := origin.blobs.Stats().ModuleBytesServed; n != uint64(seedCopies*size) {
			return fmt.Errorf("module bytes served %d, want %d", n, seedCopies*size)
		}
		return nil
	})
	// A later fetcher is referred to the agents served (once the origin
	// has recorded the uploads its fetchers have read).
	waitUploads(t, origin, seedCopies)
	later := getModuleAs(t, origin, sha, "127.0.0.1:3000")
	peers := strings.Split(later.Header.Get(PeersHeader), ",")
	slices.Sort(peers)
	slices.Sort(served)
	if later.StatusCode != http.StatusTooManyRequests || !slices.Equal(peers, served) {
		t.Fatalf("later fetcher: %s, peers %v, want 429 naming %v", later.Status, peers, served)
	}
}

// TestFailedUploadGivesItsCopyBack: an upload of a seeded module that
// fails does not count against the origin's copies; the next fetcher is
// served in its place, and the origin still uploads three full copies.
func TestFailedUploadGivesItsCopyBack(t *testing.T) {
	origin, sha, size, started := heldOrigin(t)
	results := make(chan moduleResult, 8)
	var held []*heldUpload
	for i := range seedCopies {
		askModule(origin, sha, fmt.Sprintf("127.0.0.1:%d", 2000+i), results)
		held = append(held, <-started)
	}
	held[0].end <- io.ErrUnexpectedEOF
	if r := <-results; r.status == http.StatusOK && r.body == size {
		t.Fatalf("the failed upload delivered the module: %+v", r)
	}
	askModule(origin, sha, "127.0.0.1:2100", results)
	select {
	case h := <-started:
		held = append(held, h)
	case r := <-results:
		t.Fatalf("a fetcher after a failed upload: %d, peers %q; want it served", r.status, r.peers)
	case <-time.After(10 * time.Second):
		t.Fatal("no answer after 10 s")
	}
	for _, h := range held[1:] {
		h.end <- nil
	}
	for range seedCopies {
		if r := <-results; r.status != http.StatusOK || r.body != size {
			t.Fatalf("%s: status %d, %d bytes", r.holder, r.status, r.body)
		}
	}
	waitUploads(t, origin, seedCopies)
	if resp := getModuleAs(t, origin, sha, "127.0.0.1:3000"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after three full copies: %s", resp.Status)
	}
}

// waitUploads waits until the server has recorded n complete uploads.
func waitUploads(t *testing.T, p *testPeer, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.blobs.Stats().ModulesServed < n {
		if time.Now().After(deadline) {
			t.Fatalf("the server recorded %d uploads, want %d", p.blobs.Stats().ModulesServed, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHolderClaimsMustBeMembers: a fetcher naming a blob service that no
// member advertises, or another address than its own, is served but
// takes no seed copy and is never named in a referral; a member's claim
// from its own address counts.
func TestHolderClaimsMustBeMembers(t *testing.T) {
	f := newDistFixture(t)
	v := f.Verified(t, f.Bundle(t, "cve-2024-1086", 3, 20000, f.Trusted))
	s := newTestStore(t)
	if err := s.Put(v); err != nil {
		t.Fatal(err)
	}
	const member, remoteMember = "127.0.0.1:4444", "10.9.9.9:4444"
	bs := NewBlobServer(s, BlobServerOptions{Logger: testLogger(t), SeedCopies: 1,
		Member: func(addr string) bool { return addr == member || addr == remoteMember }})
	sha := v.Manifest.Module.SHA256
	bs.Seed(sha)
	origin := newTestPeer(t, bs)
	// Not members, or a member's address claimed from elsewhere: served,
	// no copy taken, nobody named.
	for _, h := range []string{"127.0.0.1:5555", "127.0.0.1:6666", remoteMember} {
		if resp := getModuleAs(t, origin, sha, h); resp.StatusCode != http.StatusOK || resp.Header.Get(PeersHeader) != "" {
			t.Fatalf("claim %s: %s, peers %q", h, resp.Status, resp.Header.Get(PeersHeader))
		}
	}
	if got := bs.Stats().HolderClaimsRefused; got != 3 {
		t.Errorf("%d claims refused, want 3", got)
	}
	// A member's claim from its own address takes the one copy, and the
	// next fetcher is referred to it.
	if resp := getModuleAs(t, origin, sha, member); resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	if resp := getModuleAs(t, origin, sha, ""); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(PeersHeader) != member {
		t.Fatalf("after a member's copy: %s, peers %q", resp.Status, resp.Header.Get(PeersHeader))
	}
}
