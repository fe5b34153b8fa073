package distrib

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/splice"
)

// storedBundle returns a store holding one verified bundle.
func storedBundle(t testing.TB, f *distFixture, padding int) (*splice.Store, *splice.Head, []byte, string, string) {
	t.Helper()
	b := f.Bundle(t, "cve-2024-1086", 3, padding, f.Trusted)
	v := f.Verified(t, b)
	s := newTestStore(t)
	if err := s.Put(v); err != nil {
		t.Fatal(err)
	}
	return s, &splice.Head{Manifest: b.Manifest, Signatures: b.Signatures}, b.Module, v.ManifestDigest, v.Manifest.Module.SHA256
}

func get(t testing.TB, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestBlobServerServesAndCounts(t *testing.T) {
	f := newDistFixture(t)
	store, head, module, digest, sha := storedBundle(t, f, 3000)
	blobs := NewBlobServer(store, BlobServerOptions{Logger: testLogger(t)})
	srv := httptest.NewServer(blobs)
	defer srv.Close()

	resp, body := get(t, srv.URL+"/v1/heads/"+digest)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("head: %s %v", resp.Status, resp.Header)
	}
	h, err := splice.DecodeHead(body)
	if err != nil || !bytes.Equal(h.Manifest, head.Manifest) || len(h.Signatures) != 1 || !bytes.Equal(h.Signatures[0], head.Signatures[0]) {
		t.Fatalf("head %+v, %v", h, err)
	}
	headLen := len(body)

	resp, body = get(t, srv.URL+"/v1/modules/"+sha)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(module)) || !bytes.Equal(body, module) {
		t.Fatalf("module: %s, Content-Length %d, %d bytes, want %d", resp.Status, resp.ContentLength, len(body), len(module))
	}

	srv.Close() // waits for the handlers, which count after writing
	want := BlobServerStats{HeadsServed: 1, ModulesServed: 1, BytesServed: uint64(headLen + len(module)), ModuleBytesServed: uint64(len(module))}
	if got := blobs.Stats(); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
}

func TestBlobServerRefusals(t *testing.T) {
	f := newDistFixture(t)
	store, _, _, digest, _ := storedBundle(t, f, 0)
	blobs := NewBlobServer(store, BlobServerOptions{Logger: testLogger(t)})
	srv := httptest.NewServer(blobs)
	defer srv.Close()

	cases := []struct {
		path string
		code int
	}{
		{"/v1/heads/" + strings.Repeat("0", 64), http.StatusNotFound},
		{"/v1/modules/" + strings.Repeat("0", 64), http.StatusNotFound},
		{"/v1/modules/" + digest, http.StatusNotFound}, // a manifest digest is not a module
		{"/v1/heads/" + strings.ToUpper(digest), http.StatusBadRequest},
		{"/v1/heads/" + digest[:63], http.StatusBadRequest},
		{"/v1/heads/" + digest + "0", http.StatusBadRequest},
		{"/v1/modules/" + strings.Repeat("z", 64), http.StatusBadRequest},
		{"/v1/modules/..%2f..%2fheads%2f" + digest + ".json", http.StatusBadRequest},
		{"/v1/heads/", http.StatusNotFound},
		{"/v1/bundles/" + digest, http.StatusNotFound},
	}
	for _, tc := range cases {
		resp, body := get(t, srv.URL+tc.path)
		if resp.StatusCode != tc.code {
			t.Errorf("GET %s: %s (%q), want %d", tc.path, resp.Status, body, tc.code)
		}
	}
	resp, err := http.Post(srv.URL+"/v1/heads/"+digest, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s", resp.Status)
	}
	srv.Close()
	st := blobs.Stats()
	if st.NotFound != 3 || st.BadRequests != 5 || st.BytesServed != 0 || st.HeadsServed != 0 {
		t.Errorf("stats %+v", st)
	}
}

// blockingReader holds an upload open: it signals its first Read, then
// waits for release.
type blockingReader struct {
	r       io.Reader
	started chan struct{}
	release chan struct{}
	once    bool
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if !b.once {
		b.once = true
		close(b.started)
		<-b.release
	}
	return b.r.Read(p)
}

func TestBlobServerBoundsConcurrentUploads(t *testing.T) {
	f := newDistFixture(t)
	store, _, module, digest, sha := storedBundle(t, f, 0)
	blobs := NewBlobServer(store, BlobServerOptions{MaxConcurrentUploads: 2, Logger: testLogger(t)})
	var readers []*blockingReader
	started := make(chan *blockingReader, 2)
	blobs.wrapRd = func(r io.Reader) io.Reader {
		br := &blockingReader{r: r, started: make(chan struct{}), release: make(chan struct{})}
		started <- br
		return br
	}
	srv := httptest.NewServer(blobs)
	defer srv.Close()

	done := make(chan []byte, 2)
	for range 2 {
		go func() {
			resp, err := http.Get(srv.URL + "/v1/modules/" + sha)
			if err != nil {
				done <- nil
				return
			}
			defer func() { _ = resp.Body.Close() }()
			body, _ := io.ReadAll(resp.Body)
			done <- body
		}()
	}
	for range 2 {
		br := <-started
		<-br.started
		readers = append(readers, br)
	}

	for _, path := range []string{"/v1/modules/" + sha, "/v1/heads/" + digest} {
		resp, _ := get(t, srv.URL+path)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("GET %s with every slot busy: %s", path, resp.Status)
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
		}
	}

	for _, br := range readers {
		close(br.release)
	}
	for range 2 {
		if body := <-done; !bytes.Equal(body, module) {
			t.Fatalf("held upload delivered %d bytes, want %d", len(body), len(module))
		}
	}
	blobs.wrapRd = nil
	if resp, _ := get(t, srv.URL+"/v1/heads/"+digest); resp.StatusCode != http.StatusOK {
		t.Fatalf("after release: %s", resp.Status)
	}
	srv.Close()
	st := blobs.Stats()
	if st.Busy != 2 || st.ModulesServed != 2 || st.ModuleBytesServed != uint64(2*len(module)) {
		t.Fatalf("stats %+v", st)
	}
}

// TestSlowFetcherIsCutOff: a fetcher that asks for a module and then
// stops reading (a hostile one, or one that hung) is cut off after the
// upload stall; the upload slot and the seed copy it held are given back,
// so the next fetcher gets the module, and the cut is counted.
func TestSlowFetcherIsCutOff(t *testing.T) {
	f := newDistFixture(t)
	store, _, module, _, sha := storedBundle(t, f, 8<<20) // more than the kernel's socket buffers hold
	blobs := NewBlobServer(store, BlobServerOptions{MaxConcurrentUploads: 1, SeedCopies: 1, UploadStall: 300 * time.Millisecond, Logger: testLogger(t)})
	blobs.Seed(sha)
	p := newTestPeer(t, blobs)

	// A receive buffer of a few KB, set before the connection is made,
	// and a request it never reads the answer to.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	slow, err := d.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = slow.Close() }()
	if _, err := fmt.Fprintf(slow, "GET %s%s HTTP/1.1\r\nHost: x\r\n%s: 127.0.0.1:1\r\n\r\n", ModulesPath, sha, HolderHeader); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for blobs.Stats().TooSlow == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the server still uploads to a fetcher that reads nothing: %+v", blobs.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The connection was closed on it: what it can still read ends short.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.Copy(io.Discard, slow)
	if got >= int64(len(module)) {
		t.Errorf("the cut-off fetcher read %d bytes of a %d-byte module", got, len(module))
	}

	resp := getModuleAs(t, p, sha, "127.0.0.1:2")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the next fetcher: %s; the slot or the seed copy was not given back", resp.Status)
	}
	if st := blobs.Stats(); st.TooSlow != 1 || st.ModulesServed != 1 {
		t.Errorf("stats %+v: want 1 cut off and 1 served", st)
	}
}
