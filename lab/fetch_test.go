package lab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("warm Fetch took %v; the cache was not reused", d)
	}
	if diff := cmp.Diff(k, again); diff != "" {
		t.Errorf("warm Fetch differs (-cold +warm):\n%s", diff)
	}
}
