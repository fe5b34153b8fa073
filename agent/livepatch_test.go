package agent

import (
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
)

// TestKernelWithoutLivepatch: an agent on a kernel built without
// livepatch support warns at start and on /healthz, and no rollout
// targets it: a rollout over the fleet completes on the other hosts
// instead of halting on an apply that could only fail.
func TestKernelWithoutLivepatch(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(2)
	cfg := f.config("nolp")
	if err := sim.Init(strings.TrimPrefix(cfg.Kernel, "sim:"), sim.Config{NoLivepatch: true}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	f.options = func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testutil.LogWriter(t)), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	nolp := f.start(cfg)
	f.options = nil
	all := append(slices.Clone(agents), nolp)
	waitMembers(t, all, 3)

	eventually(t, 10*time.Second, "the start-up warning", func() error {
		if !strings.Contains(logs.String(), "has no livepatch support") {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	resp, err := http.Get("http://" + nolp.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "ok\n") || !strings.Contains(string(body), "no livepatch support") {
		t.Errorf("/healthz of the host without livepatch: %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + agents[0].HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok\n" {
		t.Errorf("/healthz of a host with livepatch: %q", body)
	}

	_, st := f.publishWithPlan(agents[0], "nolp", 1, `id: ID
bundle: BUNDLE
stages:
  - percent: 100
gates:
  health_window: 200ms
`)
	waitRollout(t, all, st.Digest, rollout.Done, 60*time.Second)
	s, err := nolp.Rollout(st.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if s.Self.Targeted || s.Stages[0].Cohort != 2 || s.Stages[0].Healthy != 2 {
		t.Errorf("the rollout as the host without livepatch sees it: targeted %v, cohort %d, healthy %d", s.Self.Targeted, s.Stages[0].Cohort, s.Stages[0].Healthy)
	}
	for _, a := range agents {
		if got := kernelState(t, a); !slices.Equal(got, []string{"lp_nolp"}) {
			t.Errorf("%s runs %v", a.Name(), got)
		}
	}
}
