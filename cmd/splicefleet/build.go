package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/splicefleet/splicefleet/splice"
)

// buildOptions says what to build for create --source.
type buildOptions struct {
	source      string            // folder of C sources with a Kbuild or Makefile
	kernelBuild string            // the target kernel's build folder (make -C)
	moduleName  string            // which .ko to take when the build makes several
	strip       bool              // strip --strip-debug the result
	makeArgs    []string          // extra make variables (KBUILD_MODPOST_WARN=1)
	files       map[string][]byte // files written into the build copy after the source (generated objects)
}

// builtModule is the outcome of a successful build.
type builtModule struct {
	file     string // the .ko, relative to the build folder
	module   []byte // its contents, stripped when asked and possible
	size     int    // size before stripping
	stripped bool
	note     string // why the module was not stripped, if it was not
	took     time.Duration
	source   string
	kbuild   string
}

func (b *builtModule) summary() string {
	s := fmt.Sprintf("built %s from %s against %s in %.1fs", b.file, b.source, b.kbuild, b.took.Seconds())
	switch {
	case b.stripped:
		s += fmt.Sprintf("; stripped debug info: %d -> %d bytes", b.size, len(b.module))
	case b.note != "":
		s += "; " + b.note
	}
	return s
}

// buildJobs is make's -j: the builds are small and hosts are shared.
const buildJobs = 2

// buildModule builds an out-of-tree kernel module from o.source against
// o.kernelBuild in a temporary copy of the source, streaming make's output
// to e.stderr, and returns the one module it built. The copy is removed
// afterwards; nothing is written into o.source. Cancelling ctx kills make
// and everything it started.
func buildModule(ctx context.Context, e *env, o buildOptions) (*builtModule, error) {
	if err := checkBuildTools(o.kernelBuild); err != nil {
		return nil, err
	}
	if err := checkSource(o.source); err != nil {
		return nil, err
	}
	if err := checkKernelBuild(o.kernelBuild); err != nil {
		return nil, err
	}
	kbuild, err := filepath.Abs(o.kernelBuild)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "splicefleet-build-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(work) }()
	if err := copySource(o.source, work); err != nil {
		return nil, err
	}
	for name, data := range o.files {
		if err := os.WriteFile(filepath.Join(work, name), data, 0o644); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	args := append([]string{"-C", kbuild, "M=" + work, fmt.Sprintf("-j%d", buildJobs)}, o.makeArgs...)
	args = append(args, "modules")
	srcAbs, err := filepath.Abs(o.source)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(e.stderr, "splicefleet: building %s in a copy, %s (make's output below names the files as %s): make %s\n",
		o.source, work, srcAbs, strings.Join(args, " "))
	out := &pathRewriter{w: e.stderr, old: []byte(work + "/"), new: []byte(srcAbs + "/")}
	err = runMake(ctx, out, args)
	out.flush()
	if err != nil {
		return nil, err
	}
	took := time.Since(start)

	kos, err := findModules(work)
	if err != nil {
		return nil, err
	}
	file, err := pickModule(kos, o.moduleName)
	if err != nil {
		return nil, err
	}
	b := &builtModule{file: file, took: took, source: o.source, kbuild: o.kernelBuild}
	path := filepath.Join(work, file)
	if fi, err := os.Stat(path); err == nil {
		b.size = int(fi.Size())
	}
	if o.strip {
		b.stripped, b.note = stripDebug(ctx, path)
	}
	b.module, err = readFile(path, splice.MaxModuleSize)
	if err != nil {
		return nil, fmt.Errorf("built module: %w", err)
	}
	return b, nil
}

// checkBuildTools fails with advice when make or the compiler is missing.
// The compiler is gcc, and the one the kernel build names in its
// .kernelvariables (Debian's headers say e.g. "CC = ... gcc-12").
func checkBuildTools(kernelBuild string) error {
	tools := []string{"make", "gcc"}
	if cc := kernelCompiler(kernelBuild); cc != "" && cc != "gcc" {
		tools = append(tools, cc)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found in PATH: building a kernel module needs make and gcc "+
				"(apt-get install build-essential; Debian kernels want the gcc they were built with, here %s)",
				tool, tools[len(tools)-1])
		}
	}
	return nil
}

// kernelCompiler returns the compiler a Debian kernel build folder names in
// .kernelvariables ("CC = $(...) $(CROSS_COMPILE)gcc-12"), or "".
func kernelCompiler(kernelBuild string) string {
	f, err := os.Open(filepath.Join(kernelBuild, ".kernelvariables"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "=")
		if !ok || strings.TrimSpace(key) != "CC" {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			return ""
		}
		last := fields[len(fields)-1]
		last = strings.TrimPrefix(last, "$(CROSS_COMPILE)")
		if strings.ContainsAny(last, "$()/") {
			return ""
		}
		return last
	}
	return ""
}

func checkSource(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--source: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--source %s is not a folder", dir)
	}
	for _, name := range []string{"Kbuild", "Makefile"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return nil
		}
	}
	return fmt.Errorf("--source %s has no Kbuild or Makefile (want e.g. a Kbuild file with \"obj-m := NAME.o\")", dir)
}

func checkKernelBuild(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--kernel-build: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--kernel-build %s is not a folder", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "Makefile")); err != nil {
		return fmt.Errorf("--kernel-build %s has no Makefile: want the target kernel's build folder "+
			"(e.g. /lib/modules/RELEASE/build, from the linux-headers package)", dir)
	}
	return nil
}

// buildProduct reports whether a file is something kbuild made: copying
// stale ones into the build folder could let make skip a rebuild.
func buildProduct(name string) bool {
	switch name {
	case "modules.order", "Module.symvers", ".tmp_versions", ".git":
		return true
	}
	if strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".cmd") {
		return true
	}
	for _, ext := range []string{".o", ".ko", ".mod", ".mod.c", ".mod.o", ".symvers"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// copySource copies the regular files and folders of src into dst, minus
// build products. A symbolic link to a regular file is copied as that
// file; anything else that is not a file or folder is refused.
func copySource(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if buildProduct(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.Mkdir(target, 0o755)
		}
		fi, err := os.Stat(p) // follows a symbolic link
		if err != nil {
			return fmt.Errorf("copy source: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("copy source: %s is not a regular file or folder", p)
		}
		return copyFile(p, target, fi.Mode().Perm())
	})
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// runMake runs make in its own process group with its output streamed to
// w. Cancelling ctx kills the whole group (make, the compilers, the
// shells), not only make.
func runMake(ctx context.Context, w io.Writer, args []string) error {
	cmd := exec.CommandContext(ctx, "make", args...)
	cmd.Stdout = w
	cmd.Stderr = w // the same writer: exec serialises the writes
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("build interrupted (%v): make and the processes it started were killed", context.Cause(ctx))
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return fmt.Errorf("build failed: make exited %d (compiler output above)", exit.ExitCode())
	case errors.As(err, &exit):
		return fmt.Errorf("build failed: make %v (compiler output above)", exit.ProcessState)
	default:
		return fmt.Errorf("build failed: run make: %w", err)
	}
}

// pathRewriter passes make's output through line by line, naming the
// files of the build copy by their paths in the source folder, so the
// compiler's messages point at files the user can open.
type pathRewriter struct {
	w        io.Writer
	old, new []byte
	partial  []byte
}

func (p *pathRewriter) Write(b []byte) (int, error) {
	p.partial = append(p.partial, b...)
	if i := bytes.LastIndexByte(p.partial, '\n'); i >= 0 {
		lines := bytes.ReplaceAll(p.partial[:i+1], p.old, p.new)
		p.partial = append(p.partial[:0], p.partial[i+1:]...)
		if _, err := p.w.Write(lines); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// flush writes a last line that lacked its newline.
func (p *pathRewriter) flush() {
	if len(p.partial) > 0 {
		_, _ = p.w.Write(bytes.ReplaceAll(p.partial, p.old, p.new))
		p.partial = nil
	}
}

// findModules lists the .ko files under dir, relative to it, sorted.
func findModules(dir string) ([]string, error) {
	var kos []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ".ko") {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			kos = append(kos, rel)
		}
		return nil
	})
	slices.Sort(kos)
	return kos, err
}

// pickModule chooses the module to wrap: the only one, or the one named
// (with or without .ko; kbuild spells "-" in file names as "_" in module
// names, so both match).
func pickModule(kos []string, name string) (string, error) {
	norm := func(s string) string {
		return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(s), ".ko"), "-", "_")
	}
	switch {
	case len(kos) == 0:
		return "", errors.New("build succeeded but made no .ko file: does the Kbuild file list the module with obj-m?")
	case name != "":
		for _, ko := range kos {
			if norm(ko) == norm(name) {
				return ko, nil
			}
		}
		return "", fmt.Errorf("--module-name %s: the build made %s", name, strings.Join(kos, ", "))
	case len(kos) > 1:
		return "", fmt.Errorf("the build made %d modules (%s): choose one with --module-name", len(kos), strings.Join(kos, ", "))
	}
	return kos[0], nil
}

// stripDebug runs strip --strip-debug on path when strip exists. It keeps
// the symbol table and relocations, which the kernel and the function
// heuristic need. It reports whether it stripped, and otherwise why not.
func stripDebug(ctx context.Context, path string) (bool, string) {
	if _, err := exec.LookPath("strip"); err != nil {
		return false, "debug info kept: strip not found (apt-get install binutils)"
	}
	out, err := exec.CommandContext(ctx, "strip", "--strip-debug", path).CombinedOutput()
	if err != nil {
		return false, fmt.Sprintf("debug info kept: strip --strip-debug failed: %v %s", err, strings.TrimSpace(string(out)))
	}
	return true, ""
}
