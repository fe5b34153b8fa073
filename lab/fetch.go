package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CacheEnv names the environment variable that overrides the lab's cache
// folder (default <repo>/.cache/lab).
const CacheEnv = "SPLICEFLEET_LAB_CACHE"

// Busybox is where Debian's busybox-static puts the static busybox the
// guests use as their userland.
const Busybox = "/bin/busybox"

// Qemu is the emulator the lab runs.
const Qemu = "qemu-system-x86_64"

// Host packages the lab needs; installed by Fetch when running as root.
var hostPackages = []string{"qemu-system-x86", "busybox-static", "ovmf"}

// FetchOptions configures Fetch. The zero value is ready to use.
type FetchOptions struct {
	// CacheDir holds downloaded packages and unpacked kernels. Empty means
	// $SPLICEFLEET_LAB_CACHE, or else <repo>/.cache/lab.
	CacheDir string
	// Log receives one line per slow step (apt, download, unpack).
	// Nil discards.
	Log io.Writer
	// ABI pins the kernel, e.g. "6.1.0-53": Fetch takes that ABI's image
	// and headers (at the version the archive serves for them) instead of
	// resolving the newest from the metapackages. Empty means the newest.
	ABI string
}

// DebianKernel is a Debian kernel unpacked into the lab's cache.
type DebianKernel struct {
	// ABI is the kernel ABI, e.g. "6.1.0-56".
	ABI string
	// Release is what `uname -r` prints in a guest, e.g. "6.1.0-56-cloud-amd64".
	Release string
	// PackageVersion is the Debian version of the packages, e.g. "6.1.192-2".
	PackageVersion string
	// ImagePackage is the image package that was unpacked (the unsigned one
	// when the mirror has it).
	ImagePackage string
	// Root is the folder the packages were unpacked into.
	Root string
	// Vmlinuz is the kernel image to boot.
	Vmlinuz string
	// ModulesDir is lib/modules/<Release> in the unpacked tree.
	ModulesDir string
	// HeadersDir is the flavour headers folder, usable as
	// `make -C <HeadersDir> M=<dir> modules`.
	HeadersDir string
}

// String says which kernel the lab runs, for logs and summaries.
func (k *DebianKernel) String() string {
	return fmt.Sprintf("Debian %s (%s %s)", k.Release, k.ImagePackage, k.PackageVersion)
}

// resolved is what the metapackages point at.
type resolved struct {
	abi     string
	version string
	image   string   // image package name (unsigned when available)
	others  []string // headers, common headers, kbuild
	// pins are the versions of others that differ from version: a pinned
	// ABI's headers take kbuild at any version >= theirs, and the archive
	// may serve only a newer one.
	pins map[string]string
}

// flavour is the Debian kernel flavour the lab uses: it has livepatch
// support and boots quickly under QEMU.
const flavour = "cloud-amd64"

// aptUpdate runs apt-get update at most once per process.
var aptUpdate struct {
	sync.Mutex
	done bool
}

func aptUpdated() bool {
	aptUpdate.Lock()
	defer aptUpdate.Unlock()
	return aptUpdate.done
}

func forgetResolved() {
	resolvedOnce.Lock()
	defer resolvedOnce.Unlock()
	resolvedOnce.r = nil
}

func updateAptOnce(ctx context.Context, log io.Writer) error {
	aptUpdate.Lock()
	defer aptUpdate.Unlock()
	if aptUpdate.done {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("apt-get update needs root")
	}
	fmt.Fprintln(log, "lab: apt-get update")
	if _, err := run(ctx, "", "apt-get", "update", "-qq"); err != nil {
		return err
	}
	aptUpdate.done = true
	return nil
}

// Fetch makes sure QEMU and busybox are installed and that the current
// Debian cloud kernel is unpacked in the cache, and returns it. Concurrent
// calls, also from other processes, are serialised by a lock on the cache.
func Fetch(ctx context.Context, opts FetchOptions) (*DebianKernel, error) {
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	cache, err := cacheDir(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	unlock, err := lockDir(cache)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if err := ensureHostTools(ctx, log); err != nil {
		return nil, err
	}
	resolve := resolveKernel
	if opts.ABI != "" {
		if _, err := kernelSeries(opts.ABI); err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		resolve = func(ctx context.Context) (resolved, error) { return resolvePinned(ctx, opts.ABI) }
	}
	r, err := resolve(ctx)
	if err != nil {
		// Empty or stale package lists: refresh them once and retry.
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("fetch: %w (run `apt-get update` as root)", err)
		}
		if uerr := updateAptOnce(ctx, log); uerr != nil {
			return nil, fmt.Errorf("fetch: %w", uerr)
		}
		if r, err = resolve(ctx); err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
	}
	k := kernelAt(filepath.Join(cache, r.abi, "root"), r)
	ready := filepath.Join(cache, r.abi, "ready")
	if b, err := os.ReadFile(ready); err == nil && string(b) == readyStamp(r) {
		if err := k.check(); err == nil {
			return k, nil
		}
	}
	start := time.Now()
	if err := unpackKernel(ctx, log, cache, r, k); err != nil {
		// Stale package lists name a kernel the mirror no longer serves:
		// refresh them once, resolve again and retry.
		if os.Geteuid() != 0 || aptUpdated() {
			return nil, fmt.Errorf("fetch kernel %s: %w", r.abi, err)
		}
		fmt.Fprintf(log, "lab: %v; refreshing the package lists\n", err)
		forgetResolved()
		if uerr := updateAptOnce(ctx, log); uerr != nil {
			return nil, fmt.Errorf("fetch kernel %s: %w", r.abi, uerr)
		}
		if r, err = resolve(ctx); err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		k = kernelAt(filepath.Join(cache, r.abi, "root"), r)
		ready = filepath.Join(cache, r.abi, "ready")
		if err := unpackKernel(ctx, log, cache, r, k); err != nil {
			return nil, fmt.Errorf("fetch kernel %s: %w", r.abi, err)
		}
	}
	if err := k.check(); err != nil {
		return nil, fmt.Errorf("fetch kernel %s: %w", r.abi, err)
	}
	if err := os.WriteFile(ready, []byte(readyStamp(r)), 0o644); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	fmt.Fprintf(log, "lab: %s ready in %.1fs\n", k, time.Since(start).Seconds())
	return k, nil
}

func readyStamp(r resolved) string {
	return r.image + "=" + r.version + "\n"
}

func kernelAt(root string, r resolved) *DebianKernel {
	release := r.abi + "-" + flavour
	return &DebianKernel{
		ABI:            r.abi,
		Release:        release,
		PackageVersion: r.version,
		ImagePackage:   r.image,
		Root:           root,
		Vmlinuz:        filepath.Join(root, "boot", "vmlinuz-"+release),
		ModulesDir:     filepath.Join(root, "lib", "modules", release),
		HeadersDir:     filepath.Join(root, "usr", "src", "linux-headers-"+release),
	}
}

// check confirms the unpacked tree has what the lab uses.
func (k *DebianKernel) check() error {
	for _, p := range []string{
		k.Vmlinuz,
		filepath.Join(k.ModulesDir, "modules.builtin"),
		filepath.Join(k.HeadersDir, "Makefile"),
	} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("unpacked kernel incomplete: %w", err)
		}
	}
	return nil
}

// cacheDir picks the cache folder: the option, the environment, or the
// repository's .cache/lab.
func cacheDir(opt string) (string, error) {
	if opt != "" {
		return filepath.Abs(opt)
	}
	if env := os.Getenv(CacheEnv); env != "" {
		return filepath.Abs(env)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("cache folder: %w (or set %s)", err, CacheEnv)
	}
	return filepath.Join(root, ".cache", "lab"), nil
}

// lockDir takes an exclusive flock on dir/lock, waiting for other
// processes that hold it.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// MissingTools lists what the lab needs on the host and does not find.
func MissingTools() []string {
	var missing []string
	if _, err := exec.LookPath(Qemu); err != nil {
		missing = append(missing, Qemu+" (Debian package qemu-system-x86)")
	}
	if _, err := os.Stat(Busybox); err != nil {
		missing = append(missing, Busybox+" (Debian package busybox-static)")
	}
	if _, err := os.Stat(OVMF); err != nil {
		missing = append(missing, OVMF+" (Debian package ovmf)")
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (a Debian host)")
		}
	}
	return missing
}

// ensureHostTools installs QEMU and busybox-static as root when missing;
// otherwise it says exactly what to install.
func ensureHostTools(ctx context.Context, log io.Writer) error {
	missing := MissingTools()
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("lab needs %s: run `apt-get install -y --no-install-recommends %s` as root",
			strings.Join(missing, ", "), strings.Join(hostPackages, " "))
	}
	if err := updateAptOnce(ctx, log); err != nil {
		return fmt.Errorf("install lab tools: %w", err)
	}
	fmt.Fprintf(log, "lab: apt-get install %s\n", strings.Join(hostPackages, " "))
	args := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, hostPackages...)
	if _, err := run(ctx, "", "apt-get", args...); err != nil {
		return fmt.Errorf("install lab tools: %w", err)
	}
	if missing := MissingTools(); len(missing) > 0 {
		return fmt.Errorf("install lab tools: still missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// resolveKernel reads the current ABI and package version from the
// candidate versions of the cloud metapackages. apt-cache rebuilds its
// cache on every call on hosts that disable pkgcache.bin (about 1.5 s), so
// it runs twice, and the answer is kept for the rest of the process.
func resolveKernel(ctx context.Context) (resolved, error) {
	resolvedOnce.Lock()
	defer resolvedOnce.Unlock()
	if resolvedOnce.r != nil {
		return *resolvedOnce.r, nil
	}
	var r resolved
	imageMeta, headersMeta := "linux-image-"+flavour, "linux-headers-"+flavour
	metas, err := aptShow(ctx, imageMeta, headersMeta)
	if err != nil {
		return r, err
	}
	imgPkg, imgVer, err := pinnedDepend(metas[imageMeta], "linux-image-", "-"+flavour)
	if err != nil {
		return r, err
	}
	hdrPkg, hdrVer, err := pinnedDepend(metas[headersMeta], "linux-headers-", "-"+flavour)
	if err != nil {
		return r, err
	}
	abi := strings.TrimSuffix(strings.TrimPrefix(imgPkg, "linux-image-"), "-"+flavour)
	if habi := strings.TrimSuffix(strings.TrimPrefix(hdrPkg, "linux-headers-"), "-"+flavour); habi != abi || hdrVer != imgVer {
		return r, fmt.Errorf("resolve kernel: image %s %s and headers %s %s disagree", imgPkg, imgVer, hdrPkg, hdrVer)
	}
	r.abi, r.version = abi, imgVer

	// The unsigned image is the same kernel without the Secure Boot
	// signature; the signed one is the fallback when the mirror lacks it.
	r.image = imgPkg
	pkgs, err := aptShow(ctx, hdrPkg, imgPkg+"-unsigned")
	if err != nil {
		if pkgs, err = aptShow(ctx, hdrPkg); err != nil {
			return r, err
		}
	}
	if u := pkgs[imgPkg+"-unsigned"]; u != nil && u["Version"] == imgVer {
		r.image = imgPkg + "-unsigned"
	}
	// The flavour headers depend on the common headers and on kbuild.
	r.others = []string{hdrPkg}
	for _, dep := range splitDepends(pkgs[hdrPkg]["Depends"]) {
		name := dep.name
		if strings.HasPrefix(name, "linux-headers-") && strings.HasSuffix(name, "-common") ||
			strings.HasPrefix(name, "linux-kbuild-") {
			r.others = append(r.others, name)
		}
	}
	if len(r.others) != 3 {
		return r, fmt.Errorf("resolve kernel: %s depends on %v, want common headers and kbuild", hdrPkg, r.others[1:])
	}
	resolvedOnce.r = &r
	return r, nil
}

// resolvePinned resolves the packages of one ABI (a kernel the
// metapackages no longer point at, e.g. the one a corpus is measured
// against): the flavour headers' candidate version names the kernel's
// package version; the image must have the same; the common headers and
// kbuild are what the headers depend on, kbuild at its candidate version
// (the headers require it at their version or later).
func resolvePinned(ctx context.Context, abi string) (resolved, error) {
	r := resolved{abi: abi}
	imgPkg, hdrPkg := "linux-image-"+abi+"-"+flavour, "linux-headers-"+abi+"-"+flavour
	pkgs, err := aptShow(ctx, hdrPkg, imgPkg+"-unsigned")
	if err != nil {
		if pkgs, err = aptShow(ctx, hdrPkg, imgPkg); err != nil {
			return r, err
		}
	}
	r.version = pkgs[hdrPkg]["Version"]
	r.image = imgPkg
	if u := pkgs[imgPkg+"-unsigned"]; u != nil && u["Version"] == r.version {
		r.image = imgPkg + "-unsigned"
	} else if i := pkgs[imgPkg]; i == nil || i["Version"] != r.version {
		return r, fmt.Errorf("resolve kernel %s: no image package at the headers' version %s", abi, r.version)
	}
	r.others = []string{hdrPkg}
	r.pins = map[string]string{}
	for _, dep := range splitDepends(pkgs[hdrPkg]["Depends"]) {
		switch {
		case strings.HasPrefix(dep.name, "linux-headers-") && strings.HasSuffix(dep.name, "-common"):
			r.others = append(r.others, dep.name)
		case strings.HasPrefix(dep.name, "linux-kbuild-"):
			kb, err := aptShow(ctx, dep.name)
			if err != nil {
				return r, err
			}
			r.others = append(r.others, dep.name)
			r.pins[dep.name] = kb[dep.name]["Version"]
		}
	}
	if len(r.others) != 3 {
		return r, fmt.Errorf("resolve kernel: %s depends on %v, want common headers and kbuild", hdrPkg, r.others[1:])
	}
	return r, nil
}

var resolvedOnce struct {
	sync.Mutex
	r *resolved
}

// pinnedDepend finds the dependency of a metapackage named
// prefix...suffix, pinned with "(= version)".
func pinnedDepend(fields map[string]string, prefix, suffix string) (name, version string, err error) {
	for _, dep := range splitDepends(fields["Depends"]) {
		if strings.HasPrefix(dep.name, prefix) && strings.HasSuffix(dep.name, suffix) && dep.op == "=" {
			return dep.name, dep.version, nil
		}
	}
	return "", "", fmt.Errorf("resolve kernel: %s (version %s) has no %s*%s dependency", fields["Package"], fields["Version"], prefix, suffix)
}

// aptShow returns the fields of each package's candidate version, by
// package name.
func aptShow(ctx context.Context, pkgs ...string) (map[string]map[string]string, error) {
	out, err := run(ctx, "", "apt-cache", append([]string{"show", "--no-all-versions"}, pkgs...)...)
	if err != nil {
		return nil, fmt.Errorf("resolve kernel: %w", err)
	}
	byName := map[string]map[string]string{}
	for _, stanza := range strings.Split(string(out), "\n\n") {
		if f := parseControl([]byte(stanza)); f["Package"] != "" {
			byName[f["Package"]] = f
		}
	}
	for _, p := range pkgs {
		if byName[p] == nil {
			return byName, fmt.Errorf("resolve kernel: apt-cache knows no package %s", p)
		}
	}
	return byName, nil
}

// parseControl reads the first stanza of Debian control data; continuation
// lines are joined to their field.
func parseControl(b []byte) map[string]string {
	fields := map[string]string{}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(fields) > 0 {
				break
			}
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && last != "" {
			fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		last = k
		fields[k] = strings.TrimSpace(v)
	}
	return fields
}

type dependency struct{ name, op, version string }

// splitDepends parses a Depends field; of alternatives ("a | b") only the
// first is kept.
func splitDepends(s string) []dependency {
	var deps []dependency
	for _, part := range strings.Split(s, ",") {
		alt, _, _ := strings.Cut(part, "|")
		alt = strings.TrimSpace(alt)
		if alt == "" {
			continue
		}
		var d dependency
		name, rest, _ := strings.Cut(alt, "(")
		d.name, _, _ = strings.Cut(strings.TrimSpace(name), ":")
		if rest != "" {
			rest = strings.TrimSuffix(strings.TrimSpace(rest), ")")
			f := strings.Fields(rest)
			if len(f) == 2 {
				d.op, d.version = f[0], f[1]
			}
		}
		deps = append(deps, d)
	}
	return deps
}

// unpackKernel downloads the packages into cache/debs (once) and unpacks
// them into a fresh k.Root.
func unpackKernel(ctx context.Context, log io.Writer, cache string, r resolved, k *DebianKernel) error {
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	var files []string
	for _, pkg := range append([]string{r.image}, r.others...) {
		version := r.version
		if v, ok := r.pins[pkg]; ok {
			version = v
		}
		f, err := downloadDeb(ctx, log, debs, pkg, version)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	abiDir := filepath.Dir(k.Root)
	if err := os.RemoveAll(abiDir); err != nil {
		return err
	}
	if err := os.MkdirAll(k.Root, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintf(log, "lab: dpkg -x %s\n", filepath.Base(f))
		if _, err := run(ctx, "", "dpkg", "-x", f, k.Root); err != nil {
			return err
		}
	}
	return repointHeaders(k)
}

// downloadDeb fetches pkg=version with apt-get download into debs, named
// <pkg>_<version>.deb, unless it is there already. apt-get downloads into
// a scratch folder first so a partial file is never taken for a package.
func downloadDeb(ctx context.Context, log io.Writer, debs, pkg, version string) (string, error) {
	dst := filepath.Join(debs, pkg+"_"+strings.ReplaceAll(version, ":", "%3a")+".deb")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	tmp, err := os.MkdirTemp(debs, "download-")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	fmt.Fprintf(log, "lab: apt-get download %s=%s\n", pkg, version)
	args := []string{"download", "-q", "-o", "APT::Sandbox::User=root", pkg + "=" + version}
	if _, err := run(ctx, tmp, "apt-get", args...); err != nil {
		return "", err
	}
	got, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil || len(got) != 1 {
		return "", fmt.Errorf("apt-get download %s: got %v", pkg, got)
	}
	if err := os.Rename(got[0], dst); err != nil {
		return "", err
	}
	return dst, nil
}

// repointHeaders makes the flavour headers' Makefile include the common
// headers from the unpacked tree instead of the absolute /usr/src path.
func repointHeaders(k *DebianKernel) error {
	mk := filepath.Join(k.HeadersDir, "Makefile")
	b, err := os.ReadFile(mk)
	if err != nil {
		return err
	}
	common := "/usr/src/linux-headers-" + k.ABI + "-common"
	if !bytes.Contains(b, []byte(common)) {
		return fmt.Errorf("repoint headers: %s does not mention %s", mk, common)
	}
	b = bytes.ReplaceAll(b, []byte(common), []byte(filepath.Join(k.Root, common)))
	return os.WriteFile(mk, b, 0o644)
}

// RepoRoot finds the splicefleet repository: from this source file when
// the build kept its path, else from `go env GOMOD` in the working folder.
func RepoRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		root := filepath.Dir(filepath.Dir(file))
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			return root, nil
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find repository: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find repository: not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// run runs a program and returns its stdout; the error carries the
// command and the tail of its stderr.
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	return runEnv(ctx, dir, nil, name, args...)
}

// runEnv is run with extra environment variables.
func runEnv(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(stderr.String(), 800))
	}
	return out, nil
}

// tail returns at most the last n bytes of s, trimmed.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}
