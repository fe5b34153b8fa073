package ksrc

import (
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
	"time"

	"github.com/splicefleet/splicefleet/internal/bounded"
	"github.com/splicefleet/splicefleet/kmod"
)

// Building an out-of-tree module: create --source builds the operator's
// module, and create --patch the generated one, both here and both through
// run, whose environment is cleaned of what would change a kernel build
// (KCFLAGS, ARCH, CROSS_COMPILE, a parent make's flags), as the compile
// stage's is.

// BuildOptions says what to build for create --source.
type BuildOptions struct {
	Source      string            // folder of C sources with a Kbuild or Makefile
	KernelBuild string            // the target kernel's build folder (make -C)
	ModuleName  string            // which .ko to take when the build makes several
	Strip       bool              // strip --strip-debug the result
	MakeArgs    []string          // extra make variables (KBUILD_MODPOST_WARN=1)
	Files       map[string][]byte // files written into the build copy after the source (generated objects)
}

// BuiltModule is the outcome of a successful build.
type BuiltModule struct {
	File     string // the .ko, relative to the build folder
	Module   []byte // its contents, stripped when asked and possible
	Size     int    // size before stripping
	Stripped bool
	Note     string // why the module was not stripped, if it was not
	Took     time.Duration
	Source   string
	KBuild   string
}

// Summary says in one line what was built, from what, and how long it took.
func (b *BuiltModule) Summary() string {
	s := fmt.Sprintf("built %s from %s against %s in %.1fs", b.File, b.Source, b.KBuild, b.Took.Seconds())
	switch {
	case b.Stripped:
		s += fmt.Sprintf("; stripped debug info: %d -> %d bytes", b.Size, len(b.Module))
	case b.Note != "":
		s += "; " + b.Note
	}
	return s
}

// buildJobs is make's -j: the builds are small and hosts are shared.
const buildJobs = 2

// BuildModule builds an out-of-tree kernel module from o.Source against
// o.KernelBuild in a temporary copy of the source, streaming make's output
// to log (naming the copy's files by their paths in o.Source), and returns the one module it built. The copy is removed
// afterwards; nothing is written into o.Source. Cancelling ctx kills make
// and everything it started.
func BuildModule(ctx context.Context, o BuildOptions, log io.Writer) (*BuiltModule, error) {
	if err := checkBuildTools(o.KernelBuild); err != nil {
		return nil, err
	}
	if err := checkSource(o.Source); err != nil {
		return nil, err
	}
	if err := checkKernelBuild(o.KernelBuild); err != nil {
		return nil, err
	}
	kbuild, err := filepath.Abs(o.KernelBuild)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "splicefleet-build-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(work) }()
	if err := copySource(o.Source, work); err != nil {
		return nil, err
	}
	for name, data := range o.Files {
		if err := os.WriteFile(filepath.Join(work, name), data, 0o644); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	args := append([]string{"-C", kbuild, "M=" + work, fmt.Sprintf("-j%d", buildJobs)}, o.MakeArgs...)
	args = append(args, "modules")
	srcAbs, err := filepath.Abs(o.Source)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "splicefleet: building %s in a copy, %s (make's output below names the files as %s): make %s\n",
		o.Source, work, srcAbs, strings.Join(args, " "))
	if err := run(ctx, work, log, []string{work + "/", srcAbs + "/"}, "make", args...); err != nil {
		return nil, err
	}
	took := time.Since(start)

	kos, err := findModules(work)
	if err != nil {
		return nil, err
	}
	file, err := pickModule(kos, o.ModuleName)
	if err != nil {
		return nil, err
	}
	b := &BuiltModule{File: file, Took: took, Source: o.Source, KBuild: o.KernelBuild}
	path := filepath.Join(work, file)
	if fi, err := os.Stat(path); err == nil {
		b.Size = int(fi.Size())
	}
	if o.Strip {
		b.Stripped, b.Note = stripDebug(ctx, path)
	}
	b.Module, err = bounded.ReadFile(path, kmod.MaxModuleSize)
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
	cmd := exec.CommandContext(ctx, "strip", "--strip-debug", path)
	cmd.Env = buildEnv(os.Environ())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return false, fmt.Sprintf("debug info kept: strip --strip-debug failed: %v %s", err, strings.TrimSpace(string(out)))
	}
	return true, ""
}
