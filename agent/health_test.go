package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
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
	a := &Agent{cfg: Config{HealthCommand: []string{"check-service"}, HealthTimeout: time.Minute}, kernel: NewHostKernel(k, true),
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
	if !errors.Is(err, errUnhealthy) || !strings.Contains(err.Error(), "health command failed: timed out; check-service: timed out") {
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

// exitError is a failed command as cmd's health runner reports it: an
// exit status and the first bytes of what it printed.
type exitError struct {
	code int
	out  string
}

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d: %s", e.code, e.out) }
func (e *exitError) ExitCode() int { return e.code }

// TestHealthOutputIsNotServedOnTCP: the signed report of a host whose
// health command failed, which every agent serves on the unauthenticated
// TCP port (/v1/reports/PLAN) and gossips, keeps the class of the failure
// ("exit status 3") and none of what the command printed; the host
// judges itself by the same words, and its log keeps what the command
// printed.
func TestHealthOutputIsNotServedOnTCP(t *testing.T) {
	const secret = "db_password=hunter2 at 10.0.0.7"
	f := newTestFleet(t)
	var log syncBuffer
	f.options = func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo}))
		o.Config.HealthCommand = []string{"/usr/local/bin/check-db"}
		o.RunHealth = func(context.Context, []string) error { return &exitError{code: 3, out: secret} }
	}
	a := f.start(f.config("host"))
	_, st := f.publishWithPlan(a, "leaky", 1, `id: ID
bundle: BUNDLE
stages:
  - percent: 100
gates:
  health_window: 2s
`)
	eventually(t, 60*time.Second, "the host fails its health check", func() error {
		if s := localState(a, st.Digest); s != rollout.StateFailed {
			return fmt.Errorf("local state %s", s)
		}
		return nil
	})
	const class = "health check: health command failed: exit status 3"
	eventually(t, 30*time.Second, "the signed failure report on the TCP port", func() error {
		resp, err := http.Get("http://" + a.HTTPAddr() + "/v1/reports/" + st.Digest)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var ans reportsAnswer
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			return err
		}
		for _, wire := range ans.Reports {
			if strings.Contains(string(wire), "hunter2") {
				t.Fatalf("the TCP port serves the health command's output: %q", wire)
			}
			rep, err := rollout.DecodeReport(wire)
			if err != nil {
				return err
			}
			if rep.State == rollout.StateFailed {
				if rep.Reason != class {
					t.Fatalf("failure report on the TCP port: reason %q, want %q", rep.Reason, class)
				}
				return nil
			}
		}
		return fmt.Errorf("no failure report among %d", len(ans.Reports))
	})
	// The host names the cause as every other host does; its log keeps
	// what the command printed, for the operator.
	var own rollout.Status
	if err := NewControlClient(a.cfg.ControlSocket).Do("GET", "/v1/rollouts/"+st.Digest, nil, &own); err != nil {
		t.Fatal(err)
	}
	if want := []string{"host: " + class}; !slices.Equal(own.Failed, want) {
		t.Errorf("failed hosts on the control socket: %q, want %q", own.Failed, want)
	}
	if !strings.Contains(log.String(), secret) {
		t.Errorf("the host's log lost the health command's output:\n%s", log.String())
	}
}

// syncBuffer is a bytes.Buffer for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPublicReason: what the TCP port keeps of a reason.
func TestPublicReason(t *testing.T) {
	for in, want := range map[string]string{
		"health check: health command failed: exit status 3; /bin/check: exit status 3: SECRET": "health check: health command failed: exit status 3",
		"health check: health command failed: timed out; /bin/check: timed out: SECRET":         "health check: health command failed: timed out",
		"health check: the health command failed (injected fault of the SIMULATED kernel)":      "health check: the health command failed (injected fault of the SIMULATED kernel)",
		"apply: health check: health command failed: exit status 2; x: y":                       "apply: health check: health command failed: exit status 2",
		"health check: the kernel gained taint O":                                               "health check: the kernel gained taint O",
	} {
		if got := publicReason(in); got != want {
			t.Errorf("publicReason(%q) = %q, want %q", in, got, want)
		}
	}
}
