package ksrc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

const makefile6_1_192 = "# SPDX-License-Identifier: GPL-2.0\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nEXTRAVERSION =\nNAME = Curry Ramen\n"

func TestParseConfigAndDrift(t *testing.T) {
	target := parseConfig([]byte("#\n# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian) 12.2.0\"\nCONFIG_GCC_VERSION=120200\nCONFIG_N=5\n"))
	if target.str("CONFIG_CC_VERSION_TEXT") != "gcc-12 (Debian) 12.2.0" || target["CONFIG_B"] != "" || target["CONFIG_N"] != "5" {
		t.Fatalf("parseConfig = %q", target)
	}
	here := parseConfig([]byte("CONFIG_A=y\nCONFIG_B=y\nCONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian) 12.3.0\"\nCONFIG_GCC_VERSION=120300\n"))
	toolchain, other := configDrift(target, here)
	wantTool := []string{
		`CONFIG_CC_VERSION_TEXT: "gcc-12 (Debian) 12.2.0" -> "gcc-12 (Debian) 12.3.0"`,
		"CONFIG_GCC_VERSION: 120200 -> 120300",
	}
	if diff := cmp.Diff(wantTool, toolchain); diff != "" {
		t.Errorf("toolchain drift (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"CONFIG_B: unset -> y", "CONFIG_N: 5 -> unset"}, other); diff != "" {
		t.Errorf("other drift (-want +got):\n%s", diff)
	}
	err := driftError(other, toolchain, "gcc-12")
	if !errors.Is(err, ErrConfigDrift) || !strings.Contains(err.Error(), "CONFIG_B: unset -> y") || !strings.Contains(err.Error(), "install the same gcc-12") {
		t.Errorf("driftError = %v", err)
	}
}

func TestVersions(t *testing.T) {
	src := testutil.TempTree(t, map[string]string{"Makefile": makefile6_1_192})
	v, err := sourceVersion(src)
	if err != nil || v.String() != "6.1.192" {
		t.Fatalf("sourceVersion = %v, %v", v, err)
	}
	if _, err := sourceVersion(testutil.TempTree(t, map[string]string{"Makefile": "all:\n"})); err == nil || !strings.Contains(err.Error(), "kernel source tree") {
		t.Errorf("sourceVersion of a non-kernel Makefile = %v", err)
	}

	// Debian: the flavour headers' Makefile includes the common one.
	common := testutil.TempTree(t, map[string]string{"Makefile": makefile6_1_192})
	flavour := testutil.TempTree(t, map[string]string{
		"Makefile":                      "include " + filepath.Join(common, "Makefile") + "\n",
		"include/config/kernel.release": "6.1.192\n",
		".kernelvariables":              "override ARCH = x86\noverride KERNELRELEASE = 6.1.0-56-cloud-amd64\nCC = gcc-12\n",
	})
	v, from, err := headersVersion(flavour)
	if err != nil || v.String() != "6.1.192" || from != filepath.Join(common, "Makefile") {
		t.Errorf("headersVersion(debian) = %v, %s, %v", v, from, err)
	}
	if r, err := kernelRelease(flavour); err != nil || r != "6.1.0-56-cloud-amd64" {
		t.Errorf("kernelRelease(debian) = %q, %v", r, err)
	}
	if cc := kernelCompiler(flavour); cc != "gcc-12" {
		t.Errorf("kernelCompiler(debian) = %q", cc)
	}
	// As Debian's 6.1 headers write it.
	ccache := testutil.TempTree(t, map[string]string{".kernelvariables": "override KERNELRELEASE := 6.1.0-57-cloud-amd64\nCC = $(if $(DEBIAN_KERNEL_USE_CCACHE),ccache) $(CROSS_COMPILE)gcc-12\n"})
	if cc := kernelCompiler(ccache); cc != "gcc-12" {
		t.Errorf("kernelCompiler(ccache) = %q", cc)
	}
	if r, err := kernelRelease(ccache); err != nil || r != "6.1.0-57-cloud-amd64" {
		t.Errorf("kernelRelease(:=) = %q, %v", r, err)
	}
	if cc := kernelCompiler(plain0(t)); cc != "" {
		t.Errorf("kernelCompiler without .kernelvariables = %q", cc)
	}

	// A build folder without a versioned Makefile: kernel.release.
	plain := testutil.TempTree(t, map[string]string{"Makefile": "# wrapper\n", "include/config/kernel.release": "6.8.0-31-generic\n"})
	v, from, err = headersVersion(plain)
	if err != nil || v.String() != "6.8.0" || !strings.HasSuffix(from, "kernel.release") {
		t.Errorf("headersVersion(plain) = %v, %s, %v", v, from, err)
	}
	if r, err := kernelRelease(plain); err != nil || r != "6.8.0-31-generic" {
		t.Errorf("kernelRelease(plain) = %q, %v", r, err)
	}
	if _, _, err := headersVersion(t.TempDir()); err == nil {
		t.Error("headersVersion of an empty folder succeeded")
	}
	bad := testutil.TempTree(t, map[string]string{"include/config/kernel.release": "6.1 $(evil)\n"})
	if _, err := kernelRelease(bad); err == nil {
		t.Error("kernelRelease accepted a release with spaces and $")
	}

	if !sameVersion(kernelVersion{"6", "1", "192", "-rc1"}, kernelVersion{"6", "1", "192", ""}) ||
		sameVersion(kernelVersion{"6", "1", "192", ""}, kernelVersion{"6", "1", "191", ""}) ||
		sameVersion(kernelVersion{"6", "1", "192", "-rc1"}, kernelVersion{"6", "1", "192", "-rc2"}) {
		t.Error("sameVersion is wrong")
	}
}

func TestCompilerOf(t *testing.T) {
	for _, tt := range []struct{ config, want, err string }{
		{`CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"`, "gcc-12", ""},
		{`CONFIG_CC_VERSION_TEXT="gcc (GCC) 14.1.1"`, "gcc", ""},
		{"CONFIG_CC_IS_CLANG=y\nCONFIG_CC_VERSION_TEXT=\"clang version 17\"", "", "clang"},
		{"CONFIG_A=y", "", "no CONFIG_CC_VERSION_TEXT"},
		{`CONFIG_CC_VERSION_TEXT="/tmp/x/gcc;rm (GCC) 1"`, "", "does not name a gcc"},
	} {
		got, err := compilerOf(parseConfig([]byte(tt.config)))
		if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("compilerOf(%s) = %q, %v; want %q, %q", tt.config, got, err, tt.want, tt.err)
		}
	}
}

func TestToolCheck(t *testing.T) {
	have := map[string]bool{"make": true, "gcc-12": true, "bc": true, "perl": true}
	tc := toolCheck{
		lookPath: func(name string) (string, error) {
			if have[name] {
				return "/usr/bin/" + name, nil
			}
			return "", errors.New("not found")
		},
		includeDir: testutil.TempTree(t, map[string]string{"stdio.h": ""}),
	}
	err := tc.check("gcc-12", true)
	var te *ToolsError
	if !errors.As(err, &te) || !errors.Is(err, ErrMissingTools) {
		t.Fatalf("check = %v, want a *ToolsError", err)
	}
	if diff := cmp.Diff([]string{"bison", "dwarves", "flex", "libelf-dev", "libssl-dev"}, te.Packages); diff != "" {
		t.Errorf("packages (-want +got):\n%s", diff)
	}
	if !strings.Contains(err.Error(), "apt-get install -y --no-install-recommends bison dwarves flex libelf-dev libssl-dev") {
		t.Errorf("error lacks the install command: %v", err)
	}
	have["flex"], have["bison"], have["pahole"] = true, true, true
	tc.includeDir = testutil.TempTree(t, map[string]string{"stdio.h": "", "gelf.h": "", "openssl/ssl.h": ""})
	if err := tc.check("gcc-12", true); err != nil {
		t.Errorf("check with everything = %v", err)
	}
	if err := tc.check("gcc-13", false); err == nil || !strings.Contains(err.Error(), "gcc-13") {
		t.Errorf("check without the kernel's compiler = %v", err)
	}
}

// TestPrepareRefusals covers what Prepare refuses before it runs anything.
func TestPrepareRefusals(t *testing.T) {
	config := "CONFIG_X86_64=y\nCONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"\n"
	src := testutil.TempTree(t, map[string]string{"Makefile": makefile6_1_192, "Kconfig": ""})
	older := testutil.TempTree(t, map[string]string{"Makefile": strings.Replace(makefile6_1_192, "192", "191", 1), ".config": config})
	same := testutil.TempTree(t, map[string]string{"Makefile": makefile6_1_192, ".config": "CONFIG_X86_64=y\nCONFIG_CC_IS_CLANG=y\nCONFIG_CC_VERSION_TEXT=\"clang 17\"\n",
		"include/config/kernel.release": "6.1.192\n"})
	noConfig := testutil.TempTree(t, map[string]string{"Makefile": makefile6_1_192})
	cache := t.TempDir()

	t.Run("version mismatch", func(t *testing.T) {
		_, err := Prepare(t.Context(), Options{Source: src, KernelBuild: older, CacheDir: cache})
		var ve *VersionError
		if !errors.As(err, &ve) || !errors.Is(err, ErrVersionMismatch) {
			t.Fatalf("Prepare = %v, want a *VersionError", err)
		}
		for _, s := range []string{"6.1.192", "6.1.191", src, older} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %s", err, s)
			}
		}
	})
	t.Run("no config", func(t *testing.T) {
		_, err := Prepare(t.Context(), Options{Source: src, KernelBuild: noConfig, CacheDir: cache})
		if err == nil || !strings.Contains(err.Error(), ".config") {
			t.Fatalf("Prepare = %v", err)
		}
	})
	t.Run("clang", func(t *testing.T) {
		_, err := Prepare(t.Context(), Options{Source: src, KernelBuild: same, CacheDir: cache})
		if err == nil || !strings.Contains(err.Error(), "clang") {
			t.Fatalf("Prepare = %v", err)
		}
	})
	t.Run("not a source tree", func(t *testing.T) {
		_, err := Prepare(t.Context(), Options{Source: t.TempDir(), KernelBuild: older, CacheDir: cache})
		if err == nil || !strings.Contains(err.Error(), "Makefile") {
			t.Fatalf("Prepare = %v", err)
		}
	})
	t.Run("cache inside source", func(t *testing.T) {
		_, err := Prepare(t.Context(), Options{Source: src, KernelBuild: older, CacheDir: filepath.Join(src, "cache")})
		if err == nil || !strings.Contains(err.Error(), "inside the source tree") {
			t.Fatalf("Prepare = %v", err)
		}
	})
	t.Run("no cache", func(t *testing.T) {
		_, err := Prepare(t.Context(), Options{Source: src, KernelBuild: older})
		if err == nil || !strings.Contains(err.Error(), "no cache folder") {
			t.Fatalf("Prepare = %v", err)
		}
	})
	if entries, _ := os.ReadDir(src); len(entries) != 2 {
		t.Errorf("Prepare wrote into the source tree: %v", entries)
	}
}

// TestTreeLockSerialises checks that a second holder of an object
// folder's lock (another Prepare or Compile, here or in another process)
// waits for the first.
func TestTreeLockSerialises(t *testing.T) {
	tree := &Tree{ObjDir: filepath.Join(t.TempDir(), "obj-x")}
	unlock, err := tree.lock()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		unlock2, err := tree.lock()
		if err == nil {
			unlock2()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("second lock taken while the first is held (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second lock not taken after the first was released")
	}
}

// plain0 is a build folder without .kernelvariables.
func plain0(t *testing.T) string {
	return testutil.TempTree(t, map[string]string{"Makefile": "# wrapper\n"})
}
