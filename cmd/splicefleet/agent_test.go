package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/internal/testutil"
)

// agentProc is `splicefleet agent` running as a child process (the test
// binary acting as the command, see TestMain).
type agentProc struct {
	name, dir, socket, config string
	cmd                       *exec.Cmd
	out                       *syncBuffer
	bind                      string
}

// freeAddr finds a loopback port free for TCP and for UDP, which serf
// binds both of. It may still be taken before the caller binds it.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return addr
		}
	}
	t.Fatal("no loopback port free for both TCP and UDP")
	return ""
}

// startAgents starts n agents that form one cluster, the first being the
// seed the others join.
func startAgents(t *testing.T, c *cli, n int) []*agentProc {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keyFile := c.path("gossip.keys")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var procs []*agentProc
	seed := ""
	for i := range n {
		p := startAgent(t, c, fmt.Sprintf("host-%d", i), seed, keyFile)
		if seed == "" {
			seed = p.bind
		}
		procs = append(procs, p)
	}
	return procs
}

// startAgent starts one agent and waits until its control socket answers,
// so that every one of its ports is bound. A port that freeAddr found free
// may be taken before the agent binds it (another test's connection, or
// serf's UDP side, which freeAddr does not try): the agent then exits, and
// it is started again on other ports. Any other exit fails the test with
// the agent's output, and so does a failed test, for each agent it ran.
func startAgent(t *testing.T, c *cli, name, seed, keyFile string) *agentProc {
	t.Helper()
	p := &agentProc{name: name, dir: c.path(name)}
	p.socket = filepath.Join(p.dir, "ctl.sock")
	p.config = filepath.Join(c.dir, p.name+".yaml")
	join := ""
	if seed != "" {
		join = "join: [" + seed + "]\n"
	}
	for attempt := 1; ; attempt++ {
		p.bind = freeAddr(t)
		conf := fmt.Sprintf(`node_name: %s
bind: %s
http: %s
%sgossip_key_file: %s
keyring: %s
state_dir: %s
kernel: sim:%s
unsafe_simulated_kernel: true
control_socket: %s
anti_entropy: 1s
log_level: info
tags: {role: web}
`, p.name, p.bind, freeAddr(t), join, keyFile, c.path("trusted.asc"), filepath.Join(p.dir, "state"), filepath.Join(p.dir, "kernel"), p.socket)
		if err := os.WriteFile(p.config, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		out := &syncBuffer{}
		cmd := exec.Command(os.Args[0], "agent", "--config", p.config)
		cmd.Env = append(os.Environ(), "SPLICEFLEET_TEST_AS_CLI=1")
		cmd.Stdout, cmd.Stderr = out, out
		// An agent outlives no test binary, even one that a timeout ends.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p.cmd, p.out = cmd, out
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("%s output (attempt %d):\n%s", name, attempt, lastLines(out.String(), 40))
			}
		})
		exited := false
		waitFor(t, 60*time.Second, name+" answers on its control socket", func() error {
			if exited = processExited(cmd); exited {
				return nil
			}
			if code, _, errs := c.run("members", "--control-socket", p.socket); code != 0 {
				return fmt.Errorf("members: exit %d: %s", code, errs)
			}
			return nil
		})
		if !exited {
			return p
		}
		err := cmd.Wait()
		if attempt >= 5 || !strings.Contains(out.String(), "address already in use") {
			t.Fatalf("%s exited at start (%v):\n%s", name, err, lastLines(out.String(), 40))
		}
		t.Logf("%s: a port was taken before it bound it, starting it again: %s", name, lastLines(out.String(), 1))
	}
}

// processExited says whether a started child has exited (a zombie that
// nobody waited for yet), without reaping it.
func processExited(cmd *exec.Cmd) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return true
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// waitFor retries check until it passes, or fails the test after within,
// stretched by the machine's factor (testutil.Within).
func waitFor(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	testutil.Eventually(t, within, what, check)
}

func (c *cli) fleetStatus(socket string) ([]agent.MemberStatus, error) {
	code, out, errs := c.run("fleet", "status", "--json", "--timeout", "1s", "--control-socket", socket)
	if code != 0 {
		return nil, fmt.Errorf("fleet status: %s", errs)
	}
	var st []agent.MemberStatus
	return st, json.Unmarshal([]byte(out), &st)
}

// TestAgentsAsProcesses runs three agents as separate processes: publish
// at one reaches all; fleet status and members show the cluster; SIGHUP
// reloads tags; SIGTERM leaves gracefully.
func TestAgentsAsProcesses(t *testing.T) {
	c := newCLI(t)
	bundle := c.publish(1, 1)
	procs := startAgents(t, c, 3)
	waitFor(t, 60*time.Second, "three members", func() error {
		code, out, errs := c.run("members", "--control-socket", procs[2].socket)
		if code != 0 {
			return fmt.Errorf("%s", errs)
		}
		if n := strings.Count(out, " alive"); n != 3 {
			return fmt.Errorf("%d alive:\n%s", n, out)
		}
		return nil
	})
	out := c.ok("publish", "--control-socket", procs[0].socket, bundle)
	if !strings.Contains(out, "published cve-2026-0001 version 2 (manifest ") {
		t.Fatalf("publish: %s", out)
	}
	waitFor(t, 60*time.Second, "every host holds the bundle", func() error {
		st, err := c.fleetStatus(procs[2].socket)
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.Held != "1" || s.Status != "alive" || s.Kernel != "6.1.0-56-cloud-amd64" || s.Tags["role"] != "web" ||
				!s.Answered || len(s.Bundles) != 1 || s.Bundles[0] != "cve-2026-0001@2" || !s.Simulated ||
				s.Version != version || s.Revision != currentBuild().Commit || s.GoVersion != runtime.Version() {
				return fmt.Errorf("%+v", s)
			}
		}
		if len(st) != 3 {
			return fmt.Errorf("%d hosts", len(st))
		}
		return nil
	})
	text := c.ok("fleet", "status", "--timeout", "1s", "--control-socket", procs[1].socket)
	if !strings.Contains(text, "HOST") || strings.Count(text, "6.1.0-56-cloud-amd64") != 3 || strings.Count(text, "cve-2026-0001@2") != 3 || strings.Count(text, "(SIMULATED)") != 3 ||
		strings.Count(text, version+" ("+currentBuild().Commit+", "+runtime.Version()+")") != 3 {
		t.Fatalf("fleet status:\n%s", text)
	}

	// A tampered bundle is refused by the agent, exit 1, nothing announced.
	raw := c.read("fix.splice")
	raw[len(raw)/2] ^= 1
	code, _, errs := c.run("publish", "--control-socket", procs[0].socket, c.write("bad.splice", raw))
	if code != exitRefused || !strings.Contains(errs, "bad.splice: ") {
		t.Fatalf("publish tampered: exit %d %s", code, errs)
	}

	// The host's applied stack shows in its tags once they are refreshed
	// (here by the reload below).
	c.ok("apply", "--keyring", c.path("trusted.asc"), "--state-dir", filepath.Join(procs[1].dir, "state"),
		"--kernel", "sim:"+filepath.Join(procs[1].dir, "kernel"), bundle)

	// SIGHUP reloads tags from the file.
	conf, _ := os.ReadFile(procs[1].config)
	if err := os.WriteFile(procs[1].config, bytes.Replace(conf, []byte("role: web"), []byte("role: db"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := procs[1].cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "reloaded tags gossiped", func() error {
		st, err := c.fleetStatus(procs[0].socket)
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.Name == procs[1].name && s.Tags["role"] == "db" && s.Applied == "cve-2026-0001@2" {
				return nil
			}
		}
		return fmt.Errorf("%+v", st)
	})

	// SIGTERM: a graceful leave, seen by the others as "left".
	if err := procs[2].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := procs[2].cmd.Wait(); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v\n%s", err, procs[2].out)
	}
	waitFor(t, 60*time.Second, "leave seen", func() error {
		st, err := c.fleetStatus(procs[0].socket)
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.Name == procs[2].name && s.Status == "left" {
				return nil
			}
		}
		return fmt.Errorf("%+v", st)
	})
}
