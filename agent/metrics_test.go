package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/internal/testutil"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// goldenExposition is the metrics package's golden exposition: every
// splicefleet_ metric an agent exports, with fixed values.
const goldenExposition = "../metrics/testdata/exposition.golden"

// scrape reads an agent's /metrics on its TCP listener.
func scrape(t testing.TB, a *Agent) string {
	t.Helper()
	resp, err := http.Get("http://" + a.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s %v", resp.Status, err)
	}
	return string(body)
}

// families lists the metric families named in an exposition's TYPE lines
// that start with prefix.
func families(text, prefix string) []string {
	var out []string
	for line := range strings.Lines(text) {
		if f := strings.Fields(line); len(f) == 4 && f[1] == "TYPE" && strings.HasPrefix(f[2], prefix) {
			out = append(out, f[2])
		}
	}
	slices.Sort(out)
	return out
}

// cliApply applies a bundle to an agent's host the way `splicefleet
// apply` does: in a Host of its own, with a kernel of its own.
func cliApply(t *testing.T, f *testFleet, a *Agent, raw []byte) {
	t.Helper()
	k, err := testKernel(a.cfg.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := applyWith(t, f, a, k, raw); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func applyWith(t *testing.T, f *testFleet, a *Agent, k *HostKernel, raw []byte) (*splice.Patch, error) {
	t.Helper()
	h, err := splice.OpenHost(context.Background(), splice.HostConfig{StateDir: a.cfg.StateDir, Kernel: k, Inspect: InspectModule, Logger: warnLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b, err := splice.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return h.Apply(context.Background(), b, f.policy(t))
}

// policy is the fleet's trust policy, as the command line loads it.
func (f *testFleet) policy(t *testing.T) splice.Verifier {
	t.Helper()
	p, err := loadPolicy(Config{Keyring: f.keyring, Threshold: 1}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMetricsEndpoint: the agent serves every metric of the golden
// exposition on its TCP listener, promtool accepts the whole scrape, and
// the host's state follows the journal (a patch applied by the command
// line shows), the kernel, the store, the distribution counters and the
// rollouts it follows; refused operator commands and malformed rollout
// events are counted.
func TestMetricsEndpoint(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(2)
	waitMembers(t, agents, 2)
	raw := f.bundleFixing(t, "cve-metrics", 1, "CVE-2024-1086")
	v, err := agents[0].Publish(raw)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "both hold it", func() error { return holdAll(agents, v.ManifestDigest) })
	a := agents[1]
	// Held for distribution only: no rollout targets the host with it.
	if err := contains(scrape(t, a), `splicefleet_bundle_outstanding{patch="cve-metrics",version="1"} 0`); err != nil {
		t.Errorf("a bundle published without a plan: %v", err)
	}

	// A rollout whose first stage (0.01%) holds neither host, soaking for
	// an hour: it runs in stage 1 of 2, and neither host applies; the
	// bundle is outstanding on both.
	st, err := agents[0].StartRollout(f.signedPlan(v.ManifestDigest, `id: cve-metrics
bundle: BUNDLE
stages:
  - percent: 0.01
    soak: 1h
  - percent: 100
`))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the rollout reaches the other host", func() error {
		return contains(scrape(t, a), `splicefleet_rollout_state{rollout="cve-metrics",state="running"} 1`)
	})
	eventually(t, 10*time.Second, "outstanding before the apply", func() error {
		return contains(scrape(t, a), `splicefleet_bundle_outstanding{patch="cve-metrics",version="1"} 1`)
	})
	cliApply(t, f, a, raw)
	// An operator command from a key the agent does not trust, and a
	// failure report that does not decode.
	stranger, err := signing.GenerateSigner("Stranger <x@example.com>", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Command(f.command(stranger, rollout.Command{Plan: st.Digest, Seq: 1, Action: rollout.ActionHalt})); err == nil {
		t.Fatal("a command from an untrusted key was accepted")
	}
	if err := agents[0].node.Broadcast(rollout.ReportEvent, []byte{0xff}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the bad host report is counted", func() error {
		return contains(scrape(t, a), `splicefleet_rollout_documents_refused_total{kind="report",reason="invalid"} 1`)
	})

	// A second rollout of the bundle, halted by a signed command: it
	// says when it ended.
	ended, err := agents[0].StartRollout(f.signedPlan(v.ManifestDigest, `id: ended-metrics
bundle: BUNDLE
stages:
  - percent: 0.01
    soak: 1h
  - percent: 100
`))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the second rollout reaches the other host", func() error {
		return contains(scrape(t, a), `splicefleet_rollout_state{rollout="ended-metrics",state="running"} 1`)
	})
	if _, err := a.Command(f.command(f.signer, rollout.Command{Plan: ended.Digest, Seq: 1, Action: rollout.ActionHalt})); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the halted rollout says when it ended", func() error {
		for _, l := range strings.Split(scrape(t, a), "\n") {
			if v, ok := strings.CutPrefix(l, `splicefleet_rollout_ended_timestamp_seconds{rollout="ended-metrics"} `); ok {
				at, err := strconv.ParseFloat(v, 64)
				if err != nil || time.Since(time.Unix(int64(at), 0)).Abs() > time.Hour {
					return fmt.Errorf("ended at %q, not about now", v)
				}
				return nil
			}
		}
		return errors.New("no end time for the halted rollout")
	})

	text := scrape(t, a)
	golden, err := os.ReadFile(goldenExposition)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := families(text, "splicefleet_"), families(string(golden), "splicefleet_"); !slices.Equal(got, want) {
		t.Errorf("families served:\n%v\nin the golden exposition:\n%v", got, want)
	}
	for _, want := range []string{
		`splicefleet_agent_info{version="test"} 1`,
		`splicefleet_build_info{goversion="` + runtime.Version() + `",revision="",version="test"} 1`,
		`splicefleet_kernel_info{arch="x86_64",build_id="` + kernelBuildID(t, a) + `",livepatch="true",release="6.1.0-56-cloud-amd64",simulated="true"} 1`,
		`splicefleet_patch_state{module="lp_cve-metrics",patch="cve-metrics",state="applied",version="1"} 1`,
		`splicefleet_bundle_outstanding{patch="cve-metrics",version="1"} 0`,
		`splicefleet_patch_cve_info{cve="CVE-2024-1086",patch="cve-metrics",version="1"} 1`,
		`splicefleet_livepatch_enabled{livepatch="lp_cve-metrics"} 1`,
		`splicefleet_livepatch_transition{livepatch="lp_cve-metrics"} 0`,
		`splicefleet_kernel_taint{flag="livepatch"} 1`,
		`splicefleet_kernel_taint{flag="die"} 0`,
		`splicefleet_gossip_members{status="alive"} 2`,
		`splicefleet_fetch_downloads_total{kind="module"} 1`,
		`splicefleet_bundle_fetch_duration_seconds_count 1`,
		`splicefleet_scrape_source_success{source="journal"} 1`,
		`splicefleet_scrape_source_success{source="kernel"} 1`,
		`splicefleet_scrape_source_success{source="bundles"} 1`,
		`splicefleet_rollout_stage{rollout="cve-metrics"} 1`,
		`splicefleet_rollout_stages{rollout="cve-metrics"} 2`,
		`splicefleet_rollout_hosts{rollout="cve-metrics",status="waiting"} 0`,
		`splicefleet_rollout_host_state{rollout="cve-metrics",state="none"} 1`,
		`splicefleet_rollout_state{rollout="cve-metrics",state="halted"} 0`,
		`splicefleet_rollout_documents_refused_total{kind="command",reason="signature"} 1`,
		`splicefleet_scrape_items_omitted{kind="rollout"} 0`,
	} {
		if err := contains(text, want); err != nil {
			t.Error(err)
		}
	}
	if err := contains(scrape(t, agents[0]), `splicefleet_blob_uploads_total{kind="module"} 1`); err != nil {
		t.Error(err)
	}
	testutil.PromtoolCheckMetrics(t, []byte(text))
}

// TestStalledTransitionCountsARollback: a patch applied through the
// agent's own kernel (as the rollout engine will) whose transition stalls
// is reversed, and the agent counts the transition and a rollback by
// transition_timeout.
func TestStalledTransitionCountsARollback(t *testing.T) {
	f := newTestFleet(t)
	a := f.startN(1)[0]
	a.kernel.Timeouts = kmod.Timeouts{Stall: 50 * time.Millisecond, AfterSignal: 50 * time.Millisecond, Poll: 5 * time.Millisecond}
	if err := sim.SetFaults(strings.TrimPrefix(a.cfg.Kernel, "sim:"), sim.Faults{sim.AnyModule: {Never: true}}); err != nil {
		t.Fatal(err)
	}
	_, err := applyWith(t, f, a, a.kernel, f.bundle("stuck", 1, f.signer, 0))
	if !errors.Is(err, kmod.ErrTransitionStuck) {
		t.Fatalf("apply: %v", err)
	}
	text := scrape(t, a)
	for _, want := range []string{
		`splicefleet_rollbacks_total{reason="transition_timeout"} 1`,
		`splicefleet_transition_duration_seconds_count 1`,
		`splicefleet_patch_state{module="lp_stuck",patch="stuck",state="failed",version="1"} 1`,
	} {
		if err := contains(text, want); err != nil {
			t.Error(err)
		}
	}
}

// TestCrashLoopGuardCountsARollback: the host goes down while a patch is
// in its health window. At the next boot `splicefleet boot` keeps the
// patch off (the crash-loop guard) before the agent starts, and the agent
// counts the rollback once: a restarted agent does not count it again.
// Without the boot service, the agent's own start-up judges the next one
// and counts it.
func TestCrashLoopGuardCountsARollback(t *testing.T) {
	f := newTestFleet(t)
	cfg := f.config("node-00")
	kernel := strings.TrimPrefix(cfg.Kernel, "sim:")
	if err := sim.Init(kernel, sim.Config{}); err != nil {
		t.Fatal(err)
	}
	guarded := func(n int) string { return fmt.Sprintf(`splicefleet_rollbacks_total{reason="crash_loop_guard"} %d`, n) }

	crashInHealthWindow(t, f, cfg, "crashy")
	if err := sim.Reboot(kernel, ""); err != nil {
		t.Fatal(err)
	}
	bootHost(t, cfg)
	a := f.start(cfg)
	eventually(t, 10*time.Second, "the agent counts the crash-loop guard's rollback", func() error {
		return contains(scrape(t, a), guarded(1))
	})
	if err := contains(scrape(t, a), `splicefleet_patch_state{module="lp_crashy",patch="crashy",state="failed",version="1"} 1`); err != nil {
		t.Error(err)
	}
	f.stop(cfg.NodeName)
	a = f.start(cfg)
	waitStarted(t, a)
	if err := contains(scrape(t, a), guarded(0)); err != nil {
		t.Errorf("a restarted agent counts the rollback again: %v", err)
	}
	f.stop(cfg.NodeName)

	// No boot service this time: the agent judges at start-up.
	crashInHealthWindow(t, f, cfg, "crashier")
	if err := sim.Reboot(kernel, ""); err != nil {
		t.Fatal(err)
	}
	a = f.start(cfg)
	eventually(t, 10*time.Second, "the agent judges and counts at start-up", func() error {
		return contains(scrape(t, a), guarded(1))
	})
}

// crashInHealthWindow applies a patch to the host of cfg with an hour's
// health window and abandons it inside the window, as a host that goes
// down then would: the crash-loop guard's marker stays in the journal.
func crashInHealthWindow(t *testing.T, f *testFleet, cfg Config, id string) {
	t.Helper()
	k, err := testKernel(cfg.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := splice.OpenHost(ctx, splice.HostConfig{StateDir: cfg.StateDir, Kernel: k, Inspect: InspectModule, Logger: warnLogger(t),
		HealthWindow: time.Hour, StepHook: func(step string) {
			if step == "apply:applied" {
				cancel()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b, err := splice.Decode(bytes.NewReader(f.bundleFixing(t, id, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Apply(ctx, b, f.policy(t)); !errors.Is(err, context.Canceled) {
		t.Fatalf("apply abandoned in its health window: %v", err)
	}
}

// bootHost does what `splicefleet boot` does early at boot, in a Host of
// its own.
func bootHost(t *testing.T, cfg Config) {
	t.Helper()
	k, err := testKernel(cfg.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	h, err := splice.OpenHost(context.Background(), splice.HostConfig{StateDir: cfg.StateDir, Kernel: k, Inspect: InspectModule, Logger: warnLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.Boot(context.Background()); err != nil {
		t.Fatalf("boot: %v", err)
	}
}

// waitStarted waits until the agent's start-up Host has come and gone.
func waitStarted(t *testing.T, a *Agent) {
	t.Helper()
	select {
	case <-a.ro.guardsTaken:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not open its host at start-up")
	}
}

// bundleFixing makes a signed bundle for the simulated kernel that names
// the CVEs it fixes.
func (f *testFleet) bundleFixing(t testing.TB, id string, version uint64, cves ...string) []byte {
	t.Helper()
	name := "lp_" + id
	mod := fakemodule.Build(fakemodule.Options{Name: name, Livepatch: true, Functions: []string{"f"}})
	b, err := splice.New(splice.Manifest{ID: id, Version: version, CVEs: cves, Target: splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"},
		Module: splice.ModuleRef{Name: name}, Functions: []string{"f"}, Created: time.Now().Add(-time.Minute)}, mod)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := f.signer.Sign(b.Manifest, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddSignature(sig); err != nil {
		t.Fatal(err)
	}
	raw, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func kernelBuildID(t *testing.T, a *Agent) string {
	t.Helper()
	info, err := a.kernel.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.BuildID
}

func contains(text, line string) error {
	if !strings.Contains(text, line+"\n") {
		return fmt.Errorf("no line %s", line)
	}
	return nil
}
