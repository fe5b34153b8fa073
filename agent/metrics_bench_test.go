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
// patches (all in its journal and in the simulated kernel), whose store
// holds their 50 bundles, and which follows 3 rollouts. It reports the
// exposition's size, which must stay under 64 KiB. BenchmarkScrapeBaseline
// is the same scrape of an agent holding nothing, to run beside it.
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
		v, err := a.Publish(raw)
		if err != nil {
			b.Fatal(err)
		}
		if i < 3 {
			// A rollout nobody is in yet: it is followed and exported.
			if _, err := a.StartRollout(f.signedPlan(v.ManifestDigest, fmt.Sprintf("id: wave-%d\nbundle: BUNDLE\nstages: [{ring: nobody}, {percent: 100}]\n", i))); err != nil {
				b.Fatal(err)
			}
		}
	}
	h.Close()
	url := "http://" + a.HTTPAddr() + "/metrics"
	size := scrapeLoop(b, url)
	if size >= 64<<10 {
		b.Fatalf("the exposition is %d bytes, over 64 KiB", size)
	}
	body := mustScrape(b, url)
	if n := bytes.Count(body, []byte("splicefleet_patch_state{")); n != 50 {
		b.Fatalf("%d patches exported, want 50", n)
	}
	if n := bytes.Count(body, []byte("splicefleet_rollout_stages{")); n != 3 {
		b.Fatalf("%d rollouts exported, want 3", n)
	}
}

// BenchmarkScrapeBaseline: one GET /metrics of an agent that holds
// nothing and follows no rollout.
func BenchmarkScrapeBaseline(b *testing.B) {
	f := newTestFleet(b)
	a := f.startN(1)[0]
	scrapeLoop(b, "http://"+a.HTTPAddr()+"/metrics")
}

// scrapeLoop scrapes url b.N times and reports the exposition's size.
func scrapeLoop(b *testing.B, url string) int {
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
	return size
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
