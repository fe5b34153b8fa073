package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/internal/testutil"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/ksrc"
	"github.com/splicefleet/splicefleet/lab"
	"github.com/splicefleet/splicefleet/splice"
)

// patchesDir holds the livepatch sources of the lab scenarios.
const patchesDir = "../../lab/testdata/patches"

// labKernel is the Debian cloud kernel the lab fetched, once per test
// binary.
var labKernel struct {
	once   sync.Once
	kernel *lab.DebianKernel
	err    error
	took   time.Duration
}

// kernelBuildDir returns the build folder of the real Debian cloud kernel
// the modules are built against, fetched (or reused from the cache) by the
// lab. A failure is fatal: these tests run, they never skip.
func kernelBuildDir(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds real modules against downloaded kernel headers; make test runs it (make check passes -short)")
	}
	labKernel.once.Do(func() {
		start := time.Now()
		labKernel.kernel, labKernel.err = lab.Fetch(context.Background(), lab.FetchOptions{})
		labKernel.took = time.Since(start)
	})
	if labKernel.err != nil {
		t.Fatalf("lab: fetch the kernel headers: %v", labKernel.err)
	}
	t.Logf("building against %s (fetch %.1fs)", labKernel.kernel, labKernel.took.Seconds())
	return labKernel.kernel.HeadersDir
}

// treeFiles maps every file under dir to its contents.
func treeFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// bundleModule reads a bundle and the info of its module.
func bundleModule(t *testing.T, path string) (*splice.Manifest, *kmod.ModInfo, []byte) {
	t.Helper()
	b, err := readBundle(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := splice.ParseManifest(b.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	info, err := kmod.ReadModInfo(b.Module)
	if err != nil {
		t.Fatal(err)
	}
	return m, info, b.Module
}

// The publisher's path from C source: a real livepatch module built by
// make and gcc against Debian's cloud kernel headers, wrapped, signed and
// verified.
func TestCreateFromSource(t *testing.T) {
	kbuild := kernelBuildDir(t)
	src := filepath.Join(patchesDir, "lp_cmdline")
	before := treeFiles(t, src)
	c := newCLI(t)
	c.ok("signing-key", "generate", "--uid", "Release <rel@example.com>", "--out", c.path("rel"))
	start := time.Now()
	code, out, errs := c.run("create", "--source", src, "--kernel-build", kbuild,
		"--id", "cmdline", "--version", "1", "--cve", "cve-2026-0002", "-o", c.path("cmdline.splice"))
	if code != 0 {
		t.Fatalf("create --source: exit %d\n%s%s", code, out, errs)
	}
	t.Logf("built lp_cmdline in %.1fs", time.Since(start).Seconds())
	// make ran, visibly: its progress is on stderr.
	for _, want := range []string{"make -C ", " -j2 modules", "CC [M]", "LD [M]", "lp_cmdline.ko"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks make's %q:\n%s", want, errs)
		}
	}
	for _, want := range []string{"built lp_cmdline.ko from " + src, "stripped debug info: ",
		"created " + c.path("cmdline.splice"), "-cloud-amd64/x86_64", "module lp_cmdline", "replaces cmdline_proc_show"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !sameFiles(before, treeFiles(t, src)) {
		t.Error("create --source changed the source folder")
	}
	m, info, module := bundleModule(t, c.path("cmdline.splice"))
	if info.Name != "lp_cmdline" || !info.Livepatch || !strings.HasSuffix(info.Release, "-cloud-amd64") ||
		!slices.Equal(info.Functions, []string{"cmdline_proc_show"}) {
		t.Errorf("module info: %+v", info)
	}
	if m.Target.Release != info.Release || m.Module.Name != "lp_cmdline" || m.CVEs[0] != "CVE-2026-0002" {
		t.Errorf("manifest: %+v", m)
	}
	// Stripped: no DWARF left, the symbols the kernel needs kept.
	if bytes.Contains(module, []byte(".debug_info")) {
		t.Error("the module still has .debug_info")
	}
	c.ok("sign", "--key", c.path("rel.sec.asc"), c.path("cmdline.splice"))
	if out := c.ok("verify", "--keyring", c.path("rel.pub.asc"), c.path("cmdline.splice")); !strings.Contains(out, "OK ") {
		t.Fatalf("verify: %s", out)
	}
}

// Every lab patch builds with create --source and is what it claims: its
// name, a livepatch module, and the functions it replaces.
func TestCreateLabPatches(t *testing.T) {
	kbuild := kernelBuildDir(t)
	cases := []struct {
		name      string
		functions []string
		replace   bool
	}{
		{"lp_cmdline", []string{"cmdline_proc_show"}, false},
		{"lp_version", []string{"version_proc_show"}, false},
		{"lp_cumulative_v1", []string{"cmdline_proc_show"}, true},
		{"lp_cumulative_v2", []string{"cmdline_proc_show"}, true},
		{"lp_refuse", []string{"cmdline_proc_show"}, false},
		{"lp_stall", []string{"__x64_sys_pause"}, false},
	}
	entries, err := os.ReadDir(patchesDir)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	var names []string
	for _, tc := range cases {
		names = append(names, tc.name)
	}
	if slices.Sort(dirs); !slices.Equal(dirs, slices.Sorted(slices.Values(names))) {
		t.Errorf("patch folders %v, tested %v: test every patch", dirs, names)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			args := []string{"create", "--source", filepath.Join(patchesDir, tc.name), "--kernel-build", kbuild,
				"--id", strings.ReplaceAll(tc.name, "_", "-"), "--version", "1", "-o", c.path("p.splice")}
			if tc.replace {
				args = append(args, "--replace")
			}
			start := time.Now()
			code, out, errs := c.run(args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
			t.Logf("%s: built and wrapped in %.1fs", tc.name, time.Since(start).Seconds())
			if strings.Contains(errs, "warning:") {
				t.Errorf("the compiler warned:\n%s", errs)
			}
			m, info, _ := bundleModule(t, c.path("p.splice"))
			if info.Name != tc.name || !info.Livepatch || info.License != "GPL" || !slices.Equal(info.Functions, tc.functions) {
				t.Errorf("module info: name %q livepatch %v license %q functions %v; want %s, true, GPL, %v",
					info.Name, info.Livepatch, info.License, info.Functions, tc.name, tc.functions)
			}
			if !slices.Equal(m.Functions, tc.functions) || m.Replace != tc.replace || m.Module.Name != tc.name {
				t.Errorf("manifest: %+v", m)
			}
		})
	}
}

// A source that does not compile: make's output, with the compiler's
// error, is on stderr, followed by one summary line; exit 2; no bundle.
func TestCreateFromSourceCompileError(t *testing.T) {
	kbuild := kernelBuildDir(t)
	src := testutil.TempTree(t, map[string]string{
		"Kbuild": "obj-m := lp_broken.o\n",
		"lp_broken.c": "#include <linux/module.h>\n" +
			"static int __init lp_broken_init(void)\n{\n\treturn 0 /* no semicolon */\n}\n" +
			"module_init(lp_broken_init);\nMODULE_LICENSE(\"GPL\");\n",
	})
	c := newCLI(t)
	before := c.snapshot()
	code, out, errs := c.run("create", "--source", src, "--kernel-build", kbuild,
		"--id", "broken", "--version", "1", "-o", c.path("broken.splice"))
	if code != exitError {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitError, out, errs)
	}
	// The compiler's error names the file in the source folder, not in
	// the build copy.
	if !strings.Contains(errs, filepath.Join(src, "lp_broken.c")+":4:17: error: expected") {
		t.Errorf("stderr lacks the compiler's error:\n%s", errs)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "splicefleet: build failed: make exited ") ||
		!strings.HasSuffix(last, " (its output is above)") {
		t.Errorf("last line %q is not the build summary", last)
	}
	// The summary quotes the compiler's first error: what failed, where
	// only the last line is kept (make corpus keeps no more).
	if !strings.Contains(last, filepath.Join(src, "lp_broken.c")+":4:17: error: expected") {
		t.Errorf("last line %q does not quote the compiler's error", last)
	}
	if !sameFiles(before, c.snapshot()) {
		t.Error("a failed build wrote files")
	}
}

// A module that builds but is not a livepatch module is refused as
// create --module refuses it.
func TestCreateFromSourceNotLivepatch(t *testing.T) {
	kbuild := kernelBuildDir(t)
	src := testutil.TempTree(t, map[string]string{
		"Kbuild": "obj-m := plain_driver.o\n",
		"plain_driver.c": "#include <linux/module.h>\n" +
			"static int __init plain_driver_init(void)\n{\n\treturn 0;\n}\n" +
			"static void __exit plain_driver_exit(void)\n{\n}\n" +
			"module_init(plain_driver_init);\nmodule_exit(plain_driver_exit);\nMODULE_LICENSE(\"GPL\");\n",
	})
	c := newCLI(t)
	before := c.snapshot()
	code, out, errs := c.run("create", "--source", src, "--kernel-build", kbuild,
		"--id", "plain", "--version", "1", "-o", c.path("plain.splice"))
	if code != exitRefused {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitRefused, out, errs)
	}
	if !strings.Contains(errs, `splicefleet: plain_driver.ko (built from `+src+`): kmod: require livepatch: module "plain_driver" is not a livepatch module`) {
		t.Errorf("stderr:\n%s", errs)
	}
	if !sameFiles(before, c.snapshot()) {
		t.Error("a refused module was written")
	}
}

// fakeKernelBuild makes a folder that stands in for a kernel build: its
// Makefile runs recipe for "make modules".
func fakeKernelBuild(t *testing.T, recipe string) string {
	t.Helper()
	return testutil.TempTree(t, map[string]string{"Makefile": "modules:\n\t" + recipe + "\n"})
}

// The choices around the build, on a stand-in kernel build folder whose
// make copies prepared modules into place.
func TestCreateFromSourceChoices(t *testing.T) {
	two := fakeKernelBuild(t, "cp $(M)/a.bin $(M)/lp_a.ko && cp $(M)/b.bin $(M)/lp_b.ko")
	src := testutil.TempTree(t, map[string]string{
		"Kbuild": "obj-m := lp_a.o lp_b.o\n",
		"a.bin":  string(fakemodule.Build(fakemodule.Options{Name: "lp_a", Livepatch: true, Functions: []string{"cmdline_proc_show"}})),
		"b.bin":  string(fakemodule.Build(fakemodule.Options{Name: "lp_b", Livepatch: true, Functions: []string{"version_proc_show"}})),
		// Stale build output must not be copied into the build folder.
		"lp_a.ko":   "stale",
		".lp_a.cmd": "stale",
	})
	base := []string{"create", "--source", src, "--id", "x", "--version", "1"}
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"several modules", []string{"--kernel-build", two}, exitError,
			"the build made 2 modules (lp_a.ko, lp_b.ko): choose one with --module-name"},
		{"an unknown module name", []string{"--kernel-build", two, "--module-name", "lp_c"}, exitError,
			"--module-name lp_c: the build made lp_a.ko, lp_b.ko"},
		{"no module built", []string{"--kernel-build", fakeKernelBuild(t, "true")}, exitError,
			"made no .ko file"},
		{"no kernel build folder", []string{"--kernel-build", filepath.Join(src, "nowhere")}, exitError,
			"--kernel-build: stat "},
		{"a kernel build folder without a Makefile", []string{"--kernel-build", src}, exitError,
			"has no Makefile: want the target kernel's build folder"},
		{"--source without --kernel-build", nil, exitError,
			"--kernel-build is required with --source and --patch"},
		{"--module and --source", []string{"--kernel-build", two, "--module", "x.ko"}, exitError,
			"none of the others can be"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			before := c.snapshot()
			code, out, errs := c.run(append(append(slices.Clone(base), tc.args...), "-o", c.path("x.splice"))...)
			if code != tc.wantCode || !strings.Contains(errs, tc.wantErr) {
				t.Fatalf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tc.wantCode, tc.wantErr, out, errs)
			}
			if !sameFiles(before, c.snapshot()) {
				t.Error("files were written")
			}
		})
	}

	t.Run("--module-name picks one", func(t *testing.T) {
		c := newCLI(t)
		out := c.ok(append(slices.Clone(base), "--kernel-build", two, "--module-name", "lp-b", "--strip=false", "-o", c.path("b.splice"))...)
		if !strings.Contains(out, "built lp_b.ko from ") || strings.Contains(out, "stripped") {
			t.Errorf("stdout: %s", out)
		}
		if _, info, _ := bundleModule(t, c.path("b.splice")); info.Name != "lp_b" {
			t.Errorf("wrapped %s, want lp_b", info.Name)
		}
	})

	t.Run("no Kbuild or Makefile", func(t *testing.T) {
		c := newCLI(t)
		code, _, errs := c.run("create", "--source", c.dir, "--kernel-build", two, "--id", "x", "--version", "1", "-o", c.path("x.splice"))
		if code != exitError || !strings.Contains(errs, "has no Kbuild or Makefile") {
			t.Errorf("exit %d: %s", code, errs)
		}
	})

	t.Run("make missing", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		c := newCLI(t)
		code, _, errs := c.run(append(slices.Clone(base), "--kernel-build", two, "-o", c.path("x.splice"))...)
		if code != exitError || !strings.Contains(errs, "make not found in PATH") || !strings.Contains(errs, "apt-get install build-essential") {
			t.Errorf("exit %d: %s", code, errs)
		}
	})
}

// Cancelling the context (SIGINT) kills make and what it started.
func TestBuildInterrupted(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	kbuild := fakeKernelBuild(t, "sh -c 'echo $$$$ > "+pidFile+"; exec sleep 60'")
	src := testutil.TempTree(t, map[string]string{"Kbuild": "obj-m := x.o\n"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := ksrc.BuildModule(ctx, ksrc.BuildOptions{Source: src, KernelBuild: kbuild}, &stderr)
		done <- err
	}()
	var pid int
	for deadline := time.Now().Add(20 * time.Second); pid == 0; {
		if time.Now().After(deadline) {
			t.Fatal("make never started the recipe")
		}
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "build interrupted") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("BuildModule did not return after the context ended")
	}
	// The grandchild (sleep) is gone or a zombie waiting for its reaper.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if errors.Is(err, os.ErrNotExist) || (err == nil && zombie(string(stat))) {
			break
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("make's child %d survived the interruption", pid)
		}
	}
}

// zombie reports whether a /proc/PID/stat line is of a zombie.
func zombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i >= 0 && strings.HasPrefix(stat[i+1:], " Z")
}
