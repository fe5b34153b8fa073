package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	k, err := openHostKernel("sim:"+h.simDir, nil)
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
	undoSteps := []string{"undo:journaled", "undo:disabling", "undo:disabled", "undo:unloaded", "undo:reverted", "undo:done"}
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

// stepPrefix starts the lines in which a child run with
// SPLICEFLEET_TEST_STEPS=1 reports its journaled steps (see TestMain).
const stepPrefix = "splicefleet-test-step: "

// stepWriter collects a child's output and hears its step lines as they
// are written.
type stepWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	line   []byte
	steps  []string
	onStep func(n int, step string) // n counts from 1
}

func (w *stepWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	for _, c := range b {
		if c != '\n' {
			w.line = append(w.line, c)
			continue
		}
		if step, ok := strings.CutPrefix(string(w.line), stepPrefix); ok {
			w.steps = append(w.steps, step)
			if w.onStep != nil {
				w.onStep(len(w.steps), step)
			}
		}
		w.line = w.line[:0]
	}
	return len(b), nil
}

// childAtStep runs the command in a child process that reports its steps,
// and SIGKILLs it jitter after it reports its n-th journaled step (it may
// finish first). It returns whether it was killed and the steps it had
// reported: the last is where the kill landed, at that step or in the
// kernel work that follows it.
func (h *hostCLI) childAtStep(n int, jitter time.Duration, args ...string) (killed bool, steps []string, out string) {
	h.t.Helper()
	cmd := exec.Command(os.Args[0], h.host(args...)...)
	cmd.Env = append(os.Environ(), "SPLICEFLEET_TEST_AS_CLI=1", "SPLICEFLEET_TEST_STEPS=1")
	w := &stepWriter{}
	var timer *time.Timer
	w.onStep = func(i int, _ string) {
		if i == n {
			timer = time.AfterFunc(jitter, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		}
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	err := cmd.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			killed = true
		}
	}
	return killed, slices.Clone(w.steps), w.buf.String()
}

// replacedByIsLive checks what the journal says replaced each replaced
// patch: following ReplacedBy from it reaches a live patch (the one whose
// undo puts it back, perhaps through a patch that was replaced in turn),
// and no live patch says it is replaced. It also checks that the journal
// keeps no half-done operation once reconciled.
func (h *hostCLI) replacedByIsLive(round string, v *splice.HostView) {
	h.t.Helper()
	byKey := map[string]splice.PatchView{}
	for _, p := range v.Patches {
		byKey[fmt.Sprintf("%s@%d", p.ID, p.Version)] = p
	}
	for _, p := range v.Patches {
		if p.Live() && p.ReplacedBy != "" {
			h.t.Errorf("%s: %s version %d is %s but says it is replaced by %s", round, p.ID, p.Version, p.State, p.ReplacedBy)
		}
		if len(p.Supersedes) > 0 {
			h.t.Errorf("%s: %s version %d still has an unfinished retire of %v", round, p.ID, p.Version, p.Supersedes)
		}
		if p.State != splice.StateReplaced || p.ReplacedBy == "" {
			continue
		}
		q, key := p, p.ReplacedBy
		for range len(v.Patches) {
			next, ok := byKey[key]
			if !ok || next.State != splice.StateReplaced {
				q = next
				break
			}
			key = next.ReplacedBy
		}
		if !q.Live() {
			h.t.Errorf("%s: %s version %d is replaced by %s, which leads to %s (%s): undoing it would put nothing back", round, p.ID, p.Version, p.ReplacedBy, key, q.State)
		}
	}
	journal, err := os.ReadFile(filepath.Join(h.stateDir, splice.JournalFile))
	if err != nil {
		h.t.Fatal(err)
	}
	if bytes.Contains(journal, []byte(`"restoring"`)) {
		h.t.Errorf("%s: the journal still has an undo's put-back to finish", round)
	}
}

// crashUpgrades adds to crashBundles version 2 of patch-a (an upgrade)
// and patch-cum, an atomic-replace bundle over both.
func (h *hostCLI) crashUpgrades() (a2, cum string) {
	h.t.Helper()
	for _, c := range []struct{ name, id, module, version string }{
		{"a2", "patch-a", "livepatch_a_v2", "2"}, {"cum", "patch-cum", "livepatch_cum", "1"},
	} {
		mod := h.write(c.name+".ko", testModule(c.module, "fa", "fb"))
		args := []string{"create", "--module", mod, "--id", c.id, "--version", c.version, "-o", h.path(c.name + ".splice")}
		if c.name == "cum" {
			args = append(args, "--replace")
		}
		h.ok(args...)
		h.ok("sign", "--key", h.path("keya.sec.asc"), h.path(c.name+".splice"))
	}
	return h.path("a2.splice"), h.path("cum.splice")
}

// TestCrashAtRandomMoments kills the process at random moments inside
// random operations (apply, an upgrade to version 2, an atomic replace,
// undo and its put-back of what the undone patch had replaced, undo --all)
// on a kernel whose transitions take random time. The child reports each
// journaled step; the kill is timed from a random one of them, and only
// kills that land between an operation's first journaled step and its
// last ("apply:done", "undo:done") count. It runs until
// SPLICEFLEET_CRASH_KILLS such kills (default 50; make soak runs more).
func TestCrashAtRandomMoments(t *testing.T) {
	want := 50
	if s := os.Getenv("SPLICEFLEET_CRASH_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SPLICEFLEET_CRASH_KILLS=%q", s)
		}
		want = n
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	h := newHostCLI(t)
	a, b := h.crashBundles()
	a2, cum := h.crashUpgrades()
	start := time.Now()
	inside, after, refused, rounds := 0, 0, 0, 0
	// Kills after the kernel took an upgrade or atomic replace and before
	// what it supersedes was journaled replaced.
	retireWindow := 0
	where := map[string]int{} // the step each kill followed

	for rounds = 0; inside < want; rounds++ {
		if rounds >= 20*want {
			t.Fatalf("%d rounds killed only %d processes inside an operation", rounds, inside)
		}
		if err := sim.SetFaults(h.simDir, sim.Faults{sim.AnyModule: {TransitionMillis: rng.IntN(30)}}); err != nil {
			t.Fatal(err)
		}
		args, retires := h.crashOperation(rng, map[string]string{"a": a, "a2": a2, "b": b, "cum": cum})
		n, jitter := 1+rng.IntN(6), time.Duration(rng.IntN(15_000))*time.Microsecond
		switch {
		case args[0] == "undo":
			n = 1 + rng.IntN(10)
		case retires && rng.IntN(2) == 0:
			// loaded, transitioned or applied, and soon after: before
			// what it supersedes is journaled replaced.
			n, jitter = 2+rng.IntN(3), time.Duration(rng.IntN(3_000))*time.Microsecond
		}
		killed, steps, out := h.childAtStep(n, jitter, args...)
		last := ""
		if len(steps) > 0 {
			last = steps[len(steps)-1]
		}
		switch {
		case !killed && len(steps) == 0:
			refused++
		case !killed:
		case last == "" || last == "apply:done" || last == "undo:done":
			after++
		default:
			inside++
			where[args[0]+" "+last]++ // an undo's apply steps put back what it had replaced
			if retires && (last == "apply:loaded" || last == "apply:transitioned" || last == "apply:applied") {
				retireWindow++
			}
		}
		round := fmt.Sprintf("round %d (%s, killed %v after step %d %q + %s; steps %v)", rounds, strings.Join(args, " "), killed, n, last, jitter, steps)
		v := h.consistent(round)
		h.replacedByIsLive(round, v)
		if t.Failed() {
			t.Logf("child output:\n%s", out)
			return
		}
	}
	t.Logf("%d rounds in %s: %d processes killed inside an operation (%d between an upgrade's or replace's load and its retire), %d after it, %d commands refused; kills by the step they followed: %v",
		rounds, time.Since(start).Round(time.Millisecond), inside, retireWindow, after, refused, where)
	if want >= 50 && retireWindow == 0 {
		t.Errorf("no kill landed between an upgrade's or atomic replace's load and its retire")
	}

}

// crashOperation picks a command that does something on the host as its
// journal now stands: applying a bundle whose id is not live (or version 2
// of patch-a over version 1, an upgrade; or patch-cum, an atomic replace
// of all), undoing the top of the stack (which puts back what it had
// replaced), or undo --all. retires says whether the command, an apply,
// supersedes live patches.
func (h *hostCLI) crashOperation(rng *rand.Rand, bundles map[string]string) (args []string, retires bool) {
	h.t.Helper()
	live, err := splice.LiveSummary(h.stateDir)
	if err != nil {
		h.t.Fatal(err)
	}
	liveID := func(id string) bool {
		return slices.ContainsFunc(live, func(k string) bool { return strings.HasPrefix(k, id+"@") })
	}
	keyring := h.path("trusted.asc")
	apply := func(name string) []string { return []string{"apply", "--keyring", keyring, bundles[name]} }
	var ops [][]string
	if !liveID("patch-a") {
		ops = append(ops, apply("a"))
	}
	if !slices.Contains(live, "patch-a@2") {
		ops = append(ops, apply("a2"), apply("a2"))
		if slices.Contains(live, "patch-a@1") {
			ops = append(ops, apply("a2")) // an upgrade
		}
	}
	if !liveID("patch-b") {
		ops = append(ops, apply("b"))
	}
	if !liveID("patch-cum") {
		ops = append(ops, apply("cum"))
		if len(live) > 0 {
			ops = append(ops, apply("cum")) // an atomic replace of what runs
		}
	}
	if len(live) > 0 {
		top, _, _ := strings.Cut(live[len(live)-1], "@")
		ops = append(ops, []string{"undo", top}, []string{"undo", top}, []string{"undo", top}, []string{"undo", "--all"})
	}
	args = ops[rng.IntN(len(ops))]
	switch {
	case args[0] != "apply":
	case args[3] == bundles["a2"]:
		retires = slices.Contains(live, "patch-a@1")
	case args[3] == bundles["cum"]:
		retires = len(live) > 0
	}
	return args, retires
}
