package lab

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"

	"github.com/google/go-cmp/cmp"
)

func TestParseControlAndDepends(t *testing.T) {
	in := "Package: linux-headers-6.1.0-56-cloud-amd64\n" +
		"Version: 6.1.192-2\n" +
		"Depends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2),\n" +
		" linux-compiler-gcc-12-x86 | gcc-12:amd64\n" +
		"Description: header files\n" +
		"\n" +
		"Package: other\n"
	f := parseControl([]byte(in))
	if f["Package"] != "linux-headers-6.1.0-56-cloud-amd64" || f["Version"] != "6.1.192-2" {
		t.Fatalf("fields = %q", f)
	}
	want := []dependency{
		{"linux-headers-6.1.0-56-common", "=", "6.1.192-2"},
		{"linux-kbuild-6.1", ">=", "6.1.192-2"},
		{"linux-compiler-gcc-12-x86", "", ""},
	}
	if diff := cmp.Diff(want, splitDepends(f["Depends"]), cmp.AllowUnexported(dependency{})); diff != "" {
		t.Errorf("splitDepends (-want +got):\n%s", diff)
	}
}

// TestFetch fetches (or reuses) the current Debian cloud kernel and checks
// the unpacked tree; a second Fetch must reuse the cache.
func TestFetch(t *testing.T) {
	k := fetchKernel(t)
	t.Logf("kernel: %s", k)
	if !strings.HasPrefix(k.Release, k.ABI+"-") || !strings.HasSuffix(k.Release, "-cloud-amd64") {
		t.Errorf("release %q does not match ABI %q", k.Release, k.ABI)
	}
	mk, err := os.ReadFile(filepath.Join(k.HeadersDir, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), filepath.Join(k.Root, "usr/src/linux-headers-"+k.ABI+"-common")) {
		t.Errorf("headers Makefile does not include the unpacked common headers:\n%s", mk)
	}
	start := time.Now()
	again, err := Fetch(context.Background(), FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > testutil.Within(10*time.Second) {
		t.Errorf("warm Fetch took %v; the cache was not reused", d)
	}
	if diff := cmp.Diff(k, again); diff != "" {
		t.Errorf("warm Fetch differs (-cold +warm):\n%s", diff)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestFetchRedoesInterruptedUnpack works in a second cache that shares
// the downloaded packages (hard links): the first Fetch unpacks without
// downloading; after an "interruption" (no ready marker, a file
// missing) two concurrent Fetches redo the unpack exactly once; a last
// Fetch reuses the tree.
func TestFetchRedoesInterruptedUnpack(t *testing.T) {
	k := fetchKernel(t)
	main, err := cacheDir("")
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(main, "test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	debs, err := filepath.Glob(filepath.Join(main, "debs", "*.deb"))
	if err != nil || len(debs) < 4 {
		t.Fatalf("cached debs: %v %v", debs, err)
	}
	if err := os.MkdirAll(filepath.Join(tmp, "debs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range debs {
		if err := os.Link(d, filepath.Join(tmp, "debs", filepath.Base(d))); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	var log syncBuffer
	got, err := Fetch(ctx, FetchOptions{CacheDir: tmp, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "apt-get download") || !strings.Contains(log.String(), "dpkg -x") {
		t.Errorf("first Fetch into a cache with the packages:\n%s", log.String())
	}
	if got.Root != filepath.Join(tmp, k.ABI, "root") || got.Release != k.Release {
		t.Errorf("kernel = %+v", got)
	}

	// Interrupted: the marker is written last, so it is missing.
	if err := os.Remove(filepath.Join(tmp, k.ABI, "ready")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(got.Vmlinuz); err != nil {
		t.Fatal(err)
	}
	log = syncBuffer{}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Fetch(ctx, FetchOptions{CacheDir: tmp, Log: &log})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "dpkg -x "+k.ImagePackage); n != 1 {
		t.Errorf("two concurrent Fetches unpacked the image %d times:\n%s", n, log.String())
	}
	if _, err := os.Stat(got.Vmlinuz); err != nil {
		t.Errorf("not redone: %v", err)
	}

	log = syncBuffer{}
	if _, err := Fetch(ctx, FetchOptions{CacheDir: tmp, Log: &log}); err != nil {
		t.Fatal(err)
	}
	if log.String() != "" {
		t.Errorf("a ready cache was not reused:\n%s", log.String())
	}
}
