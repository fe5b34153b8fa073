package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/signing"
)

// BenchmarkIdleAgent measures one agent, in its own process, idle in a
// 50-node cluster with the default (LAN) gossip timers: its resident
// memory and its share of a core over 20 s. The other 49 agents run in
// this process. Reported as rss-MB and cpu-%.
func BenchmarkIdleAgent(b *testing.B) {
	dir := b.TempDir()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		b.Fatal(err)
	}
	keyFile := filepath.Join(dir, "gossip.keys")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := signing.GenerateSigner("Bench <b@example.com>", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	pub, _ := s.Public().Armored()
	keyring := filepath.Join(dir, "trusted.asc")
	if err := os.WriteFile(keyring, pub, 0o644); err != nil {
		b.Fatal(err)
	}
	cfgFor := func(name string) agent.Config {
		cfg := agent.DefaultConfig()
		cfg.NodeName, cfg.Bind, cfg.HTTP = name, "127.0.0.1:0", "127.0.0.1:0"
		cfg.GossipKeyFile, cfg.Keyring, cfg.LogLevel = keyFile, keyring, "error"
		cfg.StateDir = filepath.Join(dir, name, "state")
		cfg.Kernel = "sim:" + filepath.Join(dir, name, "kernel")
		cfg.UnsafeSimulatedKernel = true
		cfg.ControlSocket = filepath.Join(dir, name, "ctl.sock")
		return cfg
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var agents []*agent.Agent
	var seed string
	for i := range 49 {
		cfg := cfgFor(fmt.Sprintf("peer-%02d", i))
		if seed != "" {
			cfg.Join = []string{seed}
		}
		a, err := agent.New(agent.Options{Config: cfg, Version: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		if seed == "" {
			seed = a.GossipAddr()
		}
		agents = append(agents, a)
		go func() { _ = a.Run(ctx) }()
	}
	cfg := cfgFor("measured")
	conf := fmt.Sprintf("node_name: measured\nbind: 127.0.0.1:%d\nhttp: 127.0.0.1:0\njoin: [%s]\ngossip_key_file: %s\nkeyring: %s\nstate_dir: %s\nkernel: %s\ncontrol_socket: %s\nlog_level: error\n",
		freePort(b), seed, keyFile, keyring, cfg.StateDir, cfg.Kernel, cfg.ControlSocket)
	confPath := filepath.Join(dir, "measured.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "agent", "--config", confPath)
	cmd.Env = append(os.Environ(), "SPLICEFLEET_TEST_AS_CLI=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		alive := 0
		for _, m := range agents[0].Members() {
			if m.Status == "alive" {
				alive++
			}
		}
		if alive == 50 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("cluster of 50 did not form: %d alive\n%s", alive, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(10 * time.Second) // settle
	b.ResetTimer()
	for b.Loop() {
		t0, c0 := time.Now(), cpuTicks(b, cmd.Process.Pid)
		time.Sleep(20 * time.Second)
		t1, c1 := time.Now(), cpuTicks(b, cmd.Process.Pid)
		const hz = 100 // USER_HZ
		cpu := float64(c1-c0) / hz / t1.Sub(t0).Seconds() * 100
		b.ReportMetric(cpu, "cpu-%")
		b.ReportMetric(rssMB(b, cmd.Process.Pid), "rss-MB")
	}
}

func freePort(b *testing.B) int {
	addr := freeAddrB(b)
	i := strings.LastIndexByte(addr, ':')
	p, _ := strconv.Atoi(addr[i+1:])
	return p
}

func freeAddrB(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// cpuTicks reads a process's user+system time in clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return ut + st
}

// rssMB reads a process's resident set size.
func rssMB(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
