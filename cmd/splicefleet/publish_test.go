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

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/rollout"
)

// recordingAgent is a control socket that records every request and
// answers as an agent that accepts everything.
type recordingAgent struct {
	socket string
	mu     sync.Mutex
	paths  []string
}

func newRecordingAgent(t *testing.T) *recordingAgent {
	t.Helper()
	dir, err := os.MkdirTemp("", "sfctl") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	r := &recordingAgent{socket: filepath.Join(dir, "control.sock")}
	ln, err := net.Listen("unix", r.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.paths = append(r.paths, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch req.URL.Path {
		case "/v1/publish":
			_ = json.NewEncoder(w).Encode(agent.PublishResult{ID: "cve-2026-0001", Version: 2, ManifestDigest: strings.Repeat("0", 64)})
		default:
			_ = json.NewEncoder(w).Encode(rollout.Status{ID: "fix", Digest: strings.Repeat("1", 64), State: rollout.Running, Why: "stage 1 open"})
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

func (r *recordingAgent) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.paths...)
}

// TestPublishRefusesBadPlanBeforeSending: publish --plan checks the plan
// before it sends anything. A gate that is not a finite number (YAML
// .nan, .inf, -.inf), out of range, or a plan for another bundle exits 1
// with a message naming the field, and the agent received nothing: not
// the plan, and not the bundle either.
func TestPublishRefusesBadPlanBeforeSending(t *testing.T) {
	c := newCLI(t)
	bundle := c.publish(1, 1)
	var in inspection
	if err := json.Unmarshal([]byte(c.ok("inspect", "--json", bundle)), &in); err != nil {
		t.Fatal(err)
	}
	key := c.path("keya.sec.asc")
	head := "id: fix\nbundle: " + in.ManifestDigest + "\n"
	ag := newRecordingAgent(t)
	for _, tt := range []struct{ name, plan, want string }{
		{"min_healthy nan", head + "stages: [{percent: 100}]\ngates: {min_healthy: .nan}\n", "gates.min_healthy NaN must be a finite number"},
		{"max_failure_ratio nan", head + "stages: [{percent: 100}]\ngates: {max_failure_ratio: .NaN}\n", "gates.max_failure_ratio NaN must be a finite number"},
		{"max_failure_ratio inf", head + "stages: [{percent: 100}]\ngates: {max_failures: -1, max_failure_ratio: .inf}\n", "gates.max_failure_ratio +Inf"},
		{"min_healthy -inf", head + "stages: [{percent: 100}]\ngates: {min_healthy: -.inf}\n", "gates.min_healthy -Inf"},
		{"percent nan", head + "stages: [{ring: canary}, {percent: .nan}]\n", "stage 2: percent NaN must be a finite number"},
		{"health_window inf", head + "stages: [{percent: 100}]\ngates: {health_window: .inf}\n", "gates.health_window: cannot unmarshal"},
		{"soak out of range", head + "stages: [{percent: 10, soak: 1000h}, {percent: 100}]\n", "stage 1: soak must be between 0 and 720h"},
		{"another bundle", "id: fix\nbundle: " + strings.Repeat("ab", 32) + "\nstages: [{percent: 100}]\n", "names bundle abab"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan := c.write("plan.yaml", []byte(tt.plan))
			code, out, errs := c.run("publish", "--control-socket", ag.socket, "--plan", plan, "--key", key, bundle)
			if code != 1 || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 naming %q", code, out, errs, tt.want)
			}
			if got := ag.requests(); len(got) != 0 {
				t.Errorf("the agent received %v; a refused plan sends nothing", got)
			}
		})
	}
	// The same command with a good plan reaches the agent: bundle first,
	// then the plan.
	plan := c.write("plan.yaml", []byte(head+"stages: [{percent: 100}]\ngates: {min_healthy: 0.5, max_failure_ratio: 0.1}\n"))
	c.ok("publish", "--control-socket", ag.socket, "--plan", plan, "--key", key, bundle)
	if got := strings.Join(ag.requests(), ", "); got != "POST /v1/publish, POST /v1/rollouts" {
		t.Errorf("a good plan sent %q", got)
	}
}
