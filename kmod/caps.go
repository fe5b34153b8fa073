package kmod

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
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
