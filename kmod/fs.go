package kmod

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/splicefleet/splicefleet/internal/bounded"
)

// Read limits. sysfs and procfs report sizes that have nothing to do with
// what a read returns (usually 4096 or 0), so files are read up to a limit
// instead of by their Stat size.
const (
	// maxValueFile bounds one-value files such as enabled or osrelease.
	maxValueFile = 4096
	// maxNotesFile bounds /sys/kernel/notes (a few hundred bytes in practice).
	maxNotesFile = 64 << 10
	// maxModulesFile bounds /proc/modules (about 100 bytes per module).
	maxModulesFile = 4 << 20
	// maxBlockers bounds how many blocking tasks are reported.
	maxBlockers = 64
)

// FS reads kernel state (procfs and sysfs) through a root folder: "/" on a
// running system, a fixture tree in tests. Its zero value reads from "/".
type FS struct {
	root string
}

// NewFS returns an FS rooted at root ("" means "/"). root must be a folder.
func NewFS(root string) (FS, error) {
	if root == "" {
		root = "/"
	}
	st, err := os.Stat(root)
	if err != nil {
		return FS{}, fmt.Errorf("kernel root: %w", err)
	}
	if !st.IsDir() {
		return FS{}, fmt.Errorf("kernel root %s: not a folder", root)
	}
	return FS{root: filepath.Clean(root)}, nil
}

// Root is the folder the FS reads through.
func (k FS) Root() string {
	if k.root == "" {
		return "/"
	}
	return k.root
}

// path joins rel (a path such as "proc/modules") to the root.
func (k FS) path(rel ...string) string {
	return filepath.Join(append([]string{k.Root()}, rel...)...)
}

// livepatchDir is sys/kernel/livepatch, or one patch's folder in it.
func (k FS) livepatchDir(name ...string) string {
	return k.path(append([]string{"sys", "kernel", "livepatch"}, name...)...)
}

// readRaw reads at most limit bytes of path without trusting its Stat
// size. A file longer than limit is an error, not a silent truncation.
// Errors name the file.
func readRaw(path string, limit int64) ([]byte, error) {
	return bounded.ReadFile(path, limit)
}

// readFile reads a small sysfs or procfs value file, bounded by limit, with
// surrounding white space trimmed. Errors name the file.
func readFile(path string, limit int64) (string, error) {
	b, err := readRaw(path, limit)
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(b)), nil
}

// readBool reads a sysfs file holding 0 or 1.
func readBool(path string) (bool, error) {
	s, err := readFile(path, maxValueFile)
	if err != nil {
		return false, err
	}
	switch s {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, fmt.Errorf("%s: want 0 or 1, got %q", path, s)
}

// readInt reads a file holding one decimal integer.
func readInt(path string) (int, error) {
	s, err := readFile(path, maxValueFile)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s: want an integer, got %q", path, s)
	}
	return n, nil
}

// writeFile writes value to an existing sysfs file. It never creates a
// file: a missing attribute is an error (naming the file), not a new file
// in /sys. O_TRUNC matters only for the regular files of test trees.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err // *fs.PathError names the file
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// exists reports whether path exists; other errors count as absent.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Modules lists loaded modules from proc/modules.
func (k FS) Modules() ([]Module, error) {
	path := k.path("proc", "modules")
	b, err := readRaw(path, maxModulesFile)
	if err != nil {
		return nil, err
	}
	mods, err := parseModules(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return mods, nil
}

// parseModules parses /proc/modules: one module per line,
//
//	name size refs deps state address [taints]
//
// where deps is "-" or a comma list with a trailing comma and taints, when
// present, is a parenthesised flag list such as "(OE)".
func parseModules(r io.Reader) ([]Module, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var mods []Module
	for i, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		m, err := parseModuleLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		mods = append(mods, m)
	}
	return mods, nil
}

// parseModuleLine parses one line of /proc/modules.
func parseModuleLine(line string) (Module, error) {
	f := strings.Fields(line)
	if len(f) != 6 && len(f) != 7 {
		return Module{}, fmt.Errorf("want 6 or 7 fields, got %d in %q", len(f), line)
	}
	size, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || size < 0 {
		return Module{}, fmt.Errorf("module %s: bad size %q", f[0], f[1])
	}
	refs, err := strconv.Atoi(f[2])
	if err != nil {
		return Module{}, fmt.Errorf("module %s: bad reference count %q", f[0], f[2])
	}
	m := Module{Name: f[0], Size: size, Refs: refs, State: f[4], Address: f[5]}
	if f[3] != "-" {
		for _, d := range strings.Split(f[3], ",") {
			if d != "" {
				m.Deps = append(m.Deps, d)
			}
		}
	}
	if len(f) == 7 {
		t := f[6]
		if len(t) < 3 || t[0] != '(' || t[len(t)-1] != ')' {
			return Module{}, fmt.Errorf("module %s: bad taint flags %q", f[0], t)
		}
		m.Taints = t[1 : len(t)-1]
	}
	return m, nil
}

// Taint reads proc/sys/kernel/tainted.
func (k FS) Taint() (Taint, error) {
	path := k.path("proc", "sys", "kernel", "tainted")
	s, err := readFile(path, maxValueFile)
	if err != nil {
		return 0, err
	}
	t, err := parseTaint(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// parseTaint parses the decimal taint mask.
func parseTaint(s string) (Taint, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a decimal taint mask, got %q", s)
	}
	return Taint(n), nil
}

// PatchState reads proc/<pid>/patch_state: 0 or 1 for a task still on the
// old or already on the new code during a transition, -1 outside one.
func (k FS) PatchState(pid int) (int, error) {
	return readInt(k.path("proc", strconv.Itoa(pid), "patch_state"))
}

// Blockers lists the tasks whose patch_state differs from target (1 while
// a patch is being enabled, 0 while it is being disabled): the tasks a
// transition waits for. It looks at every thread (proc/<pid>/task/<tid>,
// or proc/<pid> itself where there is no task folder), skips tasks that
// exit while it reads, and returns at most 64 tasks, ordered by pid.
func (k FS) Blockers(target int) ([]Task, error) {
	ents, err := os.ReadDir(k.path("proc"))
	if err != nil {
		return nil, err
	}
	var out []Task
	for _, e := range ents { // ReadDir sorts by name; pids sort below
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		for _, dir := range k.taskDirs(pid) {
			t, blocking := k.blocker(dir, target)
			if blocking {
				out = append(out, t)
			}
		}
	}
	sortTasks(out)
	if len(out) > maxBlockers {
		out = out[:maxBlockers]
	}
	return out, nil
}

// taskDirs lists the folders of a process's threads, or the process's
// own folder when it has no task folder.
func (k FS) taskDirs(pid int) []string {
	base := k.path("proc", strconv.Itoa(pid))
	ents, err := os.ReadDir(filepath.Join(base, "task"))
	if err != nil {
		return []string{base}
	}
	var dirs []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			dirs = append(dirs, filepath.Join(base, "task", e.Name()))
		}
	}
	return dirs
}

// blocker reads one task folder. A task that vanished, or that is not in
// a transition (-1), or is already at target, is not blocking.
func (k FS) blocker(dir string, target int) (Task, bool) {
	pid, err := strconv.Atoi(filepath.Base(dir))
	if err != nil {
		return Task{}, false
	}
	state, err := readInt(filepath.Join(dir, "patch_state"))
	if err != nil || state == -1 || state == target {
		return Task{}, false
	}
	comm, err := readFile(filepath.Join(dir, "comm"), maxValueFile)
	if errors.Is(err, fs.ErrNotExist) {
		return Task{}, false // exited between the two reads
	}
	if err != nil {
		comm = "?"
	}
	return Task{PID: pid, Comm: comm}, true
}

// sortTasks orders tasks by pid.
func sortTasks(ts []Task) {
	slices.SortFunc(ts, func(a, b Task) int { return cmp.Compare(a.PID, b.PID) })
}
