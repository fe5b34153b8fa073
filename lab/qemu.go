package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for a Guest's zero fields.
const (
	DefaultMemory  = 512 // MiB
	DefaultCPUs    = 1
	DefaultTimeout = 120 * time.Second
)

// Net attaches a guest to a virtual network segment shared by the guests
// of one BootAll (a QEMU socket network on a loopback multicast group).
type Net struct {
	// Addr is eth0's address in CIDR form, e.g. "10.0.0.1/24".
	Addr string
	// MAC defaults to 52:54:00:00:00:NN, NN the guest's position in
	// BootAll, counting from 1.
	MAC string
	// Port is the segment's multicast port; BootAll sets it for all its
	// guests (a free port per run) when zero.
	Port int
}

// Guest is one virtual machine to boot.
type Guest struct {
	// Name prefixes the guest's console lines in Log; default "guest".
	Name string
	// Kernel is the kernel to boot (from Fetch).
	Kernel *DebianKernel
	// Initramfs is what runs in the guest. With Net set, NetModules are
	// loaded before Initramfs.Modules and eth0 gets Net.Addr.
	Initramfs Initramfs
	// Append is added to the kernel command line, e.g. "module.sig_enforce=1".
	Append string
	// Memory in MiB (default 512) and CPUs (default 1).
	Memory, CPUs int
	// Timeout bounds the whole boot (default 120 s); the guest is killed
	// when it overruns.
	Timeout time.Duration
	// Disk is an optional raw disk image, attached as virtio-blk (/dev/vda;
	// add DiskModules).
	Disk string
	// Net is an optional network interface.
	Net *Net
	// Log receives the console as it comes, each line prefixed with the
	// guest's name. Nil discards.
	Log io.Writer
	// UEFI boots the guest under UEFI firmware (OVMF, Debian package
	// ovmf) instead of QEMU's default BIOS, which loads the kernel
	// through its EFI stub: the guest then has EFI runtime services,
	// which modules such as efivarfs need to load at all. It adds a
	// few seconds to the boot under TCG.
	UEFI bool
}

// OVMF is the UEFI firmware image a Guest with UEFI boots, from Debian's
// ovmf package.
const OVMF = "/usr/share/ovmf/OVMF.fd"

// Result is what a guest did.
type Result struct {
	Name string
	// Console is the full serial console transcript.
	Console string
	// Marks are the "@@LAB <key> <value>" lines, in order.
	Marks Marks
	// ExitCode is the exit status of /lab/run.sh (or an ExitInit* code).
	ExitCode int
	// BootToUser is the guest's uptime when /init started.
	BootToUser time.Duration
	// Wall is how long QEMU ran, start to exit.
	Wall time.Duration
}

// ConsoleTail returns the last n lines of the console.
func (r *Result) ConsoleTail(n int) string {
	lines := strings.Split(strings.TrimRight(r.Console, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ErrUnfinished means a guest ended without reporting "@@LAB-EXIT": it
// timed out, panicked, or QEMU failed.
var ErrUnfinished = errors.New("guest did not finish")

// Boot boots one guest, waits for it to power off, and returns what it
// did. The error is non-nil when the guest did not finish (the Result is
// still returned, with the console); a script's non-zero exit status is
// not an error, it is Result.ExitCode. QEMU is killed (its whole process
// group) on timeout, on ctx's end, and on every return path.
func Boot(ctx context.Context, g Guest) (*Result, error) {
	if g.Name == "" {
		g.Name = "guest"
	}
	res := &Result{Name: g.Name}
	if g.Kernel == nil {
		return res, fmt.Errorf("boot %s: no kernel", g.Name)
	}
	if g.Memory == 0 {
		g.Memory = DefaultMemory
	}
	if g.CPUs == 0 {
		g.CPUs = DefaultCPUs
	}
	if g.Timeout == 0 {
		g.Timeout = DefaultTimeout
	}
	if _, err := exec.LookPath(Qemu); err != nil {
		return res, fmt.Errorf("boot %s: %w (install qemu-system-x86, or run lab.Fetch as root)", g.Name, err)
	}

	dir, err := os.MkdirTemp("", "splicefleet-lab-")
	if err != nil {
		return res, fmt.Errorf("boot %s: %w", g.Name, err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	spec := g.Initramfs
	if g.Net != nil {
		spec.Modules = append(append([]string(nil), NetModules...), spec.Modules...)
		spec.Addr = g.Net.Addr
	}
	initrd := filepath.Join(dir, "initrd.cpio.gz")
	if err := writeInitramfsFile(initrd, g.Kernel, spec); err != nil {
		return res, fmt.Errorf("boot %s: %w", g.Name, err)
	}
	args, err := qemuArgs(g, initrd)
	if err != nil {
		return res, fmt.Errorf("boot %s: %w", g.Name, err)
	}

	ctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	console := &consoleWriter{prefix: "[" + g.Name + "] ", log: g.Log}
	cmd := exec.CommandContext(ctx, Qemu, args...)
	cmd.Stdin = nil
	cmd.Stdout = console
	cmd.Stderr = console
	// Own process group, so a kill reaches anything QEMU started; and die
	// with the test process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("boot %s: start qemu: %w", g.Name, err)
	}
	waitErr := cmd.Wait()
	_ = killGroup(cmd) // nothing of the group outlives Boot
	res.Wall = time.Since(start)
	console.flush()
	res.Console = console.String()
	rep := parseConsole(strings.NewReader(res.Console))
	res.Marks, res.ExitCode, res.BootToUser = rep.marks, rep.exitCode, rep.bootToUser
	if rep.exited {
		return res, nil
	}
	why := "qemu exited"
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		why = fmt.Sprintf("killed after its %v timeout", g.Timeout)
	case ctx.Err() != nil:
		why = "killed: " + ctx.Err().Error()
	case waitErr != nil:
		why = "qemu: " + waitErr.Error()
	}
	return res, fmt.Errorf("boot %s: %w (%s after %.1fs); console tail:\n%s",
		g.Name, ErrUnfinished, why, res.Wall.Seconds(), res.ConsoleTail(30))
}

func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

func writeInitramfsFile(name string, k *DebianKernel, spec Initramfs) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := WriteInitramfs(f, k, spec); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// qemuArgs is the QEMU command line for g: TCG (never KVM, see the
// package doc), serial console on stdout, no monitor, no reboot (so a
// panic with panic=-1 or a power-off ends QEMU).
func qemuArgs(g Guest, initrd string) ([]string, error) {
	appendLine := "console=ttyS0 panic=-1 quiet"
	if g.Append != "" {
		appendLine += " " + g.Append
	}
	args := []string{
		"-accel", "tcg",
		"-nographic", "-no-reboot",
		"-serial", "stdio", "-monitor", "none",
		"-m", strconv.Itoa(g.Memory),
		"-smp", strconv.Itoa(g.CPUs),
		"-kernel", g.Kernel.Vmlinuz,
		"-initrd", initrd,
		"-append", appendLine,
	}
	if g.UEFI {
		if _, err := os.Stat(OVMF); err != nil {
			return nil, fmt.Errorf("UEFI firmware: %w (install the Debian package ovmf)", err)
		}
		args = append(args, "-bios", OVMF)
	}
	if g.Disk != "" {
		if strings.Contains(g.Disk, ",") {
			return nil, fmt.Errorf("disk path %q contains a comma", g.Disk)
		}
		args = append(args, "-drive", "file="+g.Disk+",format=raw,if=virtio")
	}
	if g.Net == nil {
		args = append(args, "-net", "none")
		return args, nil
	}
	if g.Net.Port == 0 || g.Net.MAC == "" {
		return nil, errors.New("network needs a port and a MAC (BootAll sets them)")
	}
	args = append(args,
		"-device", "virtio-net-pci,netdev=n0,mac="+g.Net.MAC+",romfile=",
		"-netdev", fmt.Sprintf("socket,id=n0,mcast=230.0.0.1:%d,localaddr=127.0.0.1", g.Net.Port),
	)
	return args, nil
}

// BootAll boots guests in parallel and returns their results in the same
// order. Guests with a Net share one segment: a free port is chosen for
// the run unless set, and MACs are numbered in order. The error joins
// every guest's error.
func BootAll(ctx context.Context, guests []Guest) ([]*Result, error) {
	port := 0
	for i := range guests {
		n := guests[i].Net
		if n == nil {
			continue
		}
		c := *n
		if c.Port == 0 {
			if port == 0 {
				p, err := freePort()
				if err != nil {
					return nil, fmt.Errorf("boot all: %w", err)
				}
				port = p
			}
			c.Port = port
		}
		if c.MAC == "" {
			c.MAC = fmt.Sprintf("52:54:00:00:00:%02x", i+1)
		}
		guests[i].Net = &c
	}
	results := make([]*Result, len(guests))
	errs := make([]error, len(guests))
	var wg sync.WaitGroup
	for i, g := range guests {
		if g.Name == "" {
			g.Name = fmt.Sprintf("guest%d", i+1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Boot(ctx, g)
		}()
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

// freePort returns a UDP port nothing on this host uses right now, so
// that concurrent lab runs get separate network segments.
func freePort() (int, error) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.Close() }()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// consoleWriter keeps the whole console and streams complete lines to
// log with a prefix.
type consoleWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	prefix  string
	log     io.Writer
}

func (c *consoleWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		c.line(c.partial[:i])
		c.partial = c.partial[i+1:]
	}
	return len(p), nil
}

// terminalEscapes are the sequences SeaBIOS and the kernel send to the
// serial terminal (reset, clear screen, line wrap).
var terminalEscapes = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[a-zA-Z])`)

// line keeps one console line, without "\r" and terminal escapes.
func (c *consoleWriter) line(b []byte) {
	b = terminalEscapes.ReplaceAll(bytes.TrimRight(b, "\r"), nil)
	c.buf.Write(b)
	c.buf.WriteByte('\n')
	if c.log != nil {
		fmt.Fprintf(c.log, "%s%s\n", c.prefix, b)
	}
}

func (c *consoleWriter) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.partial) > 0 {
		c.line(c.partial)
		c.partial = nil
	}
}

func (c *consoleWriter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
