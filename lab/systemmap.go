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

// FetchSystemMap returns the System.map of kernel k, which create --patch
// needs for the positions of the kernel's symbols. The linux-image package
// ships a placeholder; the real one is in the -dbg package of exactly the
// same version, which is downloaded once (about 280 MB) and from which
// only System.map is kept, in the kernel's cache folder.
func FetchSystemMap(ctx context.Context, opts FetchOptions, k *DebianKernel) (string, error) {
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	if k == nil || k.Release == "" || k.PackageVersion == "" {
		return "", errors.New("fetch System.map: no kernel given (call Fetch first)")
	}
	cache, err := cacheDir(opts.CacheDir)
	if err != nil {
		return "", err
	}
	unlock, err := lockDir(cache)
	if err != nil {
		return "", err
	}
	defer unlock()
	dst := filepath.Join(filepath.Dir(k.Root), "System.map-"+k.Release)
	if fi, err := os.Stat(dst); err == nil && fi.Size() > 0 {
		return dst, nil
	}
	start := time.Now()
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", err
	}
	pkg := "linux-image-" + k.Release + "-dbg"
	deb, err := downloadPinned(ctx, log, debs, pkg, k.PackageVersion)
	if err != nil {
		return "", fmt.Errorf("fetch System.map from %s=%s: %w", pkg, k.PackageVersion, err)
	}
	// The package is large and only this file is wanted: keep the file.
	defer func() { _ = os.Remove(deb) }()
	member := "./usr/lib/debug/boot/System.map-" + k.Release
	fmt.Fprintf(log, "lab: extracting %s from %s\n", member, filepath.Base(deb))
	out, err := run(ctx, "", "sh", "-c", fmt.Sprintf("dpkg-deb --fsys-tarfile '%s' | tar -xO --occurrence=1 '%s'", deb, member))
	if err != nil {
		return "", fmt.Errorf("extract %s: %w", member, err)
	}
	if !strings.Contains(string(out), " T _stext\n") {
		return "", fmt.Errorf("%s in %s is not a System.map", member, filepath.Base(deb))
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "lab: System.map of %s ready in %.1fs\n", k.Release, time.Since(start).Seconds())
	return dst, nil
}
