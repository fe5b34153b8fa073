package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/splicefleet/splicefleet/splice"
)

// BenchmarkScrape: one GET /metrics of an agent whose host runs 50
// patches (all in its journal and in the simulated kernel) and whose
// store holds their 50 bundles. It reports the exposition's size, which
// must stay under 64 KiB.
func BenchmarkScrape(b *testing.B) {
	f := newTestFleet(b)
	a := f.startN(1)[0]
	h, err := splice.OpenHost(context.Background(), splice.HostConfig{StateDir: a.cfg.StateDir, Kernel: a.kernel, Inspect: InspectModule})
	if err != nil {
		b.Fatal(err)
	}
	p, err := loadPolicy(Config{Keyring: f.keyring, Threshold: 1}, a.now)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 50 {
		raw := f.bundleFixing(b, fmt.Sprintf("cve-2026-%04d", i), 1, fmt.Sprintf("CVE-2026-%04d", 1000+i))
		bundle, err := splice.Decode(bytes.NewReader(raw))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Apply(context.Background(), bundle, p); err != nil {
			b.Fatal(err)
		}
		if _, err := a.Publish(raw); err != nil {
			b.Fatal(err)
		}
	}
	h.Close()
	url := "http://" + a.HTTPAddr() + "/metrics"
	var size int
	for b.Loop() {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("scrape: %s %v", resp.Status, err)
		}
		size = len(body)
	}
	b.ReportMetric(float64(size), "bytes/scrape")
	if size >= 64<<10 {
		b.Fatalf("the exposition is %d bytes, over 64 KiB", size)
	}
	if n := bytes.Count(mustScrape(b, url), []byte("splicefleet_patch_state{")); n != 50 {
		b.Fatalf("%d patches exported, want 50", n)
	}
}

func mustScrape(b *testing.B, url string) []byte {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return body
}
