package ksrc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/splicefleet/splicefleet/internal/bounded"
)

// Bounds on the kernel files Prepare reads.
const (
	maxConfigSize   = 4 << 20 // a distribution .config is about 250 KB
	maxMakefileSize = 1 << 20
	maxSmallFile    = 64 << 10
)

// readBounded reads at most limit bytes of name, without trusting Stat,
// and fails when the file is larger.
func readBounded(name string, limit int64) ([]byte, error) {
	return bounded.ReadFile(name, limit)
}

// kconfig is a parsed .config: symbol -> value as written ("y", "m",
// "\"text\"", "120200"); symbols "is not set" are absent.
type kconfig map[string]string

func parseConfig(b []byte) kconfig {
	c := kconfig{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "CONFIG_") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			c[k] = v
		}
	}
	return c
}

// str returns a string symbol's value unquoted.
func (c kconfig) str(name string) string {
	v := c[name]
	if u, err := strconv.Unquote(v); err == nil {
		return u
	}
	return v
}

// toolchainSymbols describe the host's tools rather than the kernel;
// olddefconfig recomputes them, and a difference only in them is logged.
var toolchainSymbols = map[string]bool{
	"CONFIG_CC_VERSION_TEXT": true, "CONFIG_GCC_VERSION": true, "CONFIG_CLANG_VERSION": true,
	"CONFIG_AS_VERSION": true, "CONFIG_LD_VERSION": true, "CONFIG_LLD_VERSION": true,
	"CONFIG_PAHOLE_VERSION": true, "CONFIG_RUSTC_VERSION_TEXT": true, "CONFIG_BINDGEN_VERSION_TEXT": true,
}

// configDrift compares the target's configuration with what kbuild made
// of it here. It returns the changed symbols as "NAME: target -> here",
// split into toolchain versions (harmless) and the rest (different code).
func configDrift(target, here kconfig) (toolchain, other []string) {
	names := map[string]bool{}
	for k := range target {
		names[k] = true
	}
	for k := range here {
		names[k] = true
	}
	sorted := make([]string, 0, len(names))
	for k := range names {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	show := func(v string) string {
		if v == "" {
			return "unset"
		}
		return v
	}
	for _, k := range sorted {
		if target[k] == here[k] {
			continue
		}
		d := fmt.Sprintf("%s: %s -> %s", k, show(target[k]), show(here[k]))
		if toolchainSymbols[k] {
			toolchain = append(toolchain, d)
		} else {
			other = append(other, d)
		}
	}
	return toolchain, other
}

// kernelVersion is the top of a kernel Makefile.
type kernelVersion struct {
	Version, Patchlevel, Sublevel, Extra string
}

func (v kernelVersion) String() string {
	return v.Version + "." + v.Patchlevel + "." + v.Sublevel + v.Extra
}

var makefileVar = regexp.MustCompile(`^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)\s*$`)

// makefileVersion reads VERSION, PATCHLEVEL, SUBLEVEL and EXTRAVERSION from
// a kernel Makefile; ok is false when it lacks them (a wrapper Makefile).
func makefileVersion(b []byte) (v kernelVersion, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 0; sc.Scan() && n < 200; n++ {
		m := makefileVar.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		switch m[1] {
		case "VERSION":
			v.Version = m[2]
		case "PATCHLEVEL":
			v.Patchlevel = m[2]
		case "SUBLEVEL":
			v.Sublevel = m[2]
		case "EXTRAVERSION":
			v.Extra = m[2]
		}
	}
	return v, v.Version != "" && v.Patchlevel != "" && v.Sublevel != ""
}

// sourceVersion reads the version of a kernel source tree.
func sourceVersion(src string) (kernelVersion, error) {
	mk := filepath.Join(src, "Makefile")
	b, err := readBounded(mk, maxMakefileSize)
	if err != nil {
		return kernelVersion{}, err
	}
	v, ok := makefileVersion(b)
	if !ok {
		return v, fmt.Errorf("%s has no VERSION, PATCHLEVEL and SUBLEVEL: is %s a kernel source tree?", mk, src)
	}
	return v, nil
}

var includeLine = regexp.MustCompile(`^-?include\s+(\S+)\s*$`)

// headersVersion reads the version of a headers or build folder: from its
// Makefile, following "include" lines (Debian's flavour headers include
// the common headers' Makefile), else from the X.Y.Z at the start of
// include/config/kernel.release. It says where it found it.
func headersVersion(dir string) (kernelVersion, string, error) {
	mk := filepath.Join(dir, "Makefile")
	for depth := 0; depth < 4; depth++ {
		b, err := readBounded(mk, maxMakefileSize)
		if err != nil {
			break
		}
		if v, ok := makefileVersion(b); ok {
			return v, mk, nil
		}
		next := ""
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if m := includeLine.FindStringSubmatch(sc.Text()); m != nil && !strings.Contains(m[1], "$") {
				next = m[1]
				break
			}
		}
		if next == "" {
			break
		}
		if !filepath.IsAbs(next) {
			next = filepath.Join(filepath.Dir(mk), next)
		}
		mk = next
	}
	rel := filepath.Join(dir, "include", "config", "kernel.release")
	b, err := readBounded(rel, maxSmallFile)
	if err != nil {
		return kernelVersion{}, "", fmt.Errorf("cannot tell the kernel version of %s: no VERSION in its Makefile and %w", dir, err)
	}
	m := regexp.MustCompile(`^(\d+)\.(\d+)(?:\.(\d+))?`).FindStringSubmatch(strings.TrimSpace(string(b)))
	if m == nil {
		return kernelVersion{}, "", fmt.Errorf("cannot tell the kernel version of %s: %s reads %q", dir, rel, strings.TrimSpace(string(b)))
	}
	v := kernelVersion{Version: m[1], Patchlevel: m[2], Sublevel: m[3]}
	if v.Sublevel == "" {
		v.Sublevel = "0"
	}
	return v, rel, nil
}

// sameVersion compares versions; a release file has no EXTRAVERSION, so
// it is compared only when both sides have one.
func sameVersion(a, b kernelVersion) bool {
	if a.Version != b.Version || a.Patchlevel != b.Patchlevel || a.Sublevel != b.Sublevel {
		return false
	}
	return a.Extra == b.Extra || a.Extra == "" || b.Extra == ""
}

// kernelVariables reads the variables a Debian kernel build folder sets in
// .kernelvariables ("override KERNELRELEASE = 6.1.0-56-cloud-amd64",
// "CC = $(if $(DEBIAN_KERNEL_USE_CCACHE),ccache) $(CROSS_COMPILE)gcc-12"):
// name to value as written. Another build folder has none: an empty map.
func kernelVariables(dir string) map[string]string {
	vars := map[string]string{}
	b, err := readBounded(filepath.Join(dir, ".kernelvariables"), maxSmallFile)
	if err != nil {
		return vars
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimSpace(strings.TrimPrefix(line, "override "))
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(key), ":"))
		if key != "" && !strings.ContainsAny(key, " \t") {
			vars[key] = strings.TrimSpace(value)
		}
	}
	return vars
}

// kernelRelease returns the release the target kernel reports (uname -r).
// Debian's build folder names it in .kernelvariables while its
// kernel.release holds only the upstream version; other build folders
// have it in include/config/kernel.release.
func kernelRelease(dir string) (string, error) {
	if r, ok := kernelVariables(dir)["KERNELRELEASE"]; ok {
		return checkRelease(r, ".kernelvariables")
	}
	name := filepath.Join(dir, "include", "config", "kernel.release")
	b, err := readBounded(name, maxSmallFile)
	if err != nil {
		return "", fmt.Errorf("kernel release of %s: %w", dir, err)
	}
	return checkRelease(strings.TrimSpace(string(b)), name)
}

// kernelCompiler returns the compiler a Debian kernel build folder names
// for CC in .kernelvariables ("$(...) $(CROSS_COMPILE)gcc-12": gcc-12),
// or "".
func kernelCompiler(kernelBuild string) string {
	fields := strings.Fields(kernelVariables(kernelBuild)["CC"])
	if len(fields) == 0 {
		return ""
	}
	last := strings.TrimPrefix(fields[len(fields)-1], "$(CROSS_COMPILE)")
	if strings.ContainsAny(last, "$()/") {
		return ""
	}
	return last
}

var releaseChars = regexp.MustCompile(`^[A-Za-z0-9._+~-]{1,64}$`)

func checkRelease(r, from string) (string, error) {
	if !releaseChars.MatchString(r) {
		return "", fmt.Errorf("kernel release %q in %s is not a plausible release", r, from)
	}
	return r, nil
}

// compilerOf returns the compiler the kernel was built with, from the
// first word of CONFIG_CC_VERSION_TEXT ("gcc-12 (Debian 12.2.0-14) 12.2.0").
func compilerOf(c kconfig) (string, error) {
	if c["CONFIG_CC_IS_CLANG"] == "y" {
		return "", fmt.Errorf("the kernel was built with clang (%s); only gcc-built kernels are supported", c.str("CONFIG_CC_VERSION_TEXT"))
	}
	text := c.str("CONFIG_CC_VERSION_TEXT")
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return "", errors.New("the target .config has no CONFIG_CC_VERSION_TEXT: is it a kernel configuration from 5.8 or later?")
	}
	cc := fields[0]
	if strings.ContainsAny(cc, "/$`'\"\\;") || !strings.Contains(cc, "gcc") {
		return "", fmt.Errorf("CONFIG_CC_VERSION_TEXT %q does not name a gcc", text)
	}
	return cc, nil
}

// archOf returns the kernel architecture of a configuration, for
// comparing with the host's: cross-building is not supported.
func archOf(c kconfig) string {
	switch {
	case c["CONFIG_X86_64"] == "y":
		return "amd64"
	case c["CONFIG_ARM64"] == "y":
		return "arm64"
	case c["CONFIG_X86_32"] == "y":
		return "386"
	}
	return "unknown"
}
