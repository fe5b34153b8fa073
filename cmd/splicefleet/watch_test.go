package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/splicefleet/splicefleet/rollout"
)

// fakeAgent serves a control socket with handler.
func fakeAgent(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sfctl") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "control.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return socket
}

// rolloutScript is an agent whose rollout "fix" goes through states, one
// per request; the last one stays.
func rolloutScript(t *testing.T, states ...rollout.Status) string {
	var mu sync.Mutex
	n := 0
	return fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/rollouts/fix" {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "no rollout " + r.URL.Path})
			return
		}
		mu.Lock()
		st := states[min(n, len(states)-1)]
		n++
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(st)
	})
}

func status(state string, open int, why string) rollout.Status {
	return rollout.Status{ID: "fix", Digest: strings.Repeat("1", 64), Bundle: strings.Repeat("2", 64), State: state, Open: open, Why: why,
		Stages: []rollout.StageStatus{{Name: "34%", Open: true, Cohort: 1}, {Name: "100%", Open: open >= 1, Cohort: 3}}}
}

// TestRolloutStatusWatch: rollout status --watch follows a rollout
// through its changes and exits by how it ended, so a pipeline can wait
// on it: 0 done, 1 halted, rolled back, revoked or expired, 3 when
// --timeout passed first, 2 for usage errors. Without --watch the exit
// status says the same of the state now.
func TestRolloutStatusWatch(t *testing.T) {
	c := newCLI(t)
	running := status(rollout.Running, 0, "stage 1 open, soaking")
	stage2 := status(rollout.Running, 1, "stage 2 open")
	watch := func(socket string, more ...string) (int, string, string) {
		return c.run(append([]string{"rollout", "status", "fix", "--watch", "--interval", "20ms", "--control-socket", socket}, more...)...)
	}

	code, out, errs := watch(rolloutScript(t, running, running, stage2, stage2, status(rollout.Done, 1, "every stage passed")))
	if code != 0 || strings.Count(out, "rollout fix (plan ") != 3 || !strings.Contains(out, "why:     stage 2 open") || !strings.Contains(out, "state:   done") {
		t.Errorf("watch to done: exit %d; want 0 and three changes shown\n%s%s", code, out, errs)
	}
	for _, end := range []string{rollout.Halted, rollout.RolledBack, rollout.Revoked, rollout.Expired} {
		code, out, errs = watch(rolloutScript(t, running, stage2, status(end, 1, end+": web-3 failed: health check")))
		if code != 1 || !strings.Contains(errs, "rollout fix is "+end+": "+end+": web-3 failed: health check") || !strings.Contains(out, "state:   "+end) {
			t.Errorf("watch to %s: exit %d; want 1 and why\n%s%s", end, code, out, errs)
		}
	}
	code, out, errs = watch(rolloutScript(t, running), "--timeout", "300ms")
	if code != 3 || !strings.Contains(errs, "rollout fix is still running after 300ms: stage 1 open, soaking") || strings.Count(out, "rollout fix (plan ") != 1 {
		t.Errorf("watch past --timeout: exit %d; want 3, shown once\n%s%s", code, out, errs)
	}
	// JSON lines, one per change.
	code, out, _ = watch(rolloutScript(t, running, stage2, status(rollout.Done, 1, "done")), "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last rollout.Status
	if code != 0 || len(lines) != 3 || json.Unmarshal([]byte(lines[2]), &last) != nil || last.State != rollout.Done {
		t.Errorf("watch --json: exit %d, %d lines\n%s", code, len(lines), out)
	}

	// Usage errors exit 2; an unknown rollout too.
	socket := rolloutScript(t, running)
	for _, args := range [][]string{
		{"rollout", "status", "fix", "--watch", "--timeout", "0", "--control-socket", socket},
		{"rollout", "status", "fix", "--watch", "--timeout", "soon", "--control-socket", socket},
		{"rollout", "status", "--watch", "--control-socket", socket},
		{"rollout", "status", "other", "--watch", "--control-socket", socket},
	} {
		if code, out, errs := c.run(args...); code != 2 {
			t.Errorf("%s: exit %d; want 2\n%s%s", strings.Join(args, " "), code, out, errs)
		}
	}

	// Without --watch: the state now.
	for state, want := range map[string]int{rollout.Running: 0, rollout.Paused: 0, rollout.Done: 0, rollout.Halted: 1, rollout.RolledBack: 1, rollout.Revoked: 1} {
		for _, asJSON := range []string{"--json=false", "--json"} {
			code, out, errs := c.run("rollout", "status", "fix", asJSON, "--control-socket", rolloutScript(t, status(state, 1, "why not")))
			if code != want || !strings.Contains(out, state) {
				t.Errorf("status %s of a %s rollout: exit %d, want %d\n%s%s", asJSON, state, code, want, out, errs)
			}
		}
	}
}

// TestPromoteWhilePausedSaysWhen: promote of a paused rollout is taken,
// and says that it takes effect at resume (exit 0).
func TestPromoteWhilePausedSaysWhen(t *testing.T) {
	c := newCLI(t)
	c.publish(1, 0)
	paused := status(rollout.Paused, 0, "paused by operator (seq 1)")
	socket := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(paused)
	})
	code, out, errs := c.run("rollout", "promote", "fix", "--key", c.path("keya.sec.asc"), "--control-socket", socket)
	if code != 0 || !strings.Contains(out, "promote fix (seq 1)") || !strings.Contains(out, "note: the rollout is paused: the promote takes effect at resume") {
		t.Errorf("promote of a paused rollout: exit %d\n%s%s", code, out, errs)
	}
	running := status(rollout.Running, 0, "stage 1 open")
	socket = fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(running)
	})
	if out := c.ok("rollout", "promote", "fix", "--key", c.path("keya.sec.asc"), "--control-socket", socket); strings.Contains(out, "note:") {
		t.Errorf("promote of a running rollout notes: %s", out)
	}
}
