package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// netLab is a small network of Linux network namespaces for fault tests:
// one namespace per host, each with a veth link (eth0, 10.77.0.10+i/24)
// to a switch namespace that holds two bridges, one per side, joined by a
// trunk veth pair. Cutting the trunk partitions the sides at layer 2 while
// each side still talks within itself. It needs root (ip netns).
//
// newEmuNetLab builds the same network with emulated links instead of
// veth pairs (emuLink), whose egress delay and loss a test sets.
//
// Namespaces are named sfnet-PID-…, so parallel runs do not collide, and
// a run removes the namespaces of earlier runs whose process is gone.
type netLab struct {
	t      *testing.T
	prefix string
	sw     string
	hosts  []netHost
}

// netHost is one host's namespace and address.
type netHost struct {
	ns   string
	addr string   // 10.77.0.x
	side int      // 0 or 1
	swIf string   // its link's name in the switch namespace
	link *emuLink // nil for a veth link
}

const netLabPrefix = "sfnet-"

// runIP runs a network command (ip, tc, nft) and fails the test on error.
func runIP(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// removeStaleNetLabs deletes namespaces left by runs whose process died.
func removeStaleNetLabs(t *testing.T) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	for line := range strings.Lines(string(out)) {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, netLabPrefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if n, err := strconv.Atoi(pid); err == nil && n != os.Getpid() {
			if _, err := os.Stat("/proc/" + pid); err == nil {
				continue // a live run's
			}
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

// newNetLab builds the network: sides[i] is host i's side (0 or 1).
func newNetLab(t *testing.T, sides []int) *netLab {
	t.Helper()
	return buildNetLab(t, sides, false)
}

// newEmuNetLab builds the network with an emulated link for every host,
// unimpaired until impair.
func newEmuNetLab(t *testing.T, sides []int) *netLab {
	t.Helper()
	return buildNetLab(t, sides, true)
}

func buildNetLab(t *testing.T, sides []int, emulated bool) *netLab {
	t.Helper()
	removeStaleNetLabs(t)
	l := &netLab{t: t, prefix: fmt.Sprintf("%s%d-", netLabPrefix, os.Getpid())}
	l.sw = l.prefix + "sw"
	t.Cleanup(l.close) // registered first, so it runs after the agents stop
	runIP(t, "ip", "netns", "add", l.sw)
	sw := []string{"-n", l.sw}
	runIP(t, "ip", append(sw, "link", "set", "lo", "up")...)
	for _, br := range []string{"br0", "br1"} {
		runIP(t, "ip", append(sw, "link", "add", br, "type", "bridge")...)
		runIP(t, "ip", append(sw, "link", "set", br, "up")...)
	}
	runIP(t, "ip", append(sw, "link", "add", "trunk0", "type", "veth", "peer", "name", "trunk1")...)
	for i, tr := range []string{"trunk0", "trunk1"} {
		runIP(t, "ip", append(sw, "link", "set", tr, "master", fmt.Sprintf("br%d", i))...)
		runIP(t, "ip", append(sw, "link", "set", tr, "up")...)
	}
	for i, side := range sides {
		h := netHost{ns: fmt.Sprintf("%sh%d", l.prefix, i), addr: fmt.Sprintf("10.77.0.%d", 10+i), side: side, swIf: fmt.Sprintf("h%d", i)}
		runIP(t, "ip", "netns", "add", h.ns)
		l.hosts = append(l.hosts, h)
		hn := []string{"-n", h.ns}
		if emulated {
			l.addEmuLink(i)
		} else {
			runIP(t, "ip", append(sw, "link", "add", h.swIf, "type", "veth", "peer", "name", "eth0", "netns", h.ns)...)
		}
		runIP(t, "ip", append(sw, "link", "set", h.swIf, "master", fmt.Sprintf("br%d", side))...)
		runIP(t, "ip", append(sw, "link", "set", h.swIf, "up")...)
		runIP(t, "ip", append(hn, "link", "set", "lo", "up")...)
		runIP(t, "ip", append(hn, "addr", "add", h.addr+"/24", "dev", "eth0")...)
		runIP(t, "ip", append(hn, "link", "set", "eth0", "up")...)
	}
	return l
}

// addEmuLink gives host i an emulated link: TAP devices made here, then
// moved, one into the host's namespace as eth0, one into the switch's.
// Their names here carry the process id, so parallel runs do not
// collide; they vanish with the process.
func (l *netLab) addEmuLink(i int) {
	t := l.t
	t.Helper()
	h := &l.hosts[i]
	tap := func(end string) string { return fmt.Sprintf("sf%dh%d%s", os.Getpid(), i, end) }
	hostEnd, err := openTap(tap("e"))
	if err != nil {
		t.Fatal(err)
	}
	swEnd, err := openTap(tap("s"))
	if err != nil {
		_ = hostEnd.Close()
		t.Fatal(err)
	}
	h.link = newEmuLink(hostEnd, swEnd)
	for _, m := range []struct{ tap, ns, name string }{{tap("e"), h.ns, "eth0"}, {tap("s"), l.sw, h.swIf}} {
		runIP(t, "ip", "link", "set", "dev", m.tap, "netns", m.ns)
		runIP(t, "ip", "-n", m.ns, "link", "set", "dev", m.tap, "name", m.name)
	}
}

// impair sets the delay and loss of every host's egress (newEmuNetLab).
func (l *netLab) impair(delay time.Duration, loss float64) {
	for _, h := range l.hosts {
		if h.link == nil {
			l.t.Fatalf("%s: no emulated link to impair", h.ns)
		}
		h.link.set(delay, loss, 0)
	}
}

// close deletes every namespace of this lab; their links go with them.
// It stops emulated links first.
func (l *netLab) close() {
	for _, h := range l.hosts {
		if h.link == nil {
			continue
		}
		done := make(chan struct{})
		go func() { h.link.close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			l.t.Errorf("%s: the link emulator did not stop", h.ns)
		}
	}
	for _, h := range l.hosts {
		if err := exec.Command("ip", "netns", "del", h.ns).Run(); err != nil {
			l.t.Errorf("ip netns del %s: %v", h.ns, err)
		}
	}
	_ = exec.Command("ip", "netns", "del", l.sw).Run()
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), l.prefix) {
		l.t.Errorf("namespaces left behind:\n%s", out)
	}
}

// command runs name in host i's namespace.
func (l *netLab) command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.hosts[i].ns, name}, args...)...)
}

// partition cuts the trunk between the two sides.
func (l *netLab) partition() {
	l.t.Helper()
	runIP(l.t, "ip", "-n", l.sw, "link", "set", "trunk0", "down")
	runIP(l.t, "ip", "-n", l.sw, "link", "set", "trunk1", "down")
}

// heal joins the sides again.
func (l *netLab) heal() {
	l.t.Helper()
	runIP(l.t, "ip", "-n", l.sw, "link", "set", "trunk0", "up")
	runIP(l.t, "ip", "-n", l.sw, "link", "set", "trunk1", "up")
}

// loss drops pct% of the packets every host sends on its link, at
// random (nftables numgen in each host's namespace). The kernels this
// runs on may lack sch_netem, so loss does not rely on it.
func (l *netLab) loss(pct int) {
	l.t.Helper()
	for _, h := range l.hosts {
		rules := fmt.Sprintf(`table inet sfloss {
	chain out {
		type filter hook output priority 0; policy accept;
		oifname "eth0" numgen random mod 100 < %d counter drop
	}
}
`, pct)
		cmd := exec.Command("ip", "netns", "exec", h.ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			l.t.Fatalf("nft in %s: %v\n%s", h.ns, err, out)
		}
	}
}

// dropped counts the packets loss dropped on host i.
func (l *netLab) dropped(i int) int {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.hosts[i].ns, "nft", "list", "table", "inet", "sfloss").CombinedOutput()
	if err != nil {
		l.t.Fatalf("nft list: %v\n%s", err, out)
	}
	_, rest, ok := strings.Cut(string(out), "counter packets ")
	n, err := strconv.Atoi(strings.Fields(rest + " x")[0])
	if !ok || err != nil {
		l.t.Fatalf("no drop counter in:\n%s", out)
	}
	return n
}
