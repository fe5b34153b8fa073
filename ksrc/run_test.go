package ksrc

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRunKillsProcessGroup cancels a command whose child outlives it and
// checks that the child dies too, as make's compilers must.
func TestRunKillsProcessGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var out syncWriter
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, t.TempDir(), &out, nil, "sh", "-c", "sleep 60 & echo child $!; wait")
	}()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "child "); ok {
			pid, _ = strconv.Atoi(s)
		}
	}
	if pid == 0 {
		t.Fatalf("no child pid in %q", out.String())
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Errorf("run = %v, want interrupted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d survived the cancel", pid)
		}
	}
}

func TestRunRewritesPathsAndReportsFailure(t *testing.T) {
	var out syncWriter
	err := run(t.Context(), t.TempDir(), &out, []string{"/tmp/w/b/", "b/"}, "sh", "-c", "echo /tmp/w/b/fs/x.c:3: error; printf tail; exit 3")
	if !errors.Is(err, ErrBuildFailed) || !strings.Contains(err.Error(), "sh exited 3") {
		t.Errorf("run = %v", err)
	}
	if got := out.String(); got != "b/fs/x.c:3: error\ntail\n" {
		t.Errorf("output = %q", got)
	}
}

func TestBuildEnv(t *testing.T) {
	got := buildEnv([]string{"PATH=/bin", "KCFLAGS=-O0", "MAKEFLAGS=-j8", "KBUILD_OUTPUT=/x", "ARCH=arm", "HOME=/root", "LC_ALL=de_DE"})
	if strings.Join(got, " ") != "PATH=/bin HOME=/root LC_ALL=C" {
		t.Errorf("buildEnv = %q", got)
	}
}

// syncWriter is a strings.Builder safe for a writer and a reader.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
