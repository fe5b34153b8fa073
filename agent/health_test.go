package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
)

// slowHealth is a health command that takes d to succeed and reports a
// canceled run the way cmd's runner does.
func slowHealth(d time.Duration) func(context.Context, []string) error {
	return func(ctx context.Context, _ []string) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return fmt.Errorf("timed out: %w", ctx.Err())
		}
	}
}

// A health command still running when the watch ends gives no verdict;
// one that overruns its own timeout fails the host.
func TestHealthWatchEndingMidCheckIsNoFailure(t *testing.T) {
	dir := t.TempDir()
	if err := sim.Init(dir, sim.Config{}); err != nil {
		t.Fatal(err)
	}
	k, err := sim.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	slow := slowHealth(time.Hour)
	a := &Agent{cfg: Config{HealthCommand: []string{"check-service"}, HealthTimeout: time.Minute}, kernel: NewKernel(k),
		runHealth: func(ctx context.Context, argv []string) error {
			select {
			case started <- struct{}{}:
			default:
			}
			return slow(ctx, argv)
		}}
	p, err := a.newHealthProbe("lp_fix")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.watch(ctx, 50*time.Millisecond, func() bool { return false }) }()
	<-started
	cancel() // the window ends while the command runs
	if err := <-done; err != nil {
		t.Errorf("watch ended by its window mid-check = %v, want nil", err)
	}

	a.cfg.HealthTimeout = 20 * time.Millisecond
	err = p.check(context.Background(), false)
	if !errors.Is(err, errUnhealthy) || !strings.Contains(err.Error(), "health command check-service: timed out") {
		t.Errorf("a health command past its timeout: %v, want a failure", err)
	}
}

// TestSlowHealthCommandDoesNotFailHealthyHosts: the health command takes
// most of the health window, so one run is in flight whenever the window
// closes. The hosts stay patched and the rollout completes.
func TestSlowHealthCommandDoesNotFailHealthyHosts(t *testing.T) {
	f := newTestFleet(t)
	f.options = func(o *Options) {
		o.Config.HealthCommand = []string{"check-service"}
		o.RunHealth = slowHealth(250 * time.Millisecond)
	}
	agents := f.startN(2)
	waitMembers(t, agents, 2)
	_, st := f.publishWithPlan(agents[0], "slowcheck", 1, `id: ID
bundle: BUNDLE
stages:
  - percent: 100
gates:
  health_window: 300ms
`)
	waitRollout(t, agents, st.Digest, rollout.Done, 60*time.Second)
	for _, a := range agents {
		if got := kernelState(t, a); !slices.Equal(got, []string{"lp_slowcheck"}) {
			t.Errorf("%s kernel runs %v, want lp_slowcheck", a.Name(), got)
		}
		if s := localState(a, st.Digest); s != rollout.StateHealthy {
			t.Errorf("%s: local state %s, want healthy", a.Name(), s)
		}
	}
}
