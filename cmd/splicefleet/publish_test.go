package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
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
	// The same command with a good plan reaches the agent: the check of
	// both, then the bundle, then the plan.
	plan := c.write("plan.yaml", []byte(head+"stages: [{percent: 100}]\ngates: {min_healthy: 0.5, max_failure_ratio: 0.1}\n"))
	c.ok("publish", "--control-socket", ag.socket, "--plan", plan, "--key", key, bundle)
	if got := strings.Join(ag.requests(), ", "); got != "POST /v1/check, POST /v1/publish, POST /v1/rollouts" {
		t.Errorf("a good plan sent %q", got)
	}
}

// TestPublishChecksEverythingFirst: publish --plan asks the agent to
// check the bundle and the signed plan under its trust policy before it
// sends anything, so a plan signed by a key the fleet does not trust
// leaves the fleet without the bundle too; --dry-run says what would be
// published and to whom and sends nothing; a plan that leaves bundle:
// out is filled in with the digest of the bundle published.
func TestPublishChecksEverythingFirst(t *testing.T) {
	c := newCLI(t)
	bundle := c.publish(1, 1)
	var in inspection
	if err := json.Unmarshal([]byte(c.ok("inspect", "--json", bundle)), &in); err != nil {
		t.Fatal(err)
	}
	procs := startAgents(t, c, 2)
	waitFor(t, 60*time.Second, "two members", func() error {
		_, out, _ := c.run("members", "--control-socket", procs[0].socket)
		if n := strings.Count(out, " alive"); n != 2 {
			return fmt.Errorf("%d alive", n)
		}
		return nil
	})
	held := func() string {
		var all []string
		for _, p := range procs {
			var entries []splice.Entry
			if err := agent.NewControlClient(p.socket).Do("GET", "/v1/bundles", nil, &entries); err != nil {
				t.Fatal(err)
			}
			var sts []rollout.Status
			if err := agent.NewControlClient(p.socket).Do("GET", "/v1/rollouts", nil, &sts); err != nil {
				t.Fatal(err)
			}
			all = append(all, fmt.Sprintf("%s: %d bundles, %d rollouts", p.name, len(entries), len(sts)))
		}
		return strings.Join(all, "; ")
	}
	nothing := held()
	key := c.path("keya.sec.asc")
	// No bundle: line; comments and layout stay as written.
	plan := c.write("plan.yaml", []byte("# the fix, canary first\nid: fix\nstages:\n  - percent: 50\n    soak: 200ms\n  - percent: 100\ngates:\n  health_window: 200ms\nallow_simulated: true\n"))

	c.ok("signing-key", "generate", "--uid", "Stranger <x@example.com>", "--out", c.path("stranger"))
	code, out, errs := c.run("publish", "--control-socket", procs[0].socket, "--plan", plan, "--key", c.path("stranger.sec.asc"), bundle)
	if code != 1 || !strings.Contains(errs, "the agent refused the plan") || !strings.Contains(errs, "not a trusted key") || !strings.Contains(errs, "nothing was sent") {
		t.Errorf("plan signed by an untrusted key: exit %d\n%s%s", code, out, errs)
	}
	if got := held(); got != nothing {
		t.Errorf("after a refused plan: %s; want %s", got, nothing)
	}
	code, out, errs = c.run("publish", "--control-socket", procs[0].socket, "--plan", plan, "--signature", c.write("plan.asc", []byte("junk")), bundle)
	if code != 1 || !strings.Contains(errs, "leaves bundle: out") || !strings.Contains(errs, "add bundle: "+in.ManifestDigest) {
		t.Errorf("plan without bundle:, signed elsewhere: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = c.run("publish", "--control-socket", procs[0].socket, "--key", key, bundle)
	if code != 2 || !strings.Contains(errs, "give --plan too") {
		t.Errorf("--key without --plan: exit %d\n%s%s", code, out, errs)
	}

	out = c.ok("publish", "--control-socket", procs[0].socket, "--plan", plan, "--key", key, "--dry-run", bundle)
	for _, want := range []string{
		"would publish cve-2026-0001 version 2 (manifest " + in.ManifestDigest + ")", "1 trusted signer; new to this agent",
		"would start rollout fix (plan ", "in 2 stages, with the cohorts as this agent sees 2 members now",
		"nothing was sent (--dry-run)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--dry-run lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^2 100%\s+2$`).MatchString(out) {
		t.Errorf("--dry-run shows no cohort of 2 hosts for the last stage:\n%s", out)
	}
	if got := held(); got != nothing {
		t.Errorf("after --dry-run: %s; want %s", got, nothing)
	}

	out = c.ok("publish", "--control-socket", procs[0].socket, "--plan", plan, "--key", key, bundle)
	if !strings.Contains(out, "rollout fix started") {
		t.Fatalf("publish: %s", out)
	}
	st, err := c.rolloutStatus(procs[1].socket, "fix")
	waitFor(t, 60*time.Second, "the rollout reaches the other agent", func() error {
		st, err = c.rolloutStatus(procs[1].socket, "fix")
		return err
	})
	if st.Bundle != in.ManifestDigest {
		t.Errorf("the rollout rolls out %s, want the bundle published %s", st.Bundle, in.ManifestDigest)
	}
	out = c.ok("publish", "--control-socket", procs[0].socket, "--plan", plan, "--key", key, "--dry-run", bundle)
	if !strings.Contains(out, "this agent holds it already") || !strings.Contains(out, "follows plan "+plan+" already: rollout fix is ") {
		t.Errorf("--dry-run of a published plan:\n%s", out)
	}
}
