package ksrc

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/splicefleet/splicefleet/internal/atomicfile"
)

// Options says which kernel to prepare a source tree for.
type Options struct {
	// Source is an extracted kernel source tree of the target kernel's
	// version, e.g. Debian's /usr/src/linux-source-6.1.tar.xz extracted.
	// It is only read; it may be read-only.
	Source string
	// KernelBuild is the target kernel's headers or build folder
	// (/lib/modules/RELEASE/build, Debian's
	// /usr/src/linux-headers-RELEASE), which holds its .config.
	KernelBuild string
	// CacheDir holds the prepared object folders, one per kernel
	// source, configuration and compiler. Required.
	CacheDir string
	// Log receives progress lines and make's output. Nil discards.
	Log io.Writer
	// Jobs is make's -j. Zero means 2: hosts are shared.
	Jobs int
	// MaxHeaderUnits is how many units of the configuration a patched
	// header may reach before Compile refuses it. Zero means
	// DefaultMaxHeaderUnits.
	MaxHeaderUnits int
}

// Tree is a kernel source tree prepared for the target's configuration in
// an out-of-tree object folder, ready to compile single units.
type Tree struct {
	// Source and KernelBuild are the absolute forms of the options.
	Source, KernelBuild string
	// ObjDir is kbuild's object folder (make O=...) in the cache.
	ObjDir string
	// Version is the kernel version both sides agree on, e.g. "6.1.192".
	Version string
	// Release is what the target kernel's uname -r prints, which the
	// units are built with (UTS_RELEASE).
	Release string
	// CC is the compiler, as the target's CONFIG_CC_VERSION_TEXT names it.
	CC string
	// Reused says the object folder was prepared by an earlier call.
	Reused bool

	jobs           int
	maxHeaderUnits int
	log            io.Writer
	// foreign maps the patch's .c files outside the kernel's folders to
	// the objects Makefile rules build from them (foreign.go).
	foreign map[string]string
}

// kcflags are added to every compile: one section per function and per
// data object, so an object differ can compare functions one by one.
const kcflags = "-ffunction-sections -fdata-sections"

// cacheFormat changes when the layout of a prepared folder changes.
const cacheFormat = "splicefleet-ksrc-1"

// stampName marks a prepared object folder; written last.
const stampName = ".splicefleet-ready"

// Prepare makes (or reuses) an object folder in which single units of
// opts.Source build exactly as the target kernel's did: the target's
// .config, its compiler and release string, `make olddefconfig` and
// `make modules_prepare`. It refuses a source tree whose version differs
// from the headers', a configuration that kbuild changes here beyond the
// toolchain's version numbers, and a host that lacks build tools (one
// error listing the Debian packages). The folder is keyed by the source
// tree, its version, the .config, the compiler and the release, prepared
// under a lock and stamped ready last, so concurrent callers wait and an
// interrupted run is finished by the next.
func Prepare(ctx context.Context, opts Options) (*Tree, error) {
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	if opts.CacheDir == "" {
		return nil, errors.New("prepare: no cache folder given")
	}
	if opts.Jobs == 0 {
		opts.Jobs = 2
	}
	if opts.Jobs < 1 || opts.Jobs > 256 {
		return nil, fmt.Errorf("prepare: %d make jobs is not sensible", opts.Jobs)
	}
	src, err := realDir(opts.Source, "kernel source")
	if err != nil {
		return nil, err
	}
	build, err := realDir(opts.KernelBuild, "kernel build folder")
	if err != nil {
		return nil, err
	}
	cache, err := filepath.Abs(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(cache+"/", src+"/") {
		return nil, fmt.Errorf("prepare: the cache %s is inside the source tree %s, which Prepare never writes", cache, src)
	}

	// The source and the headers must be the same kernel.
	srcVer, err := sourceVersion(src)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if _, err := os.Stat(filepath.Join(src, "Kconfig")); err != nil {
		return nil, fmt.Errorf("prepare: %s has no Kconfig: is it a kernel source tree?", src)
	}
	hdrVer, from, err := headersVersion(build)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if !sameVersion(srcVer, hdrVer) {
		return nil, &VersionError{Source: src, SourceVersion: srcVer.String(), Headers: from, HeadersVersion: hdrVer.String()}
	}
	configFile := filepath.Join(build, ".config")
	configBytes, err := readBounded(configFile, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("prepare: the target configuration: %w (want the headers of the target kernel, "+
			"e.g. /lib/modules/RELEASE/build from linux-headers-RELEASE)", err)
	}
	config := parseConfig(configBytes)
	if a := archOf(config); a != runtime.GOARCH {
		return nil, fmt.Errorf("prepare: %s is for %s and this host is %s: cross-building is not supported", configFile, a, runtime.GOARCH)
	}
	cc, err := compilerOf(config)
	if err != nil {
		return nil, fmt.Errorf("prepare: %s: %w", configFile, err)
	}
	release, err := kernelRelease(build)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	needPahole := config["CONFIG_PAHOLE_VERSION"] != "" && config["CONFIG_PAHOLE_VERSION"] != "0"
	if err := newToolCheck().check(cc, needPahole); err != nil {
		return nil, err
	}
	ccText, err := output(ctx, cc, "--version")
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	ccText, _, _ = strings.Cut(strings.TrimSpace(ccText), "\n")
	if want := config.str("CONFIG_CC_VERSION_TEXT"); ccText != want {
		fmt.Fprintf(log, "ksrc: warning: the kernel was built with %q and this host has %q: "+
			"unchanged functions may compile differently\n", want, ccText)
	}

	key := cacheKey(src, srcVer, configBytes, ccText, release)
	t := &Tree{
		Source:      src,
		KernelBuild: build,
		ObjDir:      filepath.Join(cache, "obj-"+key[:16]),
		Version:     srcVer.String(),
		Release:     release,
		CC:          cc,
		jobs:        opts.Jobs,
		log:         log,

		maxHeaderUnits: cmp.Or(opts.MaxHeaderUnits, DefaultMaxHeaderUnits),
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	unlock, err := t.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()

	stamp := filepath.Join(t.ObjDir, stampName)
	if b, err := readBounded(stamp, maxSmallFile); err == nil && string(b) == key+"\n" {
		if _, err := os.Stat(filepath.Join(t.ObjDir, ".config")); err == nil {
			fmt.Fprintf(log, "ksrc: reusing %s prepared for %s\n", t.ObjDir, t.Release)
			t.Reused = true
			return t, nil
		}
	}

	start := time.Now()
	fmt.Fprintf(log, "ksrc: preparing %s (%s) for %s in %s; the first time takes minutes\n", src, t.Version, t.Release, t.ObjDir)
	_ = os.Remove(stamp)
	if err := os.MkdirAll(t.ObjDir, 0o755); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	// An interrupted run left a folder make can finish; only the
	// configuration is put back, since olddefconfig rewrites it.
	if err := os.WriteFile(filepath.Join(t.ObjDir, ".config"), configBytes, 0o644); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if err := t.make(ctx, log, "olddefconfig"); err != nil {
		return nil, fmt.Errorf("prepare: make olddefconfig: %w", err)
	}
	hereBytes, err := readBounded(filepath.Join(t.ObjDir, ".config"), maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	toolchain, other := configDrift(config, parseConfig(hereBytes))
	if len(toolchain) > 0 {
		fmt.Fprintf(log, "ksrc: toolchain versions differ from the target's: %s\n", strings.Join(toolchain, "; "))
	}
	if len(other) > 0 {
		return nil, driftError(other, toolchain, cc)
	}
	if err := t.make(ctx, log, "modules_prepare"); err != nil {
		return nil, fmt.Errorf("prepare: make modules_prepare: %w", err)
	}
	if err := writeAtomic(stamp, []byte(key+"\n")); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	fmt.Fprintf(log, "ksrc: prepared %s in %.1fs\n", t.ObjDir, time.Since(start).Seconds())
	return t, nil
}

// driftError explains a configuration kbuild changed: usually a tool the
// kernel's build had and this host lacks or has in another version.
func driftError(other, toolchain []string, cc string) error {
	const show = 12
	list := other
	more := ""
	if len(list) > show {
		more = fmt.Sprintf(" and %d more", len(list)-show)
		list = list[:show]
	}
	hint := "the host's toolchain differs from the one the kernel was built with"
	if len(toolchain) > 0 {
		hint += " (" + strings.Join(toolchain, "; ") + ")"
	}
	return fmt.Errorf("prepare: %w: %s%s; %s: install the same %s, binutils and pahole (dwarves) versions",
		ErrConfigDrift, strings.Join(list, "; "), more, hint, cc)
}

// cacheKey hashes what makes a prepared folder right for a target.
func cacheKey(src string, v kernelVersion, config []byte, ccText, release string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\nsource %s\nversion %s\ncc %s\nrelease %s\nkcflags %s\nconfig %d\n",
		cacheFormat, src, v, ccText, release, kcflags, len(config))
	h.Write(config)
	return hex.EncodeToString(h.Sum(nil))
}

// make runs kbuild in the object folder with the target's compiler and
// release and the section flags; every call passes the same variables,
// so kbuild never rebuilds because a command line changed.
func (t *Tree) make(ctx context.Context, log io.Writer, targets ...string) error {
	return t.makeEnv(ctx, log, nil, targets...)
}

// makeEnv is make with extra environment variables.
func (t *Tree) makeEnv(ctx context.Context, log io.Writer, env []string, targets ...string) error {
	args := []string{
		"-C", t.Source,
		"O=" + t.ObjDir,
		"CC=" + t.CC,
		"KERNELRELEASE=" + t.Release,
		"KCFLAGS=" + kcflags,
		fmt.Sprintf("-j%d", t.jobs),
	}
	return runEnv(ctx, t.ObjDir, log, nil, env, "make", append(args, targets...)...)
}

// lock takes an exclusive flock on the object folder's lock file in the
// cache, waiting for other processes (and other Trees) that hold it.
func (t *Tree) lock() (func(), error) {
	name := t.ObjDir + ".lock"
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// realDir returns dir as an absolute path with symbolic links resolved
// (/lib/modules/RELEASE/build is one), and checks it is a folder.
func realDir(dir, what string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("prepare: no %s given", what)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("prepare: %s: %w", what, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("prepare: %s: %w", what, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("prepare: %s %s is not a folder", what, dir)
	}
	return real, nil
}

// writeAtomic writes name through a temporary file, synced and renamed.
func writeAtomic(name string, b []byte) error {
	return atomicfile.WriteFile(name, b, 0o600)
}
