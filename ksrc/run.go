package ksrc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// run runs name in dir in its own process group, streaming its output to
// w with each old prefix replaced by its new one (so messages name files
// the user knows), and kills the whole group (make, the shells, the
// compilers) when ctx ends. The environment is the process's, cleaned of
// what would change a kernel build behind our back.
func run(ctx context.Context, dir string, w io.Writer, rewrite []string, name string, args ...string) error {
	return runEnv(ctx, dir, w, rewrite, nil, name, args...)
}

// runEnv is run with extra variables added to the cleaned environment.
func runEnv(ctx context.Context, dir string, w io.Writer, rewrite, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(buildEnv(os.Environ()), env...)
	out := &lineRewriter{w: w, r: strings.NewReplacer(rewrite...)}
	cmd.Stdout = out
	cmd.Stderr = out // one writer: exec serialises the writes
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out.flush()
	if ctx.Err() != nil {
		return fmt.Errorf("build interrupted (%v): %s and the processes it started were killed", context.Cause(ctx), name)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return fmt.Errorf("%w: %s exited %d%s (its output is above)", ErrBuildFailed, name, exit.ExitCode(), out.firstError())
	case errors.As(err, &exit):
		return fmt.Errorf("%w: %s %v%s (its output is above)", ErrBuildFailed, name, exit.ProcessState, out.firstError())
	default:
		return fmt.Errorf("%w: run %s: %w", ErrBuildFailed, name, err)
	}
}

// output runs name and returns its standard output, bounded.
func output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = buildEnv(os.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &limitWriter{w: &stdout, n: 64 << 10}
	cmd.Stderr = &limitWriter{w: &stderr, n: 4 << 10}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// buildEnv drops variables that make or kbuild would pick up and that
// would make the build differ from the target kernel's: the output folder,
// extra flags, cross-compiling, a parent make's jobserver.
func buildEnv(env []string) []string {
	drop := map[string]bool{
		"MAKEFLAGS": true, "MAKELEVEL": true, "MFLAGS": true, "MAKEFILES": true, "GNUMAKEFLAGS": true,
		"ARCH": true, "SRCARCH": true, "CROSS_COMPILE": true, "LLVM": true, "LLVM_IAS": true,
		"KCFLAGS": true, "KCPPFLAGS": true, "KAFLAGS": true, "KRUSTFLAGS": true,
		"CFLAGS_KERNEL": true, "CFLAGS_MODULE": true, "LDFLAGS_MODULE": true,
		"LOCALVERSION": true, "KERNELRELEASE": true, "O": true, "M": true, "V": true, "W": true, "C": true,
		"INSTALL_MOD_PATH": true, "LC_ALL": true, "GCC_EXEC_PREFIX": true, "COMPILER_PATH": true,
		"CPATH": true, "C_INCLUDE_PATH": true,
	}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if drop[k] || strings.HasPrefix(k, "KBUILD_") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "LC_ALL=C")
}

// lineRewriter passes output through line by line with paths rewritten.
type lineRewriter struct {
	w       io.Writer
	r       *strings.Replacer
	partial []byte
	// first is the first line of the output that reports an error, as
	// gcc and ld write it ("FILE:LINE:COL: error: ..."), so that the
	// summary of a failed build says what failed even where the output
	// itself is not kept (make corpus records only the summary).
	first string
}

// maxErrorLine bounds the error line a build failure's summary quotes.
const maxErrorLine = 300

// note keeps the first error line of rewritten output.
func (l *lineRewriter) note(s string) {
	if l.first != "" {
		return
	}
	for line := range strings.Lines(s) {
		if strings.Contains(line, ": error: ") || strings.Contains(line, ": fatal error: ") || strings.Contains(line, "undefined reference to") {
			line = strings.TrimSpace(line)
			if len(line) > maxErrorLine {
				line = line[:maxErrorLine] + "..."
			}
			l.first = strings.ToValidUTF8(line, "?")
			return
		}
	}
}

// firstError is the first error line, prefixed for a summary, or "".
func (l *lineRewriter) firstError() string {
	if l.first == "" {
		return ""
	}
	return ": " + l.first
}

func (l *lineRewriter) Write(b []byte) (int, error) {
	l.partial = append(l.partial, b...)
	if i := bytes.LastIndexByte(l.partial, '\n'); i >= 0 {
		s := l.r.Replace(string(l.partial[:i+1]))
		l.partial = append(l.partial[:0], l.partial[i+1:]...)
		l.note(s)
		if _, err := io.WriteString(l.w, s); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// flush writes a last line that lacked its newline.
func (l *lineRewriter) flush() {
	if len(l.partial) > 0 {
		s := l.r.Replace(string(l.partial))
		l.note(s)
		_, _ = io.WriteString(l.w, s+"\n")
		l.partial = nil
	}
}

// limitWriter keeps the first n bytes written and drops the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if l.n > 0 {
		k := min(len(b), l.n)
		l.n -= k
		if _, err := l.w.Write(b[:k]); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
