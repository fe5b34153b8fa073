package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/rollout"
)

// floodConn is one of the attacker's connections.
type floodConn struct {
	c      net.Conn
	closed chan struct{} // closed when the agent closed the connection
}

// flood opens n connections to addr from src. Idle ones send a whole
// request, read the answer and then say nothing more (keep-alive); slow
// ones send half a request header and stall. A goroutine per connection
// notices when the agent closes it.
func flood(t *testing.T, src, addr string, n int, slow bool) []*floodConn {
	t.Helper()
	var mu sync.Mutex
	var conns []*floodConn
	var ready sync.WaitGroup // connected, and the request sent
	for range n {
		ready.Add(1)
		go func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 20 * time.Second}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				ready.Done()
				return // refused while connecting: closed at once
			}
			fc := &floodConn{c: c, closed: make(chan struct{})}
			mu.Lock()
			conns = append(conns, fc)
			mu.Unlock()
			r := bufio.NewReader(c)
			if slow {
				_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHo")
			} else if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n"); err == nil {
				if resp, err := http.ReadResponse(r, nil); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			ready.Done()
			_, _ = io.Copy(io.Discard, r) // until the agent closes it
			close(fc.closed)
		}()
	}
	ready.Wait()
	t.Cleanup(func() {
		for _, fc := range conns {
			_ = fc.c.Close()
		}
	})
	return conns
}

// TestAgentKeepsAnsweringUnderAConnectionFlood runs the agent as a
// process limited to 400 open files and floods its TCP port with 3000
// connections: 1500 idle keep-alive ones from one address and 1500 that
// send half a header and stall from another. The agent keeps answering
// /healthz and its control socket, applies a patch through a rollout
// meanwhile, never runs out of descriptors, and closes every flood
// connection (refused at once, closed to make room, or at the idle or
// header timeout).
func TestAgentKeepsAnsweringUnderAConnectionFlood(t *testing.T) {
	c := newCLI(t)
	bundle := c.publish(1, 1)
	keyFile := c.write("gossip.keys", []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))+"\n"))
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{name: "host-0", dir: c.path("host-0"), out: &syncBuffer{}}
	p.socket = filepath.Join(p.dir, "ctl.sock")
	httpAddr := freeAddr(t)
	p.config = c.write("host-0.yaml", []byte(fmt.Sprintf(`node_name: host-0
bind: %s
http: %s
gossip_key_file: %s
keyring: %s
state_dir: %s
kernel: sim:%s
unsafe_simulated_kernel: true
control_socket: %s
http_idle_timeout: 3s
`, freeAddr(t), httpAddr, keyFile, c.path("trusted.asc"), filepath.Join(p.dir, "state"), filepath.Join(p.dir, "kernel"), p.socket)))
	// The shell lowers the limit, soft and hard, and becomes the agent.
	p.cmd = exec.Command("/bin/sh", "-c", `ulimit -n 400 && exec "$0" "$@"`, os.Args[0], "agent", "--config", p.config)
	p.cmd.Env = append(os.Environ(), "SPLICEFLEET_TEST_AS_CLI=1")
	var logMu sync.Mutex
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{&logMu, p.out}, lockedWriter{&logMu, p.out}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
	log := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return p.out.String()
	}
	waitFor(t, 60*time.Second, "the agent answers", func() error {
		_, err := c.fleetStatus(p.socket)
		return err
	})
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`Max open files +400 +400`).Match(limits) {
		t.Fatalf("the agent's limits:\n%s", limits)
	}

	idle := flood(t, "127.0.0.2", httpAddr, 1500, false)
	slow := flood(t, "127.0.0.3", httpAddr, 1500, true)
	t.Logf("flood: %d idle and %d slow connections opened", len(idle), len(slow))

	healthz := func() error {
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if strings.TrimSpace(string(body)) != "ok" {
			return fmt.Errorf("healthz: %s %q", resp.Status, body)
		}
		return nil
	}
	if err := healthz(); err != nil {
		t.Errorf("healthz during the flood: %v", err)
	}
	if code, out, errs := c.run("members", "--control-socket", p.socket); code != 0 || !strings.Contains(out, " alive") {
		t.Errorf("members during the flood: %s%s", out, errs)
	}
	var in inspection
	if err := json.Unmarshal([]byte(c.ok("inspect", "--json", bundle)), &in); err != nil {
		t.Fatal(err)
	}
	plan := c.write("plan.yaml", []byte("id: fix\nbundle: "+in.ManifestDigest+"\nstages:\n  - percent: 100\ngates:\n  health_window: 200ms\nallow_simulated: true\n"))
	c.ok("publish", "--control-socket", p.socket, "--plan", plan, "--key", c.path("keya.sec.asc"), bundle)
	waitFor(t, 60*time.Second, "the patch applied during the flood", func() error {
		st, err := c.rolloutStatus(p.socket, "fix")
		if err != nil {
			return err
		}
		if st.State != rollout.Done || !simPatched(t, p, "livepatch_fix") {
			return fmt.Errorf("%s: %s", st.State, st.Why)
		}
		return nil
	})
	if err := healthz(); err != nil {
		t.Errorf("healthz after the apply: %v", err)
	}

	// Every flood connection is closed by the agent: the idle ones after
	// http_idle_timeout (3s), the stalled ones after the 10s header
	// timeout, the others at once.
	deadline := time.After(60 * time.Second)
	for _, fc := range append(idle, slow...) {
		select {
		case <-fc.closed:
		case <-deadline:
			t.Fatal("flood connections still open after 60s")
		}
	}
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, reason := range []string{"source_limit", "evicted"} {
		m := regexp.MustCompile(`splicefleet_connections_refused_total\{listener="http",reason="` + reason + `"\} (\d+)`).FindSubmatch(metrics)
		if m == nil {
			t.Errorf("no count of connections closed for %s", reason)
		} else if n, _ := strconv.Atoi(string(m[1])); n == 0 {
			t.Errorf("no connection closed for %s", reason)
		}
	}
	if strings.Contains(log(), "too many open files") || strings.Contains(log(), "out of file descriptors") {
		t.Errorf("the agent ran out of descriptors:\n%s", log())
	}
}

// lockedWriter serialises the writes of a child's stdout and stderr.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
