package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// emuLink is a link emulator in userspace, for kernels without sch_netem:
// a host's link to its bridge made of two TAP devices, one in the host's
// namespace (eth0) and one in the switch namespace, with the test process
// copying Ethernet frames between them.
//
// Frames the host sends (its egress) pass a delay line: each is dropped
// with probability loss, or else released delay after it was read, in the
// order read. That is what `tc qdisc add dev eth0 root netem delay D loss
// L%` does in the host, so with every host impaired a packet from one host
// to another takes D and a round trip 2D. Frames towards the host pass
// without delay or loss. At most limit frames wait in the line (netem's
// default is 1000); a frame that finds it full is dropped and counted.
//
// Changing the impairment affects frames read afterwards; frames already
// in the line keep their release time.
type emuLink struct {
	host, sw *os.File // the host's end, the switch's end
	imp      atomic.Pointer[impairment]
	egress   emuCounters // host -> switch, impaired
	ingress  emuCounters // switch -> host, clean
	stop     chan struct{}
	wg       sync.WaitGroup
}

// impairment is what the delay line does to the host's egress.
type impairment struct {
	delay time.Duration
	loss  float64 // probability, 0 to 1
	limit int     // frames waiting at most
}

// emuQueueMax is the capacity of the delay line, and the default limit.
const emuQueueMax = 1000

// emuCounters count one direction's frames.
type emuCounters struct {
	read, sent, lost, overflow, writeErrs atomic.Uint64
}

// emuCounts is a snapshot of emuCounters.
type emuCounts struct {
	Read, Sent, Lost, Overflow, WriteErrs uint64
}

func (c *emuCounters) snapshot() emuCounts {
	return emuCounts{Read: c.read.Load(), Sent: c.sent.Load(), Lost: c.lost.Load(), Overflow: c.overflow.Load(), WriteErrs: c.writeErrs.Load()}
}

func (a emuCounts) minus(b emuCounts) emuCounts {
	return emuCounts{Read: a.Read - b.Read, Sent: a.Sent - b.Sent, Lost: a.Lost - b.Lost, Overflow: a.Overflow - b.Overflow, WriteErrs: a.WriteErrs - b.WriteErrs}
}

// openTap creates a TAP device named name in the caller's network
// namespace and returns its file: reading it yields the frames the device
// sends, writing it makes the device receive a frame. The device lives as
// long as the file is open, and the file keeps working after the device
// moves to another namespace.
func openTap(name string) (*os.File, error) {
	if len(name) >= syscall.IFNAMSIZ {
		return nil, fmt.Errorf("tap %s: name too long", name)
	}
	// Non-blocking, and attached to its device before os.NewFile
	// registers it with the runtime's poller: the TUN driver's poll adds
	// no waiter for a file not yet attached, so a file registered before
	// TUNSETIFF would never wake. Being pollable, the file's Read returns
	// when the file is closed.
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	var ifr struct {
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(ifr.name[:], name)
	ifr.flags = syscall.IFF_TAP | syscall.IFF_NO_PI
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TUNSETIFF, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("tap %s: TUNSETIFF: %w", name, errno)
	}
	return os.NewFile(uintptr(fd), "tap "+name), nil
}

// newEmuLink starts copying frames between a host's TAP file and the
// switch's, unimpaired until set says otherwise.
func newEmuLink(host, sw *os.File) *emuLink {
	e := &emuLink{host: host, sw: sw, stop: make(chan struct{})}
	e.imp.Store(&impairment{limit: emuQueueMax})
	e.pump(host, sw, &e.egress, true)
	e.pump(sw, host, &e.ingress, false)
	return e
}

// set changes the impairment of the host's egress. limit 0 means
// emuQueueMax.
func (e *emuLink) set(delay time.Duration, loss float64, limit int) {
	if limit <= 0 || limit > emuQueueMax {
		limit = emuQueueMax
	}
	e.imp.Store(&impairment{delay: delay, loss: loss, limit: limit})
}

// close stops the copying and closes both files, which removes the TAP
// devices; it returns once both directions' goroutines have ended.
func (e *emuLink) close() {
	close(e.stop)
	_ = e.host.Close()
	_ = e.sw.Close()
	e.wg.Wait()
}

// emuFrame is a frame in the delay line.
type emuFrame struct {
	data []byte
	due  time.Time
}

// pump copies frames from one file to the other: a reader that applies
// loss and stamps the release time, a writer that releases in order.
func (e *emuLink) pump(from, to *os.File, c *emuCounters, impaired bool) {
	line := make(chan emuFrame, emuQueueMax)
	var waiting atomic.Int64
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		defer close(line)
		buf := make([]byte, 1<<16)
		for {
			n, err := from.Read(buf)
			if err != nil {
				return // closed
			}
			c.read.Add(1)
			imp := impairment{limit: emuQueueMax}
			if impaired {
				imp = *e.imp.Load()
			}
			if imp.loss > 0 && rand.Float64() < imp.loss {
				c.lost.Add(1)
				continue
			}
			if waiting.Load() >= int64(imp.limit) {
				c.overflow.Add(1)
				continue
			}
			waiting.Add(1)
			line <- emuFrame{data: bytes.Clone(buf[:n]), due: time.Now().Add(imp.delay)}
		}
	}()
	go func() {
		defer e.wg.Done()
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for f := range line {
			if d := time.Until(f.due); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-e.stop:
					return
				}
			}
			waiting.Add(-1)
			if _, err := to.Write(f.data); errors.Is(err, os.ErrClosed) {
				return
			} else if err != nil {
				// A device that is down refuses frames (EIO), as a
				// link with no carrier would lose them.
				c.writeErrs.Add(1)
				continue
			}
			c.sent.Add(1)
		}
	}()
}

// udpTool is a UDP echo and prober the tests run inside host namespaces
// (ip netns exec, SPLICEFLEET_TEST_UDP=1), to measure what the emulator
// does from the hosts' side.
//
//	echo ADDR: answers every datagram with itself and prints its
//	sequence number (its first 8 bytes), one per line.
//	probe FROM TO COUNT INTERVAL WAIT: sends COUNT datagrams from FROM
//	to TO, one every INTERVAL, and waits WAIT after the last for
//	answers; prints a udpProbe as JSON. Before counting it sends
//	warm-up datagrams until one is answered, so that ARP and the echo's
//	start are not measured.
func udpTool(args []string) int {
	if err := runUDPTool(args); err != nil {
		fmt.Fprintln(os.Stderr, "udp tool:", err)
		return 1
	}
	return 0
}

// udpProbe is what probe prints: the round trip time of every datagram
// in nanoseconds, -1 for those never answered.
type udpProbe struct {
	RTT []int64 `json:"rtt_ns"`
}

// warmUpSeq marks warm-up datagrams' sequence numbers.
const warmUpSeq = 1 << 62

func runUDPTool(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "echo":
		addr, err := net.ResolveUDPAddr("udp", args[1])
		if err != nil {
			return err
		}
		conn, err := net.ListenUDP("udp", addr)
		if err != nil {
			return err
		}
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return err
			}
			if n >= 8 {
				fmt.Println(binary.BigEndian.Uint64(buf))
			}
			_, _ = conn.WriteToUDP(buf[:n], from)
		}
	case len(args) == 6 && args[0] == "probe":
		from, err := net.ResolveUDPAddr("udp", args[1])
		if err != nil {
			return err
		}
		to, err := net.ResolveUDPAddr("udp", args[2])
		if err != nil {
			return err
		}
		count, err := strconv.Atoi(args[3])
		if err != nil {
			return err
		}
		interval, err := time.ParseDuration(args[4])
		if err != nil {
			return err
		}
		wait, err := time.ParseDuration(args[5])
		if err != nil {
			return err
		}
		return probeUDP(from, to, count, interval, wait)
	}
	return fmt.Errorf("usage: echo ADDR | probe FROM TO COUNT INTERVAL WAIT (got %q)", args)
}

func probeUDP(from, to *net.UDPAddr, count int, interval, wait time.Duration) error {
	conn, err := net.ListenUDP("udp", from)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	start := time.Now()
	var mu sync.Mutex
	rtt := make([]int64, count)
	for i := range rtt {
		rtt[i] = -1
	}
	warm := make(chan struct{})
	var warmOnce sync.Once
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if n < 16 {
				continue
			}
			now := time.Since(start).Nanoseconds()
			seq, sent := binary.BigEndian.Uint64(buf), int64(binary.BigEndian.Uint64(buf[8:]))
			if seq&warmUpSeq != 0 {
				warmOnce.Do(func() { close(warm) })
				continue
			}
			mu.Lock()
			if seq < uint64(count) && rtt[seq] < 0 {
				rtt[seq] = now - sent
			}
			mu.Unlock()
		}
	}()
	send := func(seq uint64) {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:], seq)
		binary.BigEndian.PutUint64(b[8:], uint64(time.Since(start).Nanoseconds()))
		_, _ = conn.WriteToUDP(b[:], to)
	}
	for k := uint64(0); ; k++ {
		if k == 100 {
			return errors.New("no answer to 100 warm-up datagrams")
		}
		send(warmUpSeq | k)
		select {
		case <-warm:
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}
	// Let the warm-up's remaining datagrams drain from the link.
	time.Sleep(wait)
	next := time.Now()
	for seq := range uint64(count) {
		send(seq)
		next = next.Add(interval)
		time.Sleep(time.Until(next))
	}
	time.Sleep(wait)
	mu.Lock()
	defer mu.Unlock()
	return json.NewEncoder(os.Stdout).Encode(udpProbe{RTT: rtt})
}

// TestLinkEmulator checks the link emulator from the hosts' side: a UDP
// prober in one host's namespace sends datagrams to an echo in another's
// and times the answers, and the emulator's counters must account for
// every datagram lost.
//
//   - Clean links: every datagram is answered, the median round trip
//     below 20 ms, nothing counted lost.
//   - Delay D on the prober's host only: every round trip takes at least
//     D (the one egress it crosses), the median at most D+30 ms.
//   - Delay D and 10% loss on both: every round trip at least 2D, the
//     median at most 2D+30 ms; each direction loses 6–14% of what it
//     carries, and each host's loss counter holds every datagram its
//     egress lost (plus at most the other frames it carried).
//   - A delay line limited to 20 frames: a burst of 100 datagrams gets at
//     most 20 through, and the overflow counter holds the rest.
func TestLinkEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs root, network namespaces and /dev/net/tun")
	}
	lab := newEmuNetLab(t, []int{0, 0})
	const d = 200 * time.Millisecond
	l0, l1 := lab.hosts[0].link, lab.hosts[1].link
	echoAddr := lab.hosts[1].addr + ":9000"

	type result struct {
		rtts             []time.Duration // of the answered, sorted
		echoed, answered int
		out0, out1       emuCounts // egress counts of hosts 0 and 1 during the run
	}
	run := func(name string, count int, interval time.Duration) result {
		t.Helper()
		b0, b1 := l0.egress.snapshot(), l1.egress.snapshot()
		echo := lab.command(1, os.Args[0], "echo", echoAddr)
		echo.Env = append(os.Environ(), "SPLICEFLEET_TEST_UDP=1")
		var echoOut bytes.Buffer
		echo.Stdout, echo.Stderr = &echoOut, &echoOut
		if err := echo.Start(); err != nil {
			t.Fatal(err)
		}
		probe := lab.command(0, os.Args[0], "probe", lab.hosts[0].addr+":0", echoAddr,
			strconv.Itoa(count), interval.String(), (2*d + time.Second).String())
		probe.Env = echo.Env
		out, err := probe.Output()
		_ = echo.Process.Kill()
		_ = echo.Wait()
		if err != nil {
			t.Fatalf("%s: probe: %v\n%s", name, err, out)
		}
		var p udpProbe
		if err := json.Unmarshal(out, &p); err != nil || len(p.RTT) != count {
			t.Fatalf("%s: probe output: %v\n%s", name, err, out)
		}
		r := result{out0: l0.egress.snapshot().minus(b0), out1: l1.egress.snapshot().minus(b1)}
		seen := map[uint64]bool{}
		for line := range strings.Lines(echoOut.String()) {
			seq, err := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
			if err != nil {
				t.Fatalf("%s: echo output: %q", name, line)
			}
			if seq < uint64(count) && !seen[seq] {
				seen[seq] = true
				r.echoed++
			}
		}
		for _, ns := range p.RTT {
			if ns >= 0 {
				r.rtts = append(r.rtts, time.Duration(ns))
			}
		}
		r.answered = len(r.rtts)
		slices.Sort(r.rtts)
		if r.answered > 0 {
			t.Logf("%s: %d sent, %d echoed, %d answered; round trip min %v, median %v, max %v; host 0 egress %+v, host 1 egress %+v",
				name, count, r.echoed, r.answered, r.rtts[0].Round(100*time.Microsecond), r.rtts[r.answered/2].Round(100*time.Microsecond),
				r.rtts[r.answered-1].Round(100*time.Microsecond), r.out0, r.out1)
		}
		return r
	}
	// within checks a round trip's minimum and median.
	within := func(name string, r result, least, most time.Duration) {
		t.Helper()
		if r.answered == 0 {
			t.Fatalf("%s: nothing answered", name)
		}
		if r.rtts[0] < least {
			t.Errorf("%s: a round trip took %v, less than %v", name, r.rtts[0], least)
		}
		if med := r.rtts[r.answered/2]; med > most {
			t.Errorf("%s: median round trip %v, more than %v", name, med, most)
		}
	}
	// lossCounted checks that a host's loss counter holds the datagrams
	// its egress lost, lost of carried, and at most the other frames it
	// carried besides, and that the rate is near 10%.
	lossCounted := func(name string, c emuCounts, carried, lost int) {
		t.Helper()
		other := int(c.Read) - carried
		if int(c.Lost) < lost || int(c.Lost) > lost+other {
			t.Errorf("%s: %d datagrams lost, counter says %d (of %d frames read, %d of them others)", name, lost, c.Lost, c.Read, other)
		}
		if rate := float64(lost) / float64(carried); rate < 0.06 || rate > 0.14 {
			t.Errorf("%s: lost %d of %d (%.1f%%), want about 10%%", name, lost, carried, 100*rate)
		}
	}

	clean := run("clean", 200, 5*time.Millisecond)
	if clean.answered != 200 {
		t.Errorf("clean: %d of 200 answered", clean.answered)
	}
	within("clean", clean, 0, 20*time.Millisecond)
	for i, c := range []emuCounts{clean.out0, clean.out1} {
		if c.Lost != 0 || c.Overflow != 0 || c.Sent < 200 {
			t.Errorf("clean: host %d egress %+v", i, c)
		}
	}

	l0.set(d, 0, 0)
	oneWay := run("delay on host 0", 200, 5*time.Millisecond)
	if oneWay.answered != 200 {
		t.Errorf("delay on host 0: %d of 200 answered", oneWay.answered)
	}
	within("delay on host 0", oneWay, d, d+30*time.Millisecond)

	lab.impair(d, 0.10)
	const n = 1000
	both := run("delay and 10% loss on both", n, 3*time.Millisecond)
	within("delay and 10% loss on both", both, 2*d, 2*d+30*time.Millisecond)
	lossCounted("host 0 egress", both.out0, n, n-both.echoed)
	lossCounted("host 1 egress", both.out1, both.echoed, both.echoed-both.answered)

	l0.set(d, 0, 20)
	l1.set(0, 0, 0)
	burst := run("burst into a 20-frame line", 100, 0)
	if burst.echoed > 20 || burst.echoed == 0 || burst.answered != burst.echoed {
		t.Errorf("burst: %d echoed, %d answered; want 1 to 20, all answered", burst.echoed, burst.answered)
	}
	if over, other := int(burst.out0.Overflow), int(burst.out0.Read)-100; over < 100-burst.echoed || over > 100-burst.echoed+other {
		t.Errorf("burst: %d datagrams did not fit, overflow counter says %d (%d other frames)", 100-burst.echoed, over, other)
	}
}
