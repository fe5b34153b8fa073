package gossip

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemNetwork is an in-memory network for running hundreds of nodes in one
// process (benchmarks and tests; see Config.Network). It replaces the
// kernel's sockets and nothing else: every message still goes through
// memberlist's and serf's protocol, encoded, compressed and encrypted as
// on the wire, with memberlist's probes, acks, gossip and push/pull.
//
// Packets behave like UDP datagrams on one host: delivery is immediate;
// a packet to an address where no node runs is lost without an error,
// and one arriving at a node whose receive queue is full (a socket
// buffer of MemPacketQueue packets, about what memberlist's 2 MB
// SO_RCVBUF holds) is dropped and counted (Dropped). Streams are
// in-memory pipes with deadlines, like TCP on loopback; a dial to a node
// that has shut down, or whose accept queue (MemStreamQueue) is full, is
// refused. Each node gets an address in 198.18.0.0/15, the range set
// aside for benchmarks (RFC 2544), port 7946, so no address can be
// mistaken for a socket.
type MemNetwork struct {
	mu    sync.RWMutex
	nodes map[string]*memTransport
	next  uint32

	dropped, packets, bytes atomic.Uint64
}

// MemPacketQueue and MemStreamQueue are each node's receive queue (in
// packets) and accept queue (in connections) on a MemNetwork.
const (
	MemPacketQueue = 1024
	MemStreamQueue = 128
)

// NewMemNetwork returns an empty in-memory network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{nodes: map[string]*memTransport{}}
}

// Dropped returns how many packets were dropped because their receiver's
// queue was full, and how many were sent in all.
func (n *MemNetwork) Dropped() (dropped, sent uint64) {
	return n.dropped.Load(), n.packets.Load()
}

var errMemRefused = errors.New("connection refused")

// Bytes returns how many bytes the packets sent carried, as they would
// be on the wire (encrypted, compressed if the sender compresses), UDP
// and IP headers left out.
func (n *MemNetwork) Bytes() uint64 { return n.bytes.Load() }

// transport adds a node to the network with a fresh address.
func (n *MemNetwork) transport() (*memTransport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next++
	if n.next >= 1<<17-1 {
		return nil, errors.New("memory network: out of addresses")
	}
	ip := net.IPv4(198, 18+byte(n.next>>16), byte(n.next>>8), byte(n.next))
	t := &memTransport{net: n, ip: ip, port: DefaultBindPort,
		addr:    memAddr(net.JoinHostPort(ip.String(), strconv.Itoa(DefaultBindPort))),
		packets: make(chan *memberlist.Packet, MemPacketQueue),
		streams: make(chan net.Conn, MemStreamQueue),
	}
	n.nodes[string(t.addr)] = t
	return t, nil
}

// lookup returns the node at addr, nil if there is none.
func (n *MemNetwork) lookup(addr string) *memTransport {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.nodes[addr]
}

// refused is the error of a dial nobody answers, shaped like the TCP
// error memberlist takes for a failed remote.
func refused(addr string) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: memAddr(addr), Err: errMemRefused}
}

// memAddr is a node's address on a MemNetwork.
type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

// memTransport is one node's memberlist.NodeAwareTransport on a
// MemNetwork.
type memTransport struct {
	net  *MemNetwork
	ip   net.IP
	port int
	addr memAddr

	packets chan *memberlist.Packet
	streams chan net.Conn

	mu     sync.Mutex
	closed bool
}

var _ memberlist.NodeAwareTransport = (*memTransport)(nil)

func (t *memTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.ip, t.port, nil
}

func (t *memTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *memTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	// As with UDP, a packet to an address nobody listens on is lost
	// without an error.
	now := time.Now()
	t.net.packets.Add(1)
	t.net.bytes.Add(uint64(len(b)))
	dest := t.net.lookup(a.Addr)
	if dest == nil {
		return now, nil
	}
	p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: t.addr, Timestamp: now}
	dest.mu.Lock()
	defer dest.mu.Unlock()
	if dest.closed {
		return now, nil
	}
	select {
	case dest.packets <- p:
	default:
		t.net.dropped.Add(1) // like a full socket buffer: silently
	}
	return now, nil
}

func (t *memTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *memTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *memTransport) DialAddressTimeout(a memberlist.Address, _ time.Duration) (net.Conn, error) {
	dest := t.net.lookup(a.Addr)
	if dest == nil {
		return nil, refused(a.Addr)
	}
	local, remote := net.Pipe()
	dest.mu.Lock()
	defer dest.mu.Unlock()
	if !dest.closed {
		select {
		case dest.streams <- remote:
			return local, nil
		default:
		}
	}
	_ = local.Close()
	_ = remote.Close()
	return nil, refused(a.Addr)
}

func (t *memTransport) StreamCh() <-chan net.Conn { return t.streams }

// IngestPacket and IngestStream serve memberlist's label wrapping, which
// hands back connections it has read a label from.
func (t *memTransport) IngestPacket(conn net.Conn, addr net.Addr, now time.Time, shouldClose bool) error {
	return errors.New("memory network: packets over streams are not supported")
}

func (t *memTransport) IngestStream(conn net.Conn) error {
	select {
	case t.streams <- conn:
		return nil
	default:
		_ = conn.Close()
		return errMemRefused
	}
}

// Shutdown takes the node off the network: packets to it fail, dials are
// refused, and connections it had not accepted are closed.
func (t *memTransport) Shutdown() error {
	t.net.mu.Lock()
	delete(t.net.nodes, string(t.addr))
	t.net.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for {
		select {
		case c := <-t.streams:
			_ = c.Close()
		default:
			return nil
		}
	}
}
