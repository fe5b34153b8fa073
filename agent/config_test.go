package agent

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	cfg, err := LoadConfig(strings.NewReader(`
node_name: web-1
bind: 127.0.0.1:7946
join: [10.0.0.2:7946, 10.0.0.3:7946]
gossip_key_file: /etc/splicefleet/gossip.keys
keyring: /etc/splicefleet/trusted.asc
threshold: 2
kernel: sim:/tmp/k
unsafe_simulated_kernel: true
tags: {role: web, ring: canary}
anti_entropy: 10s
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName != "web-1" || cfg.Threshold != 2 || len(cfg.Join) != 2 || cfg.Tags["ring"] != "canary" ||
		cfg.AntiEntropy != 10*time.Second || cfg.HTTP != "0.0.0.0:7947" || cfg.StateDir != DefaultStateDir {
		t.Fatalf("config %+v", cfg)
	}
}

func TestLoadConfigRefuses(t *testing.T) {
	base := "node_name: a\ngossip_key_file: k\nkeyring: r\n"
	cases := map[string]string{
		"unknown key":        base + "thresold: 2\n",
		"bad address":        base + "bind: nowhere\n",
		"empty keyring":      "node_name: a\ngossip_key_file: k\nkeyring: ''\n",
		"empty gossip key":   "node_name: a\nkeyring: r\ngossip_key_file: ''\n",
		"protocol too new":   base + "protocol: 99\n",
		"zero threshold":     base + "threshold: 0\n",
		"bad kernel":         base + "kernel: windows\n",
		"bad level":          base + "log_level: loud\n",
		"bad log format":     base + "log_format: xml\n",
		"reserved tag":       base + "tags: {sf.state: x}\n",
		"two documents":      base + "---\nnode_name: b\n",
		"wrong type":         base + "threshold: many\n",
		"short anti-entropy": base + "anti_entropy: 1ms\n",
	}
	for name, text := range cases {
		if _, err := LoadConfig(strings.NewReader(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := LoadConfig(strings.NewReader(base + "thresold: 2\n")); err == nil || !strings.Contains(err.Error(), "thresold") {
		t.Errorf("unknown key error does not name it: %v", err)
	}
}

func TestReadGossipKeys(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "keys")
	write := func(s string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("# primary\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\nAAECAwQFBgcICQoLDA0ODw==\n", 0o600)
	keys, err := ReadGossipKeys(p)
	if err != nil || len(keys) != 2 || len(keys[0]) != 32 || len(keys[1]) != 16 {
		t.Fatalf("keys %v %v", keys, err)
	}
	write("AAECAwQFBgcICQoLDA0ODw==\n", 0o644)
	if _, err := ReadGossipKeys(p); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("world-readable keys: %v", err)
	}
	for _, bad := range []string{"", "not base64!\n", "AAEC\n"} {
		write(bad, 0o600)
		if _, err := ReadGossipKeys(p); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestCommentOnlyConfig: a file of nothing but comments (the shipped
// agent.yaml before an operator edits it) means the defaults.
func TestCommentOnlyConfig(t *testing.T) {
	cfg, err := DecodeConfig(strings.NewReader("# node_name: a\n#   and nothing else\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultConfig(); cfg.NodeName != want.NodeName || cfg.Bind != want.Bind || cfg.Protocol != want.Protocol {
		t.Errorf("comment-only file decodes to %+v", cfg)
	}
}

// The simulated kernel patches nothing real: a configuration names it
// only with unsafe_simulated_kernel set, and the refusal says so.
func TestSimulatedKernelNeedsTheUnsafeOptIn(t *testing.T) {
	base := "node_name: a\ngossip_key_file: k\nkeyring: r\nkernel: sim:/tmp/k\n"
	_, err := LoadConfig(strings.NewReader(base))
	if err == nil || !strings.Contains(err.Error(), "set unsafe_simulated_kernel: true") || !strings.Contains(err.Error(), "test double") {
		t.Fatalf("sim kernel without the opt-in: %v", err)
	}
	cfg, err := LoadConfig(strings.NewReader(base + "unsafe_simulated_kernel: true\n"))
	if err != nil || !cfg.UnsafeSimulatedKernel {
		t.Fatalf("sim kernel with the opt-in: %+v %v", cfg, err)
	}
	if _, err := LoadConfig(strings.NewReader("node_name: a\ngossip_key_file: k\nkeyring: r\nunsafe_simulated_kernel: true\n")); err != nil {
		t.Fatalf("the opt-in with kernel: linux: %v", err)
	}
}

// TestLogFormatJSON: log_format: json gives one JSON object a line, with
// the level and the attributes as keys, for a log shipper; the default
// stays key=value text.
func TestLogFormatJSON(t *testing.T) {
	base := "node_name: a\ngossip_key_file: k\nkeyring: r\n"
	for format, want := range map[string]string{"": `level=INFO msg="rollout accepted" rollout=r1`, "log_format: json\n": `{"time":`} {
		cfg, err := LoadConfig(strings.NewReader(base + format))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		slog.New(cfg.LogHandler(&buf, slog.LevelInfo)).Info("rollout accepted", "rollout", "r1")
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log_format %q: %q, want %q", format, buf.String(), want)
		}
		if format != "" {
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line["msg"] != "rollout accepted" || line["rollout"] != "r1" || line["level"] != "INFO" {
				t.Errorf("json line %q: %v, %v", buf.String(), line, err)
			}
		}
	}
}
