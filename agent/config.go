package agent

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/splicefleet/splicefleet/gossip"
)

// Config is the agent's configuration. A file sets it (strictly: an
// unknown key is an error), flags override the file, and every field has a
// documented default (DefaultConfig).
type Config struct {
	// NodeName names this host in the cluster (default: the hostname).
	NodeName string `yaml:"node_name"`
	// Bind is the gossip address and port (default 0.0.0.0:7946).
	Bind string `yaml:"bind"`
	// Advertise is the address peers reach this node at, when it differs
	// from Bind (NAT, 0.0.0.0 binds).
	Advertise string `yaml:"advertise"`
	// Join lists peers to join at start; joining is retried with backoff.
	Join []string `yaml:"join"`
	// GossipKeyFile holds the gossip encryption keys, base64, one per
	// line, the first being the primary (mode 0600; default
	// /etc/splicefleet/gossip.keys). Required unless
	// UnsafeNoGossipEncryption is set.
	GossipKeyFile string `yaml:"gossip_key_file"`
	// UnsafeNoGossipEncryption runs the cluster unencrypted: anyone who can
	// reach the gossip port can join and forge announcements (bundles are
	// still verified). For tests only.
	UnsafeNoGossipEncryption bool `yaml:"unsafe_no_gossip_encryption"`
	// Keyring is the trusted publishers' public keys, armored or binary
	// (default /etc/splicefleet/trusted.asc).
	Keyring string `yaml:"keyring"`
	// Threshold is how many distinct trusted keys must sign (default 1).
	Threshold int `yaml:"threshold"`
	// StateDir holds the journal, the store and the lock (default
	// /var/lib/splicefleet).
	StateDir string `yaml:"state_dir"`
	// Kernel is "linux" or "sim:DIR" (default linux). With linux the
	// agent must hold CAP_SYS_MODULE. sim:DIR is the simulated kernel, a
	// test double whose state lives in DIR, and needs
	// UnsafeSimulatedKernel.
	Kernel string `yaml:"kernel"`
	// UnsafeSimulatedKernel allows kernel: sim:DIR. Such a host patches
	// nothing real; it says so in its tags and logs, at WARN, at every
	// start, and takes part only in rollouts whose plan sets
	// allow_simulated. For tests and demos only.
	UnsafeSimulatedKernel bool `yaml:"unsafe_simulated_kernel"`
	// ControlSocket is the unix socket of the local control API, mode 0600
	// (default /run/splicefleet/control.sock).
	ControlSocket string `yaml:"control_socket"`
	// HTTP is the TCP address of /healthz, /metrics and the blob service
	// peers fetch from (default 0.0.0.0:7947).
	HTTP string `yaml:"http"`
	// HTTPIdleTimeout is how long a keep-alive connection to HTTP may
	// stay idle between requests before the agent closes it, at most 1h
	// (default 1m0s).
	HTTPIdleTimeout time.Duration `yaml:"http_idle_timeout"`
	// HTTPMaxConnections caps the connections open to HTTP at once
	// (default 1024); the agent lowers it to fit its limit of open files,
	// to half of what is left after 160 descriptors it keeps for itself.
	// At the cap a new connection takes the place of the one idle
	// longest; when none is idle, it is closed as soon as it is accepted.
	HTTPMaxConnections int `yaml:"http_max_connections"`
	// HTTPMaxConnectionsPerSource caps the connections open to HTTP from
	// one IPv4 address or one IPv6 /64, at most HTTPMaxConnections
	// (default 64). A peer keeps a few; raise it when many agents reach
	// this one from behind one address (NAT).
	HTTPMaxConnectionsPerSource int `yaml:"http_max_connections_per_source"`
	// Tags are user tags gossiped with this node (role, ring, ...).
	Tags map[string]string `yaml:"tags"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `yaml:"log_level"`
	// LogFormat is text (logfmt, key=value, the default) or json (one
	// object per line, for a log shipper).
	LogFormat string `yaml:"log_format"`
	// AntiEntropy is how often the agent asks a random peer for the
	// bundles, plans and commands it holds (default 30s).
	AntiEntropy time.Duration `yaml:"anti_entropy"`
	// BundleRetention is how long the agent keeps the copy it serves to
	// peers of a bundle no live rollout needs (default 168h0m0s), a week;
	// at least 1m. It counts from the halt of a rollout that halted or
	// was revoked, from the expiry of a plan or bundle that expired, and
	// from its arrival for a bundle published without a plan. A bundle a
	// running, paused or done rollout rolls out is kept (hosts that join
	// later apply a done rollout from these copies). Only the copy for
	// distribution goes: a patch the host applied stays applied, and its
	// own copy for re-apply at boot stays. `splicefleet forget` drops one
	// now.
	BundleRetention time.Duration `yaml:"bundle_retention"`
	// HealthCommand, when set, runs during a rollout's health window after
	// every apply (argv, no shell), at each health check: every second,
	// or every fifth of the window when that is shorter, until the window
	// ends. A non-zero exit or a timeout fails the host, which undoes the
	// patch and reports the failure.
	HealthCommand []string `yaml:"health_command"`
	// HealthTimeout bounds one run of HealthCommand (default 30s).
	HealthTimeout time.Duration `yaml:"health_timeout"`
	// Protocol is the newest protocol version the agent speaks (default
	// 2), between the oldest and the newest this build speaks, which
	// `splicefleet version` lists. While a fleet upgrades, set it to the oldest version on the new
	// builds, and remove it once every host runs them. Agents announce
	// in the newest version every alive member decodes in any case.
	Protocol int `yaml:"protocol"`
}

// Where the Debian package and the defaults expect the agent's keys.
const (
	DefaultGossipKeyFile = "/etc/splicefleet/gossip.keys"
	DefaultKeyring       = "/etc/splicefleet/trusted.asc"
)

// DefaultBundleRetention is how long a bundle no live rollout needs is
// kept for distribution.
const DefaultBundleRetention = 7 * 24 * time.Hour

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeName:      host,
		Bind:          "0.0.0.0:7946",
		GossipKeyFile: DefaultGossipKeyFile,
		Keyring:       DefaultKeyring,
		Threshold:     1,
		StateDir:      DefaultStateDir,
		Kernel:        "linux",
		ControlSocket: "/run/splicefleet/control.sock",
		HTTP:          "0.0.0.0:7947",
		LogLevel:      "info",
		LogFormat:     "text",
		AntiEntropy:   30 * time.Second,
		// A week: long enough to look at a halted rollout's bundle and
		// for a partitioned host to come back.
		BundleRetention: DefaultBundleRetention,
		HealthTimeout:   30 * time.Second,
		Protocol:        gossip.ProtocolMax,

		HTTPIdleTimeout:             60 * time.Second,
		HTTPMaxConnections:          1024,
		HTTPMaxConnectionsPerSource: 64,
	}
}

// maxConfigSize bounds a configuration file.
const maxConfigSize = 1 << 20

// LoadConfig reads a YAML configuration over the defaults and validates
// it. Unknown keys, several documents and invalid values are errors that
// name the key.
func LoadConfig(r io.Reader) (Config, error) {
	cfg, err := DecodeConfig(r)
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// DecodeConfig reads a YAML configuration over the defaults without
// validating it, for callers that apply flags before Validate.
func DecodeConfig(r io.Reader) (Config, error) {
	cfg := DefaultConfig()
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return cfg, err
	}
	if len(data) > maxConfigSize {
		return cfg, fmt.Errorf("configuration is larger than %d bytes", maxConfigSize)
	}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); errors.Is(err, io.EOF) {
			// Only comments: the defaults, like an empty file.
			return cfg, nil
		} else if err != nil {
			return cfg, fmt.Errorf("configuration: %w", err)
		}
		var extra any
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			return cfg, errors.New("configuration: more than one YAML document")
		}
	}
	return cfg, nil
}

// Validate checks every field.
func (c *Config) Validate() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.NodeName == "" || len(c.NodeName) > 128 || strings.ContainsAny(c.NodeName, " \t\n/") {
		bad("node_name %q: give a name without spaces or slashes, at most 128 bytes", c.NodeName)
	}
	for _, a := range append([]string{c.Bind, c.HTTP}, c.Join...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("address %q: want host:port", a)
		}
	}
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
			bad("advertise %q: want host:port", c.Advertise)
		}
	}
	if c.GossipKeyFile == "" && !c.UnsafeNoGossipEncryption {
		bad("gossip_key_file is required (generate keys with `splicefleet gossip-key generate`)")
	}
	if c.Keyring == "" {
		bad("keyring is required: the trusted publishers' public keys")
	}
	if c.Threshold < 1 {
		bad("threshold %d must be at least 1", c.Threshold)
	}
	if c.StateDir == "" {
		bad("state_dir is required")
	}
	if c.Kernel != "linux" && (!strings.HasPrefix(c.Kernel, "sim:") || len(c.Kernel) == 4) {
		bad("kernel %q: want linux or sim:DIR", c.Kernel)
	} else if c.Kernel != "linux" && !c.UnsafeSimulatedKernel {
		bad("kernel %q is the simulated kernel, a test double that patches nothing: set unsafe_simulated_kernel: true to run it (tests and demos only), or use kernel: linux", c.Kernel)
	}
	if c.ControlSocket == "" {
		bad("control_socket is required")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log_format %q: want text or json", c.LogFormat)
	}
	if c.AntiEntropy < time.Second {
		bad("anti_entropy %s: at least 1s", c.AntiEntropy)
	}
	if c.BundleRetention < time.Minute {
		bad("bundle_retention %s: at least 1m", c.BundleRetention)
	}
	if c.HTTPIdleTimeout <= 0 || c.HTTPIdleTimeout > time.Hour {
		bad("http_idle_timeout %s: between 1ns and 1h", c.HTTPIdleTimeout)
	}
	if c.HTTPMaxConnections < 1 {
		bad("http_max_connections %d: at least 1", c.HTTPMaxConnections)
	}
	if c.HTTPMaxConnectionsPerSource < 1 || c.HTTPMaxConnectionsPerSource > c.HTTPMaxConnections {
		bad("http_max_connections_per_source %d: between 1 and http_max_connections (%d)", c.HTTPMaxConnectionsPerSource, c.HTTPMaxConnections)
	}
	if c.HealthTimeout <= 0 || c.HealthTimeout > time.Hour {
		bad("health_timeout %s: between 1ns and 1h", c.HealthTimeout)
	}
	if c.Protocol < gossip.ProtocolMin || c.Protocol > gossip.ProtocolMax {
		bad("protocol %d: this build speaks %d to %d", c.Protocol, gossip.ProtocolMin, gossip.ProtocolMax)
	}
	if len(c.HealthCommand) > 0 && c.HealthCommand[0] == "" {
		bad("health_command: the program name is empty")
	}
	for k := range c.Tags {
		if strings.HasPrefix(k, "sf.") {
			bad("tag %q: the sf. prefix is reserved for splicefleet's own tags", k)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("configuration: %s", strings.Join(problems, "; "))
	}
	return nil
}

// ReadGossipKeys reads base64 AES keys (16, 24 or 32 bytes), one per line;
// the first is the primary. The file must not be readable by others.
func ReadGossipKeys(path string) ([][]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %04o); chmod 600 it", path, st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: not base64: %w", path, i+1, err)
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("%s line %d: a key of %d bytes; want 16, 24 or 32", path, i+1, n)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no keys", path)
	}
	return keys, nil
}

// LogHandler is the slog handler the configuration asks for, writing to
// w at level.
func (c Config) LogHandler(w io.Writer, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}
