package agent

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// seedPeer serves a store holding v, seeding its module with at most
// copies uploads before it refers fetchers elsewhere.
func seedPeer(t *testing.T, f *distFixture, copies int) (*testPeer, string) {
	t.Helper()
	v := f.verified(t, f.bundle(t, "cve-2024-1086", 3, 20000, f.trusted))
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
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+modulesPath+sha, nil)
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
	v := f.verified(t, f.bundle(t, "cve-2024-1086", 3, 20000, f.trusted))
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
