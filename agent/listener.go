package agent

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Limits of the agent's listeners. A connection costs a file descriptor,
// and so does every journal write, store write and gossip stream: the
// TCP listener (open to the network) may hold at most half of what the
// process's limit leaves after fdReserve, and the control socket has its
// own small budget beside it, so neither a flood of TCP connections nor a
// stuck local client takes the descriptors the rest of the agent needs.
const (
	// fdReserve is how many descriptors the caps leave to the store,
	// the journal, gossip and the Go runtime whatever the limit.
	fdReserve = 128
	// minTCPConns is the TCP cap however low the descriptor limit is.
	minTCPConns = 16
	// controlConns caps the connections open to the control socket.
	controlConns = 32
)

// Timeouts of the TCP listener: a request's header must arrive within
// httpReadHeaderTimeout and the whole request within httpReadTimeout; its
// answer must be taken within httpWriteTimeout. Module downloads keep
// their own stall rule instead (see streaming); a keep-alive connection
// idle for Config.HTTPIdleTimeout is closed.
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpWriteTimeout      = 60 * time.Second
)

// Why a connection was refused, as the metrics label it.
const (
	connRefusedTotal  = "limit"        // the listener's cap was reached
	connRefusedSource = "source_limit" // the source's cap was reached
	connNoFDs         = "no_fds"       // accept failed: the process is out of file descriptors
	connEvicted       = "evicted"      // an idle keep-alive connection closed to make room
)

// connLimiter is a net.Listener that caps the connections it has open,
// in all and per source (an IPv4 address or an IPv6 /64). At a cap, a new
// connection takes the place of the keep-alive connection that has been
// idle longest (of its own source, when the source's cap is reached), so
// idle connections never lock anyone out; when none is idle, the new one
// is closed as soon as it is accepted, so it never waits in a queue. The
// server reports idle connections through ConnState. When accept fails
// because the process is out of descriptors the listener backs off (5 ms
// doubling to 1 s) instead of spinning.
type connLimiter struct {
	net.Listener
	max, perSource int // perSource 0: no per-source cap
	log            *slog.Logger

	mu     sync.Mutex
	open   int
	bySrc  map[string]int
	idle   map[*limitedConn]time.Time // connections idle between requests, since when
	closed chan struct{}
	once   sync.Once

	refusedTotal, refusedSource, noFDs, evicted atomic.Uint64
	lastWarn                                    atomic.Int64 // unix nanos of the last warning about descriptors
}

func newConnLimiter(ln net.Listener, max, perSource int, log *slog.Logger) *connLimiter {
	return &connLimiter{Listener: ln, max: max, perSource: perSource, log: log, bySrc: map[string]int{}, idle: map[*limitedConn]time.Time{},
		closed: make(chan struct{})}
}

// fdLimit is the process's soft limit of open files (0 when unknown).
func fdLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return lim.Cur
}

// tcpConnCap is the TCP listener's cap: the configured one, lowered to
// fit a descriptor limit of nofile (0: unknown).
func tcpConnCap(configured int, nofile uint64) int {
	if nofile == 0 || nofile > 1<<30 {
		return configured
	}
	fit := (int(nofile) - fdReserve - controlConns) / 2
	return min(configured, max(fit, minTCPConns))
}

// Accept returns the next connection within the caps.
func (l *connLimiter) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
				return nil, err
			}
			l.noFDs.Add(1)
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if now := time.Now().UnixNano(); now-l.lastWarn.Load() > int64(10*time.Second) {
				l.lastWarn.Store(now)
				l.log.Warn("out of file descriptors: accepting connections again later", "listener", l.Addr().String(), "err", err, "retry_in", backoff)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
				continue
			case <-l.closed:
				t.Stop()
				return nil, net.ErrClosed
			}
		}
		backoff = 0
		if lc := l.admit(c); lc != nil {
			return lc, nil
		}
	}
}

// admit counts c in, making room by closing an idle connection when a
// cap is reached, or refuses it (nil).
func (l *connLimiter) admit(c net.Conn) *limitedConn {
	src := connSource(c.RemoteAddr())
	for {
		l.mu.Lock()
		sourceFull := l.perSource > 0 && l.bySrc[src] >= l.perSource
		if !sourceFull && l.open < l.max {
			l.open++
			l.bySrc[src]++
			lc := &limitedConn{Conn: c, l: l, src: src}
			l.mu.Unlock()
			return lc
		}
		var victim *limitedConn
		var since time.Time
		for ic, t := range l.idle {
			if (!sourceFull || ic.src == src) && (victim == nil || t.Before(since)) {
				victim, since = ic, t
			}
		}
		if victim != nil {
			delete(l.idle, victim)
		}
		l.mu.Unlock()
		if victim == nil {
			if sourceFull {
				l.refusedSource.Add(1)
			} else {
				l.refusedTotal.Add(1)
			}
			l.refuse(c)
			return nil
		}
		l.evicted.Add(1)
		_ = victim.Close() // gives its place back; then try again
	}
}

// connState is the http.Server's ConnState hook: it tells which
// connections are idle between requests.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == http.StateIdle && !lc.closed.Load() {
		l.idle[lc] = time.Now()
	} else {
		delete(l.idle, lc)
	}
}

// refuse closes a connection over a cap at once, with a reset on TCP so
// that it leaves no state behind on this host.
func (l *connLimiter) refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	l.log.Debug("connection over the cap closed", "listener", l.Addr().String(), "from", c.RemoteAddr().String())
}

func (l *connLimiter) release(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	src := c.src
	delete(l.idle, c)
	l.open--
	if l.bySrc[src]--; l.bySrc[src] <= 0 {
		delete(l.bySrc, src)
	}
}

// Close closes the listener; connections already accepted stay open.
func (l *connLimiter) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// Open is how many connections the listener holds open.
func (l *connLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// refused returns the counts of refused connections and of failed
// accepts, by metrics label.
func (l *connLimiter) refused() map[string]uint64 {
	return map[string]uint64{connRefusedTotal: l.refusedTotal.Load(), connRefusedSource: l.refusedSource.Load(), connNoFDs: l.noFDs.Load(),
		connEvicted: l.evicted.Load()}
}

// connSource names the source a per-source cap counts against: an IPv4
// address, an IPv6 /64 (one host commonly holds a whole /64), or "" for
// unix sockets.
func connSource(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return ""
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// limitedConn gives its place back to the listener when it is closed.
type limitedConn struct {
	net.Conn
	l      *connLimiter
	src    string
	closed atomic.Bool
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c)
	}
	return err
}

// streaming lets a handler that streams a long response (a module, whose
// upload keeps its own stall rule: BlobServer.upload sets a write
// deadline per chunk) outlive the listener's ReadTimeout: the server
// reads in the background while a handler runs, and a read deadline that
// passes there would cancel the request.
func streaming(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
		h.ServeHTTP(w, r)
	})
}
