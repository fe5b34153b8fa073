package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FetchSource makes sure the Debian kernel source package matching k
// (linux-source-<major>.<minor> at exactly k.PackageVersion) is downloaded
// and its tarball extracted in the cache, and returns the extracted tree,
// e.g. <cache>/source/6.1.192-2/linux-source-6.1. The tree is extracted
// once, under the cache lock, and marked ready last; later calls return it
// at once. Callers must treat the tree as read-only: it is shared.
func FetchSource(ctx context.Context, opts FetchOptions, k *DebianKernel) (string, error) {
	if k == nil || k.ABI == "" || k.PackageVersion == "" {
		return "", errors.New("fetch source: no kernel given (call Fetch first)")
	}
	series, err := kernelSeries(k.ABI)
	if err != nil {
		return "", fmt.Errorf("fetch source: %w", err)
	}
	return FetchSourceVersion(ctx, opts, series, k.PackageVersion)
}

// FetchSourceVersion is FetchSource for any version of the source package
// of a series ("6.1"), e.g. the later side of a corpus of fixes.
func FetchSourceVersion(ctx context.Context, opts FetchOptions, series, version string) (string, error) {
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	if series == "" || version == "" {
		return "", errors.New("fetch source: no series or version given")
	}
	pkg := "linux-source-" + series
	cache, err := cacheDir(opts.CacheDir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("fetch source: %w", err)
	}
	unlock, err := lockDir(cache)
	if err != nil {
		return "", err
	}
	defer unlock()

	dir := filepath.Join(cache, "source", strings.ReplaceAll(version, ":", "%3a"))
	tree := filepath.Join(dir, pkg)
	ready := filepath.Join(dir, "ready")
	stamp := pkg + "=" + version + "\n"
	if b, err := os.ReadFile(ready); err == nil && string(b) == stamp {
		if _, err := os.Stat(filepath.Join(tree, "Makefile")); err == nil {
			return tree, nil
		}
	}

	start := time.Now()
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", fmt.Errorf("fetch source: %w", err)
	}
	deb, err := downloadPinned(ctx, log, debs, pkg, version)
	if err != nil {
		return "", fmt.Errorf("fetch source %s=%s: %w (the mirror may no longer serve this version; "+
			"it must match the kernel exactly)", pkg, version, err)
	}

	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("fetch source: %w", err)
	}
	unpacked := filepath.Join(dir, "deb")
	if err := os.MkdirAll(unpacked, 0o755); err != nil {
		return "", fmt.Errorf("fetch source: %w", err)
	}
	fmt.Fprintf(log, "lab: dpkg -x %s\n", filepath.Base(deb))
	if _, err := run(ctx, "", "dpkg", "-x", deb, unpacked); err != nil {
		return "", fmt.Errorf("fetch source: %w", err)
	}
	tarball := filepath.Join(unpacked, "usr", "src", pkg+".tar.xz")
	if _, err := os.Stat(tarball); err != nil {
		return "", fmt.Errorf("fetch source: %s has no %s: %w", filepath.Base(deb), "usr/src/"+pkg+".tar.xz", err)
	}
	fmt.Fprintf(log, "lab: extracting %s (about a minute)\n", filepath.Base(tarball))
	if _, err := run(ctx, "", "tar", "-C", dir, "-xJf", tarball, "--no-same-owner"); err != nil {
		return "", fmt.Errorf("fetch source: %w", err)
	}
	if err := os.RemoveAll(unpacked); err != nil {
		return "", fmt.Errorf("fetch source: %w", err)
	}
	if _, err := os.Stat(filepath.Join(tree, "Makefile")); err != nil {
		return "", fmt.Errorf("fetch source: the tarball did not give %s: %w", tree, err)
	}
	if err := os.WriteFile(ready, []byte(stamp), 0o644); err != nil {
		return "", fmt.Errorf("fetch source: %w", err)
	}
	fmt.Fprintf(log, "lab: kernel source %s=%s ready in %.1fs\n", pkg, version, time.Since(start).Seconds())
	return tree, nil
}

// kernelSeries returns the "major.minor" of an ABI such as "6.1.0-56",
// which names Debian's source package (linux-source-6.1).
func kernelSeries(abi string) (string, error) {
	parts := strings.SplitN(abi, ".", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" ||
		strings.Trim(parts[0], "0123456789") != "" || strings.Trim(parts[1], "0123456789") != "" {
		return "", fmt.Errorf("kernel ABI %q is not MAJOR.MINOR.x", abi)
	}
	return parts[0] + "." + parts[1], nil
}

// downloadPinned is downloadDeb, refreshing stale package lists (as root)
// once when the mirror's version is not known yet.
func downloadPinned(ctx context.Context, log io.Writer, debs, pkg, version string) (string, error) {
	deb, err := downloadDeb(ctx, log, debs, pkg, version)
	if err != nil && os.Geteuid() == 0 && !aptUpdated() {
		fmt.Fprintf(log, "lab: %v; refreshing the package lists\n", err)
		if uerr := updateAptOnce(ctx, log); uerr != nil {
			return "", uerr
		}
		deb, err = downloadDeb(ctx, log, debs, pkg, version)
	}
	return deb, err
}

// FetchChangelog returns Debian's changelog of linux-source-<series> at
// version (usr/share/doc/<package>/changelog.Debian.gz, decompressed): per
// upload, the upstream stable updates it merged with their commit
// subjects, and the CVEs of many. The package is downloaded once into the
// cache (FetchSourceVersion uses the same file).
func FetchChangelog(ctx context.Context, opts FetchOptions, series, version string) ([]byte, error) {
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	pkg := "linux-source-" + series
	cache, err := cacheDir(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, fmt.Errorf("fetch changelog: %w", err)
	}
	unlock, err := lockDir(cache)
	if err != nil {
		return nil, err
	}
	defer unlock()
	deb, err := downloadPinned(ctx, log, debs, pkg, version)
	if err != nil {
		return nil, fmt.Errorf("fetch changelog of %s=%s: %w", pkg, version, err)
	}
	member := "./usr/share/doc/" + pkg + "/changelog.Debian.gz"
	out, err := run(ctx, "", "sh", "-c", fmt.Sprintf("dpkg-deb --fsys-tarfile '%s' | tar -xO '%s' | gzip -dc", deb, member))
	if err != nil {
		return nil, fmt.Errorf("fetch changelog: extract %s: %w", member, err)
	}
	if !strings.HasPrefix(string(out), "linux (") {
		return nil, fmt.Errorf("fetch changelog: %s in %s is not a Debian changelog of linux", member, filepath.Base(deb))
	}
	return out, nil
}

// FetchDebugInfo unpacks the kernel's -dbg package (linux-image-<release>-dbg
// at exactly k.PackageVersion: vmlinux and every module with DWARF debug
// info, and the real System.map) into <cache>/dbg/<ABI> once, stamped
// ready last, and returns that folder; the files are under
// usr/lib/debug. The debug info says which source files kbuild compiled
// into vmlinux and into each module. About 1.8 GB unpacked.
func FetchDebugInfo(ctx context.Context, opts FetchOptions, k *DebianKernel) (string, error) {
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	if k == nil || k.Release == "" || k.PackageVersion == "" {
		return "", errors.New("fetch debug info: no kernel given (call Fetch first)")
	}
	cache, err := cacheDir(opts.CacheDir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("fetch debug info: %w", err)
	}
	unlock, err := lockDir(cache)
	if err != nil {
		return "", err
	}
	defer unlock()
	pkg := "linux-image-" + k.Release + "-dbg"
	dir := filepath.Join(cache, "dbg", k.ABI)
	ready := filepath.Join(dir, "ready")
	stamp := pkg + "=" + k.PackageVersion + "\n"
	if b, err := os.ReadFile(ready); err == nil && string(b) == stamp {
		return dir, nil
	}
	start := time.Now()
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", fmt.Errorf("fetch debug info: %w", err)
	}
	deb, err := downloadPinned(ctx, log, debs, pkg, k.PackageVersion)
	if err != nil {
		return "", fmt.Errorf("fetch debug info %s=%s: %w", pkg, k.PackageVersion, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("fetch debug info: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("fetch debug info: %w", err)
	}
	fmt.Fprintf(log, "lab: unpacking %s (about a minute)\n", filepath.Base(deb))
	if _, err := run(ctx, "", "dpkg", "-x", deb, dir); err != nil {
		return "", fmt.Errorf("fetch debug info: %w", err)
	}
	if err := os.WriteFile(ready, []byte(stamp), 0o644); err != nil {
		return "", fmt.Errorf("fetch debug info: %w", err)
	}
	fmt.Fprintf(log, "lab: debug info of %s ready in %.1fs\n", k.Release, time.Since(start).Seconds())
	return dir, nil
}
