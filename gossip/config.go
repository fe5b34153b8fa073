package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
)

// Defaults applied by Start to zero fields of Config.
const (
	DefaultBindAddr     = "0.0.0.0"
	DefaultBindPort     = 7946
	DefaultQueryTimeout = 2 * time.Second
	DefaultEventBuffer  = 1024
	// MaxTagsSize is serf's limit on a node's encoded tags (memberlist's
	// node metadata limit).
	MaxTagsSize = memberlist.MetaMaxSize
)

// ErrTagsTooLarge reports tags whose encoding exceeds MaxTagsSize.
var ErrTagsTooLarge = errors.New("tags too large")

// ErrNotAlive refuses a change of tags once the node is leaving, left or
// shut down.
var ErrNotAlive = errors.New("the node is no longer an alive member")

// Config configures a Node. Only NodeName and either Keys or
// UnsafeNoEncryption are required; Start fills the rest with defaults.
type Config struct {
	// NodeName must be unique in the cluster.
	NodeName string
	// BindAddr and BindPort are where gossip listens (TCP and UDP).
	// Defaults 0.0.0.0:7946; port 0 picks a free port (see Node.Addr).
	BindAddr string
	BindPort int
	// AdvertiseAddr and AdvertisePort are what other members dial; empty
	// and zero mean the bound address.
	AdvertiseAddr string
	AdvertisePort int
	// Network, for tests and benchmarks only, puts the node on an
	// in-memory network instead of UDP and TCP sockets (BindAddr,
	// BindPort and the advertised address are then ignored; the network
	// assigns an address). The protocol is unchanged; see MemNetwork.
	Network *MemNetwork
	// Keys are the gossip encryption keys (AES, 16, 24 or 32 bytes);
	// Keys[0] is the primary key that encrypts outgoing traffic, all
	// keys decrypt. A node without a matching key cannot join.
	Keys [][]byte
	// UnsafeNoEncryption allows an empty Keys: gossip then travels in
	// clear text and anyone who can reach the port can join.
	UnsafeNoEncryption bool
	// Tags are the node's metadata, at most MaxTagsSize bytes encoded.
	Tags map[string]string
	// Tuning sets the gossip and failure-detection timers; the zero
	// value means DefaultTuning().
	Tuning Tuning
	// QueryTimeout is how long queries, including keyring operations,
	// stay open; default DefaultQueryTimeout.
	QueryTimeout time.Duration
	// EventBuffer bounds the channel returned by Node.Events; events
	// that do not fit are dropped and counted. Default DefaultEventBuffer.
	EventBuffer int
	// UserEvents names the user events, beside announcements, that the
	// node delivers on Events as kind UserEvent; others are counted in
	// Stats.OtherUserEvents and dropped.
	UserEvents []string
	// SnapshotPath, if set, is where serf keeps its snapshot of members
	// and clocks, so a restarted node rejoins its peers on its own and
	// does not replay events it has already delivered. After a graceful
	// Leave the snapshot records it and the node does not rejoin on its
	// own at the next start; Join it explicitly.
	SnapshotPath string
	// Logger receives the node's logs and serf's and memberlist's (with a
	// "library" attribute); nil discards them. The node adds no attribute
	// of its own: give the logger the node's name where several nodes
	// share a handler.
	Logger *slog.Logger
	// Protocol is the newest protocol version the node speaks, between
	// ProtocolMin and ProtocolMax; zero means ProtocolMax. While a fleet
	// upgrades, new builds set it to the old builds' version; once every
	// node runs the new build, they drop it. Whatever it says, a node
	// announces in the newest version every alive member decodes (by
	// their TagProtocol tags).
	Protocol uint8
	// Decodes is the newest protocol version the node decodes and
	// advertises; zero means ProtocolMax. Set it lower only to stand in
	// for an older build in upgrade tests.
	Decodes uint8
}

// TagProtocol is the tag in which a node advertises the protocol versions
// it decodes, "MIN-MAX". The node sets it itself; a member without it is
// a build from before version 2 and decodes version 1 only.
const TagProtocol = "sf.pv"

// Tuning holds the timers of the gossip layer.
type Tuning struct {
	GossipInterval      time.Duration
	GossipNodes         int
	ProbeInterval       time.Duration
	ProbeTimeout        time.Duration
	PushPullInterval    time.Duration
	SuspicionMult       int
	RetransmitMult      int
	TCPTimeout          time.Duration
	ReapInterval        time.Duration
	ReconnectInterval   time.Duration
	LeavePropagateDelay time.Duration
	BroadcastTimeout    time.Duration
	// Uncompressed sends packets and state exchanges without memberlist's
	// LZW compression. Receivers read both forms, so nodes with and
	// without it mix in one cluster. Compression makes a gossip packet a
	// little smaller and costs a compressor's tables (about 64 KB
	// allocated per packet sent, 20 KB per packet read): nothing on a host
	// of its own, but most of the garbage when hundreds of nodes share a
	// process (see BenchmarkScaleRollout and docs/scale.md).
	Uncompressed bool
}

// DefaultTuning returns memberlist's LAN timers, suited to a data centre.
func DefaultTuning() Tuning {
	lan := memberlist.DefaultLANConfig()
	return Tuning{
		GossipInterval:      lan.GossipInterval,
		GossipNodes:         lan.GossipNodes,
		ProbeInterval:       lan.ProbeInterval,
		ProbeTimeout:        lan.ProbeTimeout,
		PushPullInterval:    lan.PushPullInterval,
		SuspicionMult:       lan.SuspicionMult,
		RetransmitMult:      lan.RetransmitMult,
		TCPTimeout:          lan.TCPTimeout,
		ReapInterval:        15 * time.Second,
		ReconnectInterval:   30 * time.Second,
		LeavePropagateDelay: time.Second,
		BroadcastTimeout:    5 * time.Second,
	}
}

// LocalFleetTuning returns timers for tens of agents sharing one process
// on loopback (tests, the demo): faster than serf's LAN defaults, slower
// than FastTuning so that the agents, beside other work on a small
// machine, do not starve each other and suspect their peers.
func LocalFleetTuning() Tuning {
	t := FastTuning()
	t.GossipInterval = 100 * time.Millisecond
	t.ProbeInterval = time.Second
	t.ProbeTimeout = 500 * time.Millisecond
	t.PushPullInterval = 2 * time.Second
	t.SuspicionMult = 5
	t.TCPTimeout = 2 * time.Second
	return t
}

// FastTuning returns shrunken timers for clusters on loopback in tests:
// gossip every 30 ms, probes every 200 ms, full state sync every second.
func FastTuning() Tuning {
	return Tuning{
		GossipInterval:      30 * time.Millisecond,
		GossipNodes:         4,
		ProbeInterval:       200 * time.Millisecond,
		ProbeTimeout:        100 * time.Millisecond,
		PushPullInterval:    time.Second,
		SuspicionMult:       3,
		RetransmitMult:      4,
		TCPTimeout:          time.Second,
		ReapInterval:        time.Second,
		ReconnectInterval:   time.Second,
		LeavePropagateDelay: 100 * time.Millisecond,
		BroadcastTimeout:    2 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if c.BindPort == 0 && c.BindAddr == DefaultBindAddr {
		c.BindPort = DefaultBindPort
	}
	if c.Tuning == (Tuning{}) {
		c.Tuning = DefaultTuning()
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.EventBuffer == 0 {
		c.EventBuffer = DefaultEventBuffer
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Decodes == 0 {
		c.Decodes = ProtocolMax
	}
	if c.Protocol == 0 {
		c.Protocol = c.Decodes
	}
	return c
}

func (c Config) validate() error {
	if c.NodeName == "" {
		return errors.New("node name is empty")
	}
	if len(c.Keys) == 0 && !c.UnsafeNoEncryption {
		return errors.New("no gossip encryption keys (set UnsafeNoEncryption to run without)")
	}
	for i, k := range c.Keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("key %d: %w", i, err)
		}
	}
	if c.BindPort < 0 || c.BindPort > 65535 || c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return errors.New("port out of range")
	}
	if c.QueryTimeout < 0 || c.EventBuffer < 0 {
		return errors.New("negative query timeout or event buffer")
	}
	if c.Decodes < ProtocolMin || c.Decodes > ProtocolMax {
		return fmt.Errorf("decodes protocol %d: this build speaks %d to %d", c.Decodes, ProtocolMin, ProtocolMax)
	}
	if c.Protocol < ProtocolMin || c.Protocol > c.Decodes {
		return fmt.Errorf("protocol %d: this build speaks %d to %d", c.Protocol, ProtocolMin, c.Decodes)
	}
	t := c.Tuning
	if t.GossipInterval <= 0 || t.ProbeInterval <= 0 || t.ProbeTimeout <= 0 || t.PushPullInterval <= 0 ||
		t.TCPTimeout <= 0 || t.GossipNodes <= 0 || t.SuspicionMult <= 0 || t.RetransmitMult <= 0 {
		return errors.New("tuning: every timer and multiplier must be positive")
	}
	return CheckTags(c.withProtocolTag(c.Tags))
}

// withProtocolTag returns a copy of tags with TagProtocol set.
func (c Config) withProtocolTag(tags map[string]string) map[string]string {
	t := maps.Clone(tags)
	if t == nil {
		t = map[string]string{}
	}
	t[TagProtocol] = ProtocolRange(c.Decodes)
	return t
}

// ProtocolRange is the TagProtocol value of a node that decodes versions
// up to decodes (zero: ProtocolMax).
func ProtocolRange(decodes uint8) string {
	if decodes == 0 {
		decodes = ProtocolMax
	}
	return fmt.Sprintf("%d-%d", ProtocolMin, decodes)
}

// decodesUpTo reads a member's TagProtocol: the newest version it decodes,
// 1 when the tag is missing or unreadable (a build from before the tag).
func decodesUpTo(tags map[string]string) uint8 {
	_, hi, ok := strings.Cut(tags[TagProtocol], "-")
	if !ok {
		return 1
	}
	v, err := strconv.ParseUint(hi, 10, 8)
	if err != nil || v < 1 {
		return 1
	}
	return uint8(v)
}

// TagsSize returns the size of tags as serf encodes them (a magic byte and
// a msgpack map).
func TagsSize(tags map[string]string) int {
	var buf bytes.Buffer
	buf.WriteByte(0)
	if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(tags); err != nil {
		return 1 << 30 // a map of strings always encodes; treat failure as too large
	}
	return buf.Len()
}

// CheckTags returns an error wrapping ErrTagsTooLarge, naming the size, if
// tags do not fit serf's MaxTagsSize.
func CheckTags(tags map[string]string) error {
	if n := TagsSize(tags); n > MaxTagsSize {
		return fmt.Errorf("tags encode to %d bytes, serf's limit is %d: %w", n, MaxTagsSize, ErrTagsTooLarge)
	}
	return nil
}
