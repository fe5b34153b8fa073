package kmod

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// CapSysModule is the capability bit (linux/capability.h) that
// finit_module and delete_module check: without it in the effective set,
// every load and unload fails with EPERM.
const CapSysModule = 16

// maxStatusFile bounds /proc/self/status (about 1.5 KiB in practice).
const maxStatusFile = 64 << 10

// ErrNoCapSysModule says the process lacks CAP_SYS_MODULE in its
// effective capability set.
var ErrNoCapSysModule = errors.New("the process lacks CAP_SYS_MODULE in its effective capabilities")

// Capabilities is a capability set, one bit per capability number, as
// /proc/PID/status prints it.
type Capabilities uint64

// Has reports whether the set holds capability number c.
func (c Capabilities) Has(n uint) bool { return n < 64 && c&(1<<n) != 0 }

// EffectiveCapabilities reads this process's effective capability set
// (CapEff in proc/self/status below the root).
func (k FS) EffectiveCapabilities() (Capabilities, error) {
	path := k.path("proc", "self", "status")
	b, err := readRaw(path, maxStatusFile)
	if err != nil {
		return 0, err
	}
	c, err := parseCapEff(bytes.NewReader(b))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// CheckCapSysModule says, with ErrNoCapSysModule, whether this process
// may load and unload modules; an error reading the set is returned as
// it is.
func (k FS) CheckCapSysModule() error {
	c, err := k.EffectiveCapabilities()
	if err != nil {
		return err
	}
	if !c.Has(CapSysModule) {
		return fmt.Errorf("%w (CapEff %016x)", ErrNoCapSysModule, uint64(c))
	}
	return nil
}

// parseCapEff finds the "CapEff:\t<hex>" line of a status file.
func parseCapEff(r io.Reader) (Capabilities, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("CapEff %q: not a hexadecimal capability set", strings.TrimSpace(v))
		}
		return Capabilities(n), nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no CapEff line")
}

// Capabilities the agent keeps in a sandbox (linux/capability.h), by the
// names systemd's CapabilityBoundingSet= uses.
var capabilityNames = map[string]uint{
	"CAP_DAC_READ_SEARCH": 2, // read other users' /proc/PID/patch_state
	"CAP_SYS_MODULE":      CapSysModule,
	"CAP_SYSLOG":          34, // read /dev/kmsg under dmesg_restrict
}

// CapabilityByName returns the number of a capability the agent's
// sandbox may keep: CAP_SYS_MODULE, CAP_SYSLOG or CAP_DAC_READ_SEARCH.
func CapabilityByName(name string) (uint, error) {
	c, ok := capabilityNames[name]
	if !ok {
		return 0, fmt.Errorf("capability %q: want CAP_SYS_MODULE, CAP_SYSLOG or CAP_DAC_READ_SEARCH", name)
	}
	return c, nil
}

// ExecLimited executes path (argv, env) the way systemd starts a unit
// with CapabilityBoundingSet= and NoNewPrivileges=yes: every capability
// but keep is dropped from the bounding set and no_new_privs is set, so
// that the program, run as root, holds keep and nothing more, and gains
// nothing through setuid or file capabilities. Both settings belong to a
// thread, so the drop and the exec happen on one locked thread. It
// returns only on failure. The lab runs the agent this way where it has
// no systemd.
func ExecLimited(path string, argv, env []string, keep ...uint) error {
	runtime.LockOSThread()
	// Not unlocked: on success the process is replaced; on failure the
	// thread's privileges are no longer the process's, and it must die
	// with the goroutine.
	if err := limitPrivileges(keep); err != nil {
		return err
	}
	if err := syscall.Exec(path, argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

// CheckKernelAccess says whether this process can do what applying a
// livepatch needs beyond CAP_SYS_MODULE: read the kernel log (dev/kmsg,
// which every health check reads; ProtectKernelLogs= or PrivateDevices=
// hide it, and dmesg_restrict asks for CAP_SYSLOG) and write
// sys/kernel/livepatch (undo and stalled transitions write there;
// ProtectKernelTunables= makes it read-only). A kernel without livepatch
// support passes the second check: applies refuse there anyway, saying
// why.
func (k FS) CheckKernelAccess() error {
	f, err := os.Open(k.path("dev", "kmsg"))
	if err != nil {
		return fmt.Errorf("read the kernel log: %w", err)
	}
	_ = f.Close()
	if dir := k.livepatchDir(); exists(dir) {
		if err := accessWrite(dir); err != nil {
			return fmt.Errorf("write the livepatch interface: %w", err)
		}
	}
	return nil
}
