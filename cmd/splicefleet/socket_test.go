package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/agent"
)

// TestCLIFindsTheAgent: a client command finds the agent without
// --control-socket: $SPLICEFLEET_CONTROL_SOCKET first, then the
// control_socket of the configuration (--config, else
// /etc/splicefleet/agent.yaml when it exists), then the default; the
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
