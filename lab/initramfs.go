package lab

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// File is a file the lab puts into a guest's initramfs.
type File struct {
	// Path is where the file lands in the guest, e.g. "/lab/fix.splice".
	Path string
	// Data is the content.
	Data []byte
	// Mode is the permission bits; zero means 0644.
	Mode fs.FileMode
}

// HostFile reads a host file into a File at guestPath, keeping its
// permission bits.
func HostFile(hostPath, guestPath string) (File, error) {
	b, err := os.ReadFile(hostPath)
	if err != nil {
		return File{}, err
	}
	fi, err := os.Stat(hostPath)
	if err != nil {
		return File{}, err
	}
	return File{Path: guestPath, Data: b, Mode: fi.Mode().Perm()}, nil
}

// NetModules are the modules a guest needs for virtio-net, in load order.
// Those the kernel has built in are skipped.
var NetModules = []string{
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
	"virtio_pci", "failover", "net_failover", "virtio_net",
}

// DiskModules are the modules a guest needs for a virtio-blk disk
// (/dev/vda), in load order.
var DiskModules = []string{
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
	"virtio_pci", "virtio_blk",
}

// Exit codes /init reports for its own failures, before the script runs.
const (
	ExitInitModule = 125 // a requested module did not load
	ExitInitNet    = 124 // eth0 could not be configured
)

// Initramfs is what goes into a guest's initramfs besides busybox, /init
// and /dev/console.
type Initramfs struct {
	// Script is the body of /lab/run.sh, run by busybox sh after the
	// guest is set up, with the folder /lab as working folder and the
	// shell function `mark KEY VALUE...` (prints "@@LAB KEY VALUE...").
	// Its exit status becomes Result.ExitCode.
	Script string
	// Splicefleet is the host path of a static splicefleet binary, put at
	// /bin/splicefleet. Empty leaves it out.
	Splicefleet string
	// Files are extra files. /tmp and /var are fresh tmpfs mounts in the
	// guest, so files placed under them are not visible; use /lab or
	// /etc and copy in the script.
	Files []File
	// Modules are kernel module names (as in lsmod) taken from the
	// kernel's ModulesDir and loaded in this order; built-in ones are
	// skipped.
	Modules []string
	// Addr, when set, is the CIDR address /init gives eth0 (for example
	// "10.0.0.1/24"); it needs NetModules.
	Addr string
}

// WriteInitramfs writes the gzip-compressed newc cpio archive for spec
// and kernel k to w. Every entry has mtime 0 and owner root, so the same
// inputs give the same bytes.
func WriteInitramfs(w io.Writer, k *DebianKernel, spec Initramfs) error {
	files := map[string]File{}
	add := func(f File) error {
		p := path.Clean("/" + f.Path)
		if p == "/" {
			return fmt.Errorf("initramfs: file without a path")
		}
		if _, dup := files[p]; dup {
			return fmt.Errorf("initramfs: %s added twice", p)
		}
		f.Path = p
		files[p] = f
		return nil
	}
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		return fmt.Errorf("initramfs: %w (install busybox-static)", err)
	}
	if err := add(File{Path: "/bin/busybox", Data: bb, Mode: 0o755}); err != nil {
		return err
	}
	if spec.Splicefleet != "" {
		b, err := os.ReadFile(spec.Splicefleet)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		if err := add(File{Path: "/bin/splicefleet", Data: b, Mode: 0o755}); err != nil {
			return err
		}
	}
	var load []string
	if len(spec.Modules) > 0 {
		if k == nil {
			return errors.New("initramfs: modules need a kernel")
		}
		mods, err := k.moduleFiles(spec.Modules)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		for _, m := range mods {
			if m.path == "" {
				continue // built in
			}
			b, err := os.ReadFile(m.path)
			if err != nil {
				return fmt.Errorf("initramfs: %w", err)
			}
			guest := "/lib/modules/lab/" + m.name + ".ko"
			if err := add(File{Path: guest, Data: b}); err != nil {
				return err
			}
			load = append(load, guest)
		}
	}
	for _, f := range spec.Files {
		if err := add(f); err != nil {
			return err
		}
	}
	if err := add(File{Path: "/init", Data: []byte(initScript(load, spec.Addr)), Mode: 0o755}); err != nil {
		return err
	}
	if err := add(File{Path: "/lab/lib.sh", Data: []byte(libScript)}); err != nil {
		return err
	}
	if err := add(File{Path: "/lab/run.sh", Data: []byte(spec.Script), Mode: 0o755}); err != nil {
		return err
	}

	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	cw := &cpioWriter{w: bufio.NewWriterSize(zw, 1<<20)}
	// Folders first (the kernel creates entries in archive order), then
	// files, both sorted.
	dirs := map[string]bool{"/dev": true, "/proc": true, "/sys": true, "/tmp": true, "/var": true, "/run": true, "/lab": true}
	for p := range files {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range sortedKeys(dirs) {
		cw.entry(d, modeDir|0o755, 0, nil)
	}
	cw.entry("/dev/console", modeChar|0o600, mkdev(5, 1), nil)
	for _, p := range sortedKeys(files) {
		f := files[p]
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		cw.entry(p, modeFile|uint32(mode), 0, f.Data)
	}
	cw.trailer()
	if cw.err != nil {
		return fmt.Errorf("initramfs: %w", cw.err)
	}
	if err := cw.w.Flush(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return zw.Close()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// libScript is sourced before the caller's script.
const libScript = `# Helpers for lab scripts.
mark() { echo "@@LAB $*"; }
`

// initScript is the guest's /init: busybox sh as PID 1.
func initScript(modules []string, addr string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var
mount -t tmpfs tmpfs /run
read up rest < /proc/uptime
echo "@@LAB-BOOT $up"
fail() { echo "lab-init: $2"; echo "@@LAB-EXIT $1"; poweroff -f; }
`)
	for _, m := range modules {
		fmt.Fprintf(&b, "insmod %s || fail %d 'insmod %s failed'\n", m, ExitInitModule, path.Base(m))
	}
	b.WriteString("ip link set lo up\n")
	if addr != "" {
		fmt.Fprintf(&b, "ip addr add %s dev eth0 && ip link set eth0 up || fail %d 'cannot configure eth0 as %s'\n", addr, ExitInitNet, addr)
	}
	b.WriteString(`cd /lab
sh -c '. /lab/lib.sh; . /lab/run.sh'
code=$?
sync
echo "@@LAB-EXIT $code"
poweroff -f
`)
	return b.String()
}

type moduleFile struct {
	name string
	path string // empty when built in
}

// moduleFiles finds each named module in ModulesDir (dashes and
// underscores are the same, as for modprobe); a module the kernel has
// built in gets an empty path.
func (k *DebianKernel) moduleFiles(names []string) ([]moduleFile, error) {
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(k.ModulesDir, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			builtin[moduleName(line)] = true
		}
	} else {
		return nil, err
	}
	found := map[string]string{}
	err := filepath.WalkDir(filepath.Join(k.ModulesDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			found[moduleName(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []moduleFile
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		if seen[n] {
			continue
		}
		seen[n] = true
		switch p := found[n]; {
		case builtin[n]:
			out = append(out, moduleFile{name: n})
		case p == "":
			return nil, fmt.Errorf("module %s: not in %s", n, k.ModulesDir)
		case !strings.HasSuffix(p, ".ko"):
			return nil, fmt.Errorf("module %s: %s is compressed; the lab loads only plain .ko files", n, p)
		default:
			out = append(out, moduleFile{name: n, path: p})
		}
	}
	return out, nil
}

// moduleName turns a module path (kernel/drivers/net/virtio_net.ko,
// possibly compressed) into its name (virtio_net).
func moduleName(p string) string {
	base := path.Base(filepath.ToSlash(p))
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// newc cpio format (the kernel's initramfs format).
const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChar = 0o020000
)

func mkdev(major, minor uint32) uint64 { return uint64(major)<<32 | uint64(minor) }

type cpioWriter struct {
	w   *bufio.Writer
	ino uint32
	err error
}

func (c *cpioWriter) entry(name string, mode uint32, rdev uint64, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	name = strings.TrimPrefix(name, "/")
	nlink := 1
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	var hdr bytes.Buffer
	fmt.Fprintf(&hdr, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data),
		0, 0, uint32(rdev>>32), uint32(rdev), len(name)+1, 0)
	hdr.WriteString(name)
	hdr.WriteByte(0)
	pad(&hdr, hdr.Len())
	if _, err := c.w.Write(hdr.Bytes()); err != nil {
		c.err = err
		return
	}
	if _, err := c.w.Write(data); err != nil {
		c.err = err
		return
	}
	if n := (4 - len(data)%4) % 4; n > 0 {
		_, c.err = c.w.Write(make([]byte, n))
	}
}

func pad(b *bytes.Buffer, n int) {
	for ; n%4 != 0; n++ {
		b.WriteByte(0)
	}
}

func (c *cpioWriter) trailer() {
	c.entry("TRAILER!!!", 0, 0, nil)
}
