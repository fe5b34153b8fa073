package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/splice"
)

// child runs the splicefleet command in a child process (see TestMain)
// and reports whether it was killed.
func (h *hostCLI) child(killAt string, killAfter time.Duration, args ...string) (killed bool, out string) {
	h.t.Helper()
	cmd := exec.Command(os.Args[0], h.host(args...)...)
	cmd.Env = append(os.Environ(), "SPLICEFLEET_TEST_AS_CLI=1", "SPLICEFLEET_TEST_KILL_AT="+killAt)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	if killAfter > 0 {
		timer := time.AfterFunc(killAfter, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		defer timer.Stop()
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true, buf.String()
		}
	}
	return false, buf.String()
}

// consistent opens the host the way the next command would (reconciling
// with the kernel) and checks the invariants a crash must not break: the
// journal and the kernel agree on every patch, no patch id is live twice,
// and the kernel runs nothing splicefleet does not know.
func (h *hostCLI) consistent(round string) *splice.HostView {
	h.t.Helper()
	k, err := agent.OpenKernel("sim:"+h.simDir, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	host, err := splice.OpenHost(context.Background(), splice.HostConfig{StateDir: h.stateDir, Kernel: k, Inspect: agent.InspectModule})
	if err != nil {
		h.t.Fatalf("%s: reopen after crash: %v", round, err)
	}
	defer host.Close()
	v, err := host.View()
	if err != nil {
		h.t.Fatal(err)
	}
	mods, err := k.Modules()
	if err != nil {
		h.t.Fatal(err)
	}
	live := map[string]int{}
	for _, p := range v.Patches {
		switch {
		case p.State == splice.StateApplied && (!p.KernelEnabled || p.KernelTransition):
			h.t.Errorf("%s: %s version %d is journaled applied but the kernel has enabled=%v transition=%v", round, p.ID, p.Version, p.KernelEnabled, p.KernelTransition)
		case p.State == splice.StateApplying || p.State == splice.StateReverting:
			h.t.Errorf("%s: %s version %d left in %s after reconciliation", round, p.ID, p.Version, p.State)
		case !p.Live() && (p.InKernel || contains(mods, p.Module)):
			h.t.Errorf("%s: %s version %d is %s but its module is still in the kernel", round, p.ID, p.Version, p.State)
		}
		if p.Live() {
			live[p.ID]++
		}
	}
	for id, n := range live {
		if n > 1 {
			h.t.Errorf("%s: %s is live %d times", round, id, n)
		}
	}
	if len(v.Foreign) > 0 {
		h.t.Errorf("%s: the kernel runs patches splicefleet does not know: %+v", round, v.Foreign)
	}
	return v
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// crashBundles publishes two bundles, a and b, signed by one key.
func (h *hostCLI) crashBundles() (a, b string) {
	h.t.Helper()
	h.publish(1, 0)
	for _, n := range []string{"a", "b"} {
		mod := h.write(n+".ko", testModule("livepatch_"+n, "f"+n))
		h.ok("create", "--module", mod, "--id", "patch-"+n, "--version", "1", "-o", h.path(n+".splice"))
		h.ok("sign", "--key", h.path("keya.sec.asc"), h.path(n+".splice"))
	}
	return h.path("a.splice"), h.path("b.splice")
}

// TestCrashAtEveryStep kills the applying or undoing process right after
// each journaled step, then checks that reconciliation leaves journal and
// kernel consistent and that retrying the command finishes the job without
// applying anything twice.
func TestCrashAtEveryStep(t *testing.T) {
	applySteps := []string{"apply:journaled", "apply:loaded", "apply:transitioned", "apply:applied", "apply:done"}
	undoSteps := []string{"undo:journaled", "undo:disabling", "undo:disabled", "undo:unloaded", "undo:reverted"}
	for _, step := range append(applySteps, undoSteps...) {
		t.Run(step, func(t *testing.T) {
			h := newHostCLI(t)
			a, b := h.crashBundles()
			keyring := h.path("trusted.asc")
			h.ok(h.host("apply", "--keyring", keyring, a)...)
			var args []string
			if strings.HasPrefix(step, "apply") {
				args = []string{"apply", "--keyring", keyring, b}
			} else {
				h.ok(h.host("apply", "--keyring", keyring, b)...)
				args = []string{"undo", "patch-b"}
			}
			if killed, out := h.child(step, 0, args...); !killed {
				t.Fatalf("child was not killed at %s:\n%s", step, out)
			}
			h.consistent(step)
			// Retrying finishes the job.
			if killed, out := h.child("", 0, args...); killed || strings.Contains(out, "splicefleet:") && !strings.Contains(out, "not applied on this host") {
				t.Fatalf("retry after %s: %s", step, out)
			}
			v := h.consistent(step + " retried")
			want := map[string]splice.State{"patch-a": splice.StateApplied, "patch-b": splice.StateApplied}
			if strings.HasPrefix(step, "undo") {
				want["patch-b"] = splice.StateReverted
			}
			for _, p := range v.Patches {
				if p.State != want[p.ID] {
					t.Errorf("after retry: %s is %s, want %s (%s)", p.ID, p.State, want[p.ID], p.Reason)
				}
			}
		})
	}
}

// TestCrashAtRandomMoments kills the process at random moments of random
// operations on a kernel whose transitions take random time, for
// SPLICEFLEET_CRASH_ROUNDS rounds (default 50; make soak runs more).
func TestCrashAtRandomMoments(t *testing.T) {
	rounds := 50
	if s := os.Getenv("SPLICEFLEET_CRASH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("SPLICEFLEET_CRASH_ROUNDS=%q", s)
		}
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	h := newHostCLI(t)
	a, b := h.crashBundles()
	keyring := h.path("trusted.asc")
	killed := 0
	for round := range rounds {
		if err := sim.SetFaults(h.simDir, sim.Faults{sim.AnyModule: {TransitionMillis: rng.IntN(30)}}); err != nil {
			t.Fatal(err)
		}
		var args []string
		switch rng.IntN(4) {
		case 0:
			args = []string{"apply", "--keyring", keyring, a}
		case 1:
			args = []string{"apply", "--keyring", keyring, b}
		case 2:
			args = []string{"undo", "--all"}
		default:
			args = []string{"undo", []string{"patch-a", "patch-b"}[rng.IntN(2)]}
		}
		delay := time.Duration(1+rng.IntN(60)) * time.Millisecond
		wasKilled, _ := h.child("", delay, args...)
		if wasKilled {
			killed++
		}
		h.consistent(fmt.Sprintf("round %d (%s, killed after %s: %v)", round, strings.Join(args, " "), delay, wasKilled))
		if t.Failed() {
			return
		}
	}
	t.Logf("%d rounds, %d processes killed mid-command", rounds, killed)
	if killed < rounds/5 {
		t.Errorf("only %d of %d rounds killed a process; the delays miss the commands", killed, rounds)
	}
}
