package main

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/agent"
)

// TestCLIFindsTheAgent: a client command finds the agent without
// --control-socket: $SPLICEFLEET_CONTROL_SOCKET first, then the
// control_socket of the configuration (--config, else $SPLICEFLEET_CONFIG,
// else /etc/splicefleet/agent.yaml when it exists), then the default; the
// flag wins over all of them.
func TestCLIFindsTheAgent(t *testing.T) {
	c := newCLI(t)
	agentAt := func() (string, *atomic.Int32) {
		var n atomic.Int32
		return fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			_, _ = w.Write([]byte("[]"))
		}), &n
	}
	fromEnv, envHits := agentAt()
	fromConfig, configHits := agentAt()
	fromFlag, flagHits := agentAt()
	config := c.write("agent.yaml", []byte("node_name: web-1\ncontrol_socket: "+fromConfig+"\n"))
	hits := func() [3]int32 { return [3]int32{envHits.Load(), configHits.Load(), flagHits.Load()} }

	c.ok("members", "--config", config)
	if got := hits(); got != [3]int32{0, 1, 0} {
		t.Errorf("--config: requests %v, want the configuration's socket", got)
	}
	c.env[socketEnv] = fromEnv
	c.ok("members", "--config", config)
	c.ok("rollout", "list")
	if got := hits(); got != [3]int32{2, 1, 0} {
		t.Errorf("$%s: requests %v, want the environment's socket", socketEnv, got)
	}
	c.ok("members", "--config", config, "--control-socket", fromFlag)
	if got := hits(); got != [3]int32{2, 1, 1} {
		t.Errorf("--control-socket: requests %v, want the flag's socket", got)
	}
	delete(c.env, socketEnv)
	// $SPLICEFLEET_CONFIG names the configuration when --config does not.
	c.env[configEnv] = config
	c.ok("members")
	if got := hits(); got != [3]int32{2, 2, 1} {
		t.Errorf("$%s: requests %v, want its configuration's socket", configEnv, got)
	}
	c.env[configEnv] = c.path("missing.yaml")
	if code, _, errs := c.run("members"); code != 2 || !strings.Contains(errs, "find the agent's control socket: open "+c.path("missing.yaml")) {
		t.Errorf("$%s naming no file: exit %d\n%s", configEnv, code, errs)
	}
	delete(c.env, configEnv)
	code, out, errs := c.run("members", "--config", c.path("missing.yaml"))
	if code != 2 || !strings.Contains(errs, "find the agent's control socket: open "+c.path("missing.yaml")) {
		t.Errorf("--config naming no file: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = c.run("members", "--config", c.write("bad.yaml", []byte("control_sockt: /x\n")))
	if code != 2 || !strings.Contains(errs, "field control_sockt not found") {
		t.Errorf("--config with a typo: exit %d\n%s%s", code, out, errs)
	}

	// The installed configuration when it exists, else the default.
	e := &env{getenv: func(string) string { return "" }, now: time.Now}
	if s, err := findSocket(e, false, "", "", config); err != nil || s != fromConfig {
		t.Errorf("with the installed configuration: %q, %v", s, err)
	}
	if s, err := findSocket(e, false, "", "", filepath.Join(c.dir, "none.yaml")); err != nil || s != agent.DefaultConfig().ControlSocket {
		t.Errorf("without a configuration: %q, %v", s, err)
	}
	if s, err := findSocket(e, false, "", "", c.write("empty.yaml", []byte("# defaults\n"))); err != nil || s != agent.DefaultConfig().ControlSocket {
		t.Errorf("with a configuration naming no socket: %q, %v", s, err)
	}
}

// TestMembersFilterAndForceLeave: members shows the operators' tags and
// keeps only the statuses and tags asked for (like serf members); a bad
// filter is a usage error. force-leave says what it did, and a refusal
// (a member that is alive) exits 1.
func TestMembersFilterAndForceLeave(t *testing.T) {
	c := newCLI(t)
	members := `[{"name":"web-1","addr":"10.0.0.1:7946","status":"alive","tags":{"ring":"canary","role":"web","sf.v":"1.0"}},
{"name":"web-2","addr":"10.0.0.2:7946","status":"alive","tags":{"role":"web"}},
{"name":"web-3","addr":"10.0.0.3:7946","status":"failed","tags":{"ring":"canary"}},
{"name":"db-1","addr":"10.0.0.4:7946","status":"left","tags":{}}]`
	var forced []string
	socket := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/members":
			_, _ = w.Write([]byte(members))
		case "/v1/members/web-3/force-leave":
			forced = append(forced, "web-3")
			_, _ = w.Write([]byte(`{"node":"web-3","was":"failed"}`))
		default:
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"error":"member is not failed: web-1 is alive; force-leave is for a failed host","reason":"not_failed"}`))
		}
	})
	names := func(out string) string {
		var n []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			n = append(n, strings.Fields(l)[0])
		}
		return strings.Join(n, " ")
	}
	out := c.ok("members", "--control-socket", socket)
	if names(out) != "db-1 web-1 web-2 web-3" || !regexp.MustCompile(`(?m)^web-1\s+10\.0\.0\.1:7946\s+alive\s+ring=canary,role=web$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^db-1\s+\S+\s+left\s+-$`).MatchString(out) {
		t.Errorf("members:\n%s", out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--status", "alive", "--tag", "ring=canary"}, "web-1"},
		{[]string{"--tag", "ring=canary"}, "web-1 web-3"},
		{[]string{"--status", "failed,left"}, "db-1 web-3"},
		{[]string{"--status", "alive", "--status", "left", "--tag", "role=web"}, "web-1 web-2"},
		{[]string{"--tag", "ring=prod"}, ""},
	} {
		if got := names(c.ok(append([]string{"members", "--control-socket", socket}, tt.args...)...)); got != tt.want {
			t.Errorf("members %s: %q, want %q", strings.Join(tt.args, " "), got, tt.want)
		}
	}
	for _, args := range [][]string{{"--status", "dead"}, {"--tag", "ring"}} {
		if code, out, errs := c.run(append([]string{"members", "--control-socket", socket}, args...)...); code != 2 || !strings.Contains(errs, args[0]) {
			t.Errorf("members %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
	}

	if out := c.ok("force-leave", "web-3", "--control-socket", socket); !strings.Contains(out, "web-3 (failed) is now left across the cluster") || len(forced) != 1 {
		t.Errorf("force-leave: %s (%v)", out, forced)
	}
	if code, out, errs := c.run("force-leave", "web-1", "--control-socket", socket); code != 1 || !strings.Contains(errs, "web-1 is alive") {
		t.Errorf("force-leave of an alive member: exit %d\n%s%s", code, out, errs)
	}
}
