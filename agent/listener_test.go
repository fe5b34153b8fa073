package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// dialFrom opens a TCP connection to addr from the loopback address src
// (any 127.x.y.z is this host on Linux), so one test can be many sources.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// closedByPeer waits until the server side closed c: a read ends with
// EOF or a reset rather than a timeout.
func closedByPeer(c net.Conn, within time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("still open after %s", within)
	}
	if err == nil {
		return errors.New("the server sent data")
	}
	return nil
}

// refusedFrom connects to addr from src and checks that the server closes
// the connection at once: the connection is reset while being set up, or
// the first read ends.
func refusedFrom(src, addr string) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	return closedByPeer(c, 10*time.Second)
}

// stillOpen checks that c is open: a short read times out.
func stillOpen(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return fmt.Errorf("closed: %v", err)
}

// TestListenerCapsConnections: beyond its per-source cap a source's new
// connections are closed at once and counted, other sources still get
// in, the total cap holds across sources, and a closed connection gives
// its place back.
func TestListenerCapsConnections(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimiter(inner, 5, 3, warnLogger(t))
	defer func() { _ = l.Close() }()
	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	addr := l.Addr().String()
	take := func(n int) []net.Conn {
		var cs []net.Conn
		for range n {
			select {
			case c := <-accepted:
				cs = append(cs, c)
			case <-time.After(10 * time.Second):
				t.Fatalf("%d of %d connections accepted", len(cs), n)
			}
		}
		return cs
	}
	var flood []net.Conn
	for range 3 {
		flood = append(flood, dialFrom(t, "127.0.0.2", addr))
	}
	held := take(3)
	for range 4 {
		if err := refusedFrom("127.0.0.2", addr); err != nil {
			t.Errorf("a 4th connection from 127.0.0.2: %v", err)
		}
	}
	if got := l.refused()[connRefusedSource]; got != 4 {
		t.Errorf("refused for the source's cap: %d, want 4", got)
	}
	for _, c := range flood {
		if err := stillOpen(c); err != nil {
			t.Errorf("a connection within the cap: %v", err)
		}
	}
	// Another source gets in, up to the listener's total of 5.
	dialFrom(t, "127.0.0.3", addr)
	dialFrom(t, "127.0.0.4", addr)
	held = append(held, take(2)...)
	if l.Open() != 5 {
		t.Errorf("%d open, want 5", l.Open())
	}
	if err := refusedFrom("127.0.0.5", addr); err != nil {
		t.Errorf("a 6th connection: %v", err)
	}
	if got := l.refused()[connRefusedTotal]; got != 1 {
		t.Errorf("refused for the total cap: %d, want 1", got)
	}
	// Closing one lets the next one in.
	_ = held[0].Close()
	dialFrom(t, "127.0.0.2", addr)
	take(1)
}

// emfileListener fails every Accept as a process out of descriptors
// does.
type emfileListener struct {
	net.Listener
	calls atomic.Int64
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
}

// TestListenerBacksOffWhenOutOfDescriptors: accept failing with EMFILE
// is retried with a growing pause, not in a loop that burns a core, it
// is counted, and Close still ends Accept.
func TestListenerBacksOffWhenOutOfDescriptors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &emfileListener{Listener: inner}
	l := newConnLimiter(fake, 10, 10, warnLogger(t))
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	start := time.Now()
	eventually(t, 30*time.Second, "a few failed accepts", func() error {
		if n := fake.calls.Load(); n < 5 {
			return fmt.Errorf("%d accepts", n)
		}
		return nil
	})
	// 5 ms doubling: the 5th try comes after at least 5+10+20+40 ms. A
	// loop without a pause makes thousands in that time.
	if elapsed, n := time.Since(start), fake.calls.Load(); elapsed < 75*time.Millisecond || n > 20 {
		t.Errorf("%d accepts in %s: no back-off", n, elapsed)
	}
	if got := l.refused()[connNoFDs]; got < 5 {
		t.Errorf("no_fds counted %d, want at least 5", got)
	}
	_ = l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

// TestTCPConnCapFitsTheDescriptorLimit: the cap leaves descriptors for
// the rest of the agent.
func TestTCPConnCapFitsTheDescriptorLimit(t *testing.T) {
	for _, c := range []struct {
		configured int
		nofile     uint64
		want       int
	}{
		{1024, 0, 1024},          // unknown: as configured
		{1024, 1 << 20, 1024},    // plenty
		{1024, 400, 120},         // (400-128-32)/2
		{1024, 100, minTCPConns}, // very low: a floor
		{50, 400, 50},
	} {
		if got := tcpConnCap(c.configured, c.nofile); got != c.want {
			t.Errorf("tcpConnCap(%d, %d) = %d, want %d", c.configured, c.nofile, got, c.want)
		}
	}
}

// TestHTTPIdleConnectionsAreClosed: a keep-alive connection left idle
// after a request is closed after http_idle_timeout; the cap per source
// stands on the agent's own listener, is counted in its metrics, and
// another source still gets /healthz answered.
func TestHTTPIdleConnectionsAreClosed(t *testing.T) {
	f := newTestFleet(t)
	cfg := f.config("host")
	cfg.HTTPIdleTimeout = 500 * time.Millisecond
	cfg.HTTPMaxConnectionsPerSource = 4
	a := f.start(cfg)
	addr := a.HTTPAddr()
	idle := dialFrom(t, "127.0.0.2", addr)
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz on a keep-alive connection: %v", err)
	}
	resp.Body.Close()
	if resp.Close {
		t.Fatal("the server did not keep the connection alive")
	}
	if err := closedByPeer(idle, 30*time.Second); err != nil {
		t.Errorf("an idle keep-alive connection with http_idle_timeout 500ms: %v", err)
	}
	// Over the source's cap: the 5th connection from one address closes.
	for range 4 {
		dialFrom(t, "127.0.0.3", addr)
	}
	eventually(t, 10*time.Second, "four connections open", func() error {
		if n := a.httpLn.Open(); n != 4 {
			return fmt.Errorf("%d open", n)
		}
		return nil
	})
	if err := refusedFrom("127.0.0.3", addr); err != nil {
		t.Errorf("a 5th connection from one source: %v", err)
	}
	r, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("healthz from another source: %v", err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("healthz: %q", body)
	}
	var text strings.Builder
	mr, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(&text, mr.Body)
	mr.Body.Close()
	if want := `splicefleet_connections_refused_total{listener="http",reason="source_limit"} 1`; !strings.Contains(text.String(), want+"\n") {
		t.Errorf("metrics lack %s", want)
	}
}

// keepAlive sends a /healthz request on c and reads the answer, leaving
// the connection idle between requests.
func keepAlive(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("healthz on a keep-alive connection: %v", err)
	}
	resp.Body.Close()
}

// TestHTTPIdleConnectionsMakeRoom: at a cap, a new connection takes the
// place of the connection idle longest, of its own source at the
// source's cap and of any source at the listener's cap, so a flood of
// idle keep-alive connections locks nobody out; the closings are
// counted.
func TestHTTPIdleConnectionsMakeRoom(t *testing.T) {
	f := newTestFleet(t)
	cfg := f.config("host")
	cfg.HTTPMaxConnections, cfg.HTTPMaxConnectionsPerSource = 6, 4
	a := f.start(cfg)
	addr := a.HTTPAddr()
	// The server marks a connection idle just after it sent the answer:
	// wait for it before the next connection counts on it.
	idle := func(n int) {
		t.Helper()
		eventually(t, 10*time.Second, fmt.Sprintf("%d idle connections", n), func() error {
			a.httpLn.mu.Lock()
			defer a.httpLn.mu.Unlock()
			if len(a.httpLn.idle) != n {
				return fmt.Errorf("%d idle", len(a.httpLn.idle))
			}
			return nil
		})
	}
	var flood []net.Conn
	for i := range 4 {
		c := dialFrom(t, "127.0.0.3", addr)
		keepAlive(t, c)
		idle(i + 1)
		flood = append(flood, c)
	}
	// The source's cap: its 5th connection is served, its oldest idle
	// one closed.
	keepAlive(t, dialFrom(t, "127.0.0.3", addr))
	idle(4)
	if err := closedByPeer(flood[0], 10*time.Second); err != nil {
		t.Errorf("the source's oldest idle connection: %v", err)
	}
	for _, c := range flood[1:] {
		if err := stillOpen(c); err != nil {
			t.Errorf("a younger idle connection: %v", err)
		}
	}
	// The listener's cap (6): two more sources fill it, a third is served
	// in the place of the oldest idle connection (flood[1]).
	keepAlive(t, dialFrom(t, "127.0.0.4", addr))
	keepAlive(t, dialFrom(t, "127.0.0.5", addr))
	idle(6)
	keepAlive(t, dialFrom(t, "127.0.0.6", addr))
	if err := closedByPeer(flood[1], 10*time.Second); err != nil {
		t.Errorf("the oldest idle connection at the listener's cap: %v", err)
	}
	if got := a.httpLn.refused(); got[connEvicted] != 2 || got[connRefusedTotal] != 0 || got[connRefusedSource] != 0 {
		t.Errorf("counted %v, want 2 evicted and nothing refused", got)
	}
}
