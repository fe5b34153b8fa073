package lab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

func TestKernelSeries(t *testing.T) {
	for abi, want := range map[string]string{"6.1.0-56": "6.1", "5.10.0-30": "5.10", "6.12.1": "6.12"} {
		if got, err := kernelSeries(abi); err != nil || got != want {
			t.Errorf("kernelSeries(%q) = %q, %v; want %q", abi, got, err, want)
		}
	}
	for _, abi := range []string{"", "6", "x.1.0", "6.y-1", ".1"} {
		if got, err := kernelSeries(abi); err == nil {
			t.Errorf("kernelSeries(%q) = %q, want an error", abi, got)
		}
	}
}

func TestFetchSourceNeedsKernel(t *testing.T) {
	_, err := FetchSource(context.Background(), FetchOptions{CacheDir: t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), "call Fetch first") {
		t.Fatalf("FetchSource(nil) = %v, want advice to call Fetch", err)
	}
}

// TestFetchSource fetches (or reuses) the source of the lab kernel and
// checks that it is the same version; a second call must reuse the cache.
func TestFetchSource(t *testing.T) {
	k := fetchKernel(t)
	start := time.Now()
	tree, err := FetchSource(context.Background(), FetchOptions{Log: testutil.LogWriter(t)}, k)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("source %s (%.1fs)", tree, time.Since(start).Seconds())
	mk, err := os.ReadFile(filepath.Join(tree, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	series, _ := kernelSeries(k.ABI)
	major, minor, _ := strings.Cut(series, ".")
	for _, want := range []string{"VERSION = " + major + "\n", "PATCHLEVEL = " + minor + "\n"} {
		if !strings.Contains(string(mk), want) {
			t.Errorf("%s/Makefile lacks %q", tree, want)
		}
	}
	if _, err := os.Stat(filepath.Join(tree, "fs", "proc", "cmdline.c")); err != nil {
		t.Error(err)
	}
	start = time.Now()
	again, err := FetchSource(context.Background(), FetchOptions{}, k)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > testutil.Within(5*time.Second) {
		t.Errorf("warm FetchSource took %v; the cache was not reused", d)
	}
	if again != tree {
		t.Errorf("warm FetchSource = %s, want %s", again, tree)
	}
}
