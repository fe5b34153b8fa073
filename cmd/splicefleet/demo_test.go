package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/kmod/sim"
)

// TestDemo runs the demo end to end with eight agents and checks what a
// viewer would: the good rollout went through its stages in order and
// patched every host; the bad one halted on its canary, named with the
// reason, and no host outside the canary ring ever loaded it (by each
// simulated kernel's log, as one would read dmesg); and when the command
// returned, nothing was left running.
func TestDemo(t *testing.T) {
	goroutines := len(goroutineStacks())
	dir := filepath.Join(t.TempDir(), "demo")
	c := newCLI(t)
	start := time.Now()
	code, out, errs := c.run("demo", "--agents", "8", "--dir", dir)
	t.Logf("the demo took %s\n%s", time.Since(start).Round(time.Millisecond), out)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}

	want := []string{
		"SIMULATED kernel",
		"cluster formed: every agent sees 8 of 8 alive",
		// Without --hold the fleet stops with the story: no commands to
		// try, and how to keep it.
		"to try commands against it, run the demo with --hold",
		// The good rollout, stage by stage, in this order.
		"stage 1 (ring canary) open: 2 hosts in it",
		"stage 1 (ring canary) passed: 2 of 2 hosts healthy",
		"stage 2 (25%) open",
		"stage 2 (25%) passed",
		"stage 3 (100%) open: 8 hosts in it",
		"stage 3 (100%) passed: 8 of 8 hosts healthy",
		"rollout done: 8 of 8 hosts healthy, and the SIMULATED kernels of 8 of 8 hosts run lp_demo_good",
		// The bad one.
		"injected into host-02's SIMULATED kernel: the health check fails while lp_demo_bad is loaded",
		"host-02 FAILED: health check: health command failed: injected fault of the SIMULATED kernel",
		"rollout HALTED fleet-wide: 1 host failed (host-02: health check: health command failed: injected fault of the SIMULATED kernel",
		"check passed: no host outside the canary ring applied demo-bad",
		"the SIMULATED kernels of 8 of 8 hosts run lp_demo_good, and none runs lp_demo_bad",
		"stopping 8 agents",
		"the demo's files are in " + dir,
	}
	if strings.Contains(out, "--control-socket") {
		t.Errorf("without --hold the demo offers commands against a fleet that will be gone:\n%s", out)
	}
	at := 0
	for _, w := range want {
		i := strings.Index(out[at:], w)
		if i < 0 {
			t.Fatalf("the output lacks %q after byte %d", w, at)
		}
		at += i + len(w)
	}
	if strings.Contains(out, "level=") {
		t.Error("agents' log lines reached the terminal")
	}
	if !regexp.MustCompile(`(?m)^\s+1 ring canary\s+2\s+\d+\s+\d+\s+1\s+\d+\s+halted$`).MatchString(out) {
		t.Error("the bad rollout's table does not show its canary stage halted with one failure")
	}

	// Only the canaries' kernels ever enabled the bad patch.
	for i := 1; i <= 8; i++ {
		host := fmt.Sprintf("host-%02d", i)
		k, err := sim.Open(filepath.Join(dir, host, "kernel"))
		if err != nil {
			t.Fatal(err)
		}
		recs, _, err := k.Log(0)
		if err != nil {
			t.Fatal(err)
		}
		var log strings.Builder
		for _, r := range recs {
			log.WriteString(r.Message + "\n")
		}
		loaded := strings.Contains(log.String(), "livepatch: enabling patch 'lp_demo_bad'")
		if canary := i == 2 || i == 3; loaded && !canary {
			t.Errorf("%s is outside the canary ring and its kernel enabled lp_demo_bad", host)
		}
		if i == 2 && !loaded {
			t.Errorf("the failing canary %s never enabled lp_demo_bad", host)
		}
		if lps, _ := k.Livepatches(); len(lps) != 1 || lps[0].Name != "lp_demo_good" {
			t.Errorf("%s runs %+v, want lp_demo_good alone", host, lps)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "agents.log")); err != nil || fi.Size() == 0 {
		t.Errorf("the agents' log is missing or empty: %v", err)
	}
	stoppedEverything(t, out, goroutines)
}

// stoppedEverything checks that no agent outlived the command: every
// address the demo printed refuses connections, no control socket is
// left, and the goroutines are back to what they were.
func stoppedEverything(t *testing.T, out string, goroutines int) {
	t.Helper()
	addrs := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)/healthz`).FindAllStringSubmatch(out, -1)
	if len(addrs) == 0 {
		t.Fatal("the output names no agent address")
	}
	// Dialing the address would not tell: other test processes on the
	// machine may bind the freed port, and a dial to a port nobody holds
	// can connect to itself. The kernel's socket table, matched against
	// this process's own descriptors, does tell.
	held, err := listeningPorts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range addrs {
		_, port, _ := net.SplitHostPort(m[1])
		if held[port] {
			t.Errorf("%s: this process still listens there", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`--control-socket (\S+)`).FindAllStringSubmatch(out, -1) {
		if _, err := os.Stat(m[1]); err == nil {
			t.Errorf("the control socket %s is still there", m[1])
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(goroutineStacks()) > goroutines && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := goroutineStacks(); len(left) > goroutines {
		t.Errorf("%d goroutines left running, %d before the demo:\n%s", len(left), goroutines, strings.Join(left, "\n\n"))
	}
}

// listeningPorts returns the TCP ports this process listens on, read from
// the kernel's socket tables and this process's file descriptors.
func listeningPorts() (map[string]bool, error) {
	mine := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	for _, fd := range fds {
		if link, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(link, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	ports := map[string]bool{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "0A" || !mine[f[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			p, err := strconv.ParseUint(hexPort, 16, 16)
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", table, line, err)
			}
			ports[strconv.FormatUint(p, 10)] = true
		}
	}
	return ports, nil
}

// goroutineStacks lists the running goroutines' stacks, but for those
// that are not the demo's: the one os/signal starts for good at the first
// signal.Notify, and the runtime's own cleanup and finalizer goroutines,
// which the stack dump shows while they run a cleanup (a busy machine
// catches them at it).
func goroutineStacks() []string {
	buf := make([]byte, 4<<20)
	var out []string
	for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if !strings.Contains(g, "os/signal.loop") && !strings.Contains(g, "runtime.runCleanups") && !strings.Contains(g, "runtime.runfinq") {
			out = append(out, g)
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe to read while the command writes.
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

// TestDemoInterrupted: Ctrl-C in the middle of the rollout stops every
// agent, exits 0 within a few seconds and removes the temporary folder.
func TestDemoInterrupted(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	goroutines := len(goroutineStacks())
	var out, errs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"demo", "--agents", "4", "--hold"}, strings.NewReader(""), &out, &errs, func(string) string { return "" })
	}()
	waitFor(t, time.Minute, "the rollout starts", func() error {
		if !strings.Contains(out.String(), "stage 1 (ring canary) open") {
			return fmt.Errorf("output so far:\n%s", out.String())
		}
		return nil
	})
	// --hold keeps the demo waiting for this signal however fast the
	// story runs, so it never reaches a process that stopped listening.
	select {
	case code := <-done:
		t.Fatalf("the demo ended by itself with --hold: exit %d\n%s%s", code, out.String(), errs.String())
	default:
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case code := <-done:
		t.Logf("returned %s after the interrupt\n%s", time.Since(start).Round(time.Millisecond), out.String())
		if code != 0 || errs.String() != "" {
			t.Fatalf("exit %d, stderr %q", code, errs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15s after the interrupt:\n%s", out.String())
	}
	for _, w := range []string{"splicefleet rollout status demo-good --control-socket ", "splicefleet fleet status --control-socket ",
		"interrupted", "stopping 4 agents", "stopped in", "removed " + tmp} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("the output lacks %q", w)
		}
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("left behind in the temporary folder: %v", entries)
	}
	stoppedEverything(t, out.String(), goroutines)
}

func TestDemoRefusesBadFlags(t *testing.T) {
	c := newCLI(t)
	if code, _, errs := c.run("demo", "--agents", "2"); code != exitError || !strings.Contains(errs, "--agents 2: between 3 and 100") {
		t.Errorf("--agents 2: exit %d: %s", code, errs)
	}
	full := c.path("full")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	c.write("full/file", []byte("x"))
	if code, _, errs := c.run("demo", "--dir", full); code != exitError || !strings.Contains(errs, "is not empty") {
		t.Errorf("a non-empty --dir: exit %d: %s", code, errs)
	}
}

// TestListeningPorts keeps the check above honest: a listener this process
// opens is seen, and gone once closed.
func TestListeningPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if held, err := listeningPorts(); err != nil || !held[port] {
		t.Fatalf("listening on %s, not seen: %v %v", port, held, err)
	}
	_ = ln.Close()
	if held, err := listeningPorts(); err != nil || held[port] {
		t.Fatalf("closed %s, still seen: %v %v", port, held, err)
	}
}
