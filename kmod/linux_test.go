package kmod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// fakeKernel is the system call seam of a pretend kernel whose sysfs is a
// temporary tree. It also sees every sysfs write the backend makes (the
// backend's write hook) and reacts to it the way the kernel would, so the
// tests are deterministic: no goroutines flip files behind their back.
type fakeKernel struct {
	t    *testing.T
	root string
	// load is what finit_module registers: a patch of that name (none
	// when empty) with these files.
	load      string
	loadFiles map[string]string
	finitErr  error
	// finitBusy is how many finit_module calls fail with EBUSY first.
	finitBusy int
	// busy is how many delete_module calls fail with EBUSY first, and
	// inUse how many then fail with EAGAIN.
	busy  int
	inUse int
	// stuck keeps every transition running until it is reversed.
	stuck bool
	// signalEnds makes a write to signal end the transition.
	signalEnds bool
	kmsg       [][]byte
	kmsgErr    error

	calls  []string // "finit", "delete NAME", "write REL=VALUE"
	loaded map[string]bool
}

func newFakeKernel(t *testing.T, files map[string]string) (*fakeKernel, *Linux) {
	t.Helper()
	root := t.TempDir()
	testutil.WriteTree(t, root, files)
	f := &fakeKernel{t: t, root: root, loaded: map[string]bool{}}
	k, err := NewLinux(root, WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, nil))),
		WithCleanupTimeouts(Timeouts{Stall: 10 * time.Millisecond, AfterSignal: 10 * time.Millisecond, Poll: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	k.sys = f
	k.write = f.write
	k.busyBackoff = time.Millisecond
	return f, k
}

// testWriter sends logs to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (f *fakeKernel) rel(path string) string {
	r, err := filepath.Rel(f.root, path)
	if err != nil {
		f.t.Fatal(err)
	}
	return filepath.ToSlash(r)
}

func (f *fakeKernel) patchDir(name string) string {
	return filepath.Join(f.root, "sys/kernel/livepatch", name)
}

func (f *fakeKernel) set(rel, value string) {
	testutil.WriteTree(f.t, f.root, map[string]string{rel: value})
}

func (f *fakeKernel) get(rel string) string {
	b, err := os.ReadFile(filepath.Join(f.root, rel))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return strings.TrimSpace(string(b))
}

func (f *fakeKernel) finitModule(fd int, params string, flags int) error {
	f.calls = append(f.calls, "finit")
	if fd < 0 || params != "" || flags != 0 {
		f.t.Errorf("finit_module(%d, %q, %d)", fd, params, flags)
	}
	if f.finitBusy > 0 {
		f.finitBusy--
		return fmt.Errorf("%s: %w", opFinit, ErrBusy)
	}
	if f.finitErr != nil {
		return f.finitErr
	}
	f.loaded[f.load] = true
	if f.load != "" {
		for rel, v := range f.loadFiles {
			f.set(filepath.Join("sys/kernel/livepatch", f.load, rel), v)
		}
	}
	return nil
}

func (f *fakeKernel) deleteModule(name string, flags int) error {
	f.calls = append(f.calls, "delete "+name)
	if flags != deleteNonBlock {
		f.t.Errorf("delete_module(%q, %d): want non-blocking", name, flags)
	}
	if f.busy > 0 {
		f.busy--
		return fmt.Errorf("%s: %w", opDelete, ErrBusy)
	}
	if f.inUse > 0 {
		f.inUse--
		return fmt.Errorf("%s: %w", opDelete, ErrInUse)
	}
	if !f.loaded[name] {
		return fmt.Errorf("%s: %w", opDelete, ErrNotLoaded)
	}
	if exists(f.patchDir(name)) {
		return fmt.Errorf("%s: patch still registered: %w", opDelete, ErrBusy)
	}
	delete(f.loaded, name)
	return nil
}

func (f *fakeKernel) readKmsg(path string) ([][]byte, error) {
	if f.rel(path) != "dev/kmsg" {
		f.t.Errorf("readKmsg(%s)", path)
	}
	return f.kmsg, f.kmsgErr
}

// write records a sysfs write, makes it, and plays the kernel's part.
func (f *fakeKernel) write(path, value string) error {
	rel := f.rel(path)
	f.calls = append(f.calls, "write "+rel+"="+value)
	if err := writeFile(path, value); err != nil {
		return err
	}
	dir := filepath.Dir(rel)
	switch filepath.Base(rel) {
	case "enabled":
		if f.get(dir+"/transition") == "1" {
			// Reversing a running transition ends it (the tasks go
			// back to the code they are on).
			f.finishTransition(dir, value)
			return nil
		}
		f.set(dir+"/transition", "1")
		if !f.stuck {
			f.finishTransition(dir, value)
		}
	case "signal":
		if f.signalEnds {
			f.finishTransition(dir, f.get(dir+"/enabled"))
		}
	}
	return nil
}

// finishTransition ends a transition; a disabled patch is freed.
func (f *fakeKernel) finishTransition(dir, enabled string) {
	if enabled == "0" {
		if err := os.RemoveAll(filepath.Join(f.root, dir)); err != nil {
			f.t.Fatal(err)
		}
		return
	}
	f.set(dir+"/transition", "0")
}

// writes lists the sysfs writes made.
func (f *fakeKernel) writes() []string {
	var w []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, "write ") {
			w = append(w, c)
		}
	}
	return w
}

// checkNoForce fails the test if anything wrote the force file.
func (f *fakeKernel) checkNoForce() {
	for _, c := range f.calls {
		if strings.Contains(c, "/force=") {
			f.t.Errorf("the force file was written: %s", c)
		}
	}
	if b, err := os.ReadFile(filepath.Join(f.patchDir("lp"), "force")); err == nil && len(b) != 0 {
		f.t.Errorf("force holds %q", b)
	}
}

// patchFiles is a freshly enabled 6.1 patch, transition done.
var patchFiles = map[string]string{"enabled": "1\n", "transition": "0\n", "force": "", "signal": "", "vmlinux/patched": "1\n"}

// withFiles copies m and sets extra keys.
func withFiles(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// moduleFile is an open file to pass to Load.
func moduleFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "livepatch-cmdline", "livepatch_cmdline.ko"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// emptyLivepatchTree is a kernel with livepatch support and no patches.
var emptyLivepatchTree = map[string]string{"sys/kernel/livepatch/.keep": ""}

func TestLoad(t *testing.T) {
	f, k := newFakeKernel(t, emptyLivepatchTree)
	f.load, f.loadFiles = "lp", patchFiles
	if err := k.Load(context.Background(), moduleFile(t), LoadSpec{Name: "lp"}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"finit"}, f.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	ps, err := k.Livepatches()
	if err != nil || len(ps) != 1 || ps[0].Name != "lp" || !ps[0].Enabled {
		t.Errorf("Livepatches after Load = %+v, %v", ps, err)
	}
}

func TestLoadWithMatchingReplace(t *testing.T) {
	f, k := newFakeKernel(t, emptyLivepatchTree)
	f.load, f.loadFiles = "lp", withFiles(patchFiles, "replace", "1\n")
	if err := k.Load(context.Background(), moduleFile(t), LoadSpec{Name: "lp", Replace: true}); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name     string
		tree     map[string]string
		finitErr error
		spec     LoadSpec
		want     error
		calls    []string
	}{
		{
			name: "no livepatch support", tree: map[string]string{"proc/modules": ""},
			spec: LoadSpec{Name: "lp"}, want: ErrNoLivepatch,
		},
		{
			name: "patch of that name present", tree: map[string]string{"sys/kernel/livepatch/lp/enabled": "1"},
			spec: LoadSpec{Name: "lp"}, want: ErrAlreadyLoaded,
		},
		{
			name: "kernel rejects the key", tree: emptyLivepatchTree, finitErr: fmt.Errorf("%s: %w", opFinit, ErrKeyRejected),
			spec: LoadSpec{Name: "lp"}, want: ErrKeyRejected, calls: []string{"finit"},
		},
		{
			name: "wrong kernel", tree: emptyLivepatchTree, finitErr: fmt.Errorf("%s: %w", opFinit, ErrWrongKernel),
			spec: LoadSpec{Name: "lp"}, want: ErrWrongKernel, calls: []string{"finit"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, k := newFakeKernel(t, tt.tree)
			f.load, f.loadFiles, f.finitErr = "lp", patchFiles, tt.finitErr
			err := k.Load(context.Background(), moduleFile(t), tt.spec)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Load: err = %v, want %v", err, tt.want)
			}
			wantErrContaining(t, err, "load module lp")
			if d := cmp.Diff(tt.calls, f.calls); d != "" {
				t.Errorf("calls (-want +got):\n%s", d)
			}
		})
	}
	t.Run("bad names", func(t *testing.T) {
		f, k := newFakeKernel(t, emptyLivepatchTree)
		for _, name := range []string{"", ".", "..", "../../x", "a/b", "a\x00b"} {
			wantErrContaining(t, k.Load(context.Background(), moduleFile(t), LoadSpec{Name: name}), "bad module name")
			wantErrContaining(t, k.Disable(context.Background(), name), "bad module name")
			wantErrContaining(t, k.WaitTransition(context.Background(), name, shortTimeouts), "bad module name")
		}
		wantErrContaining(t, k.Load(context.Background(), nil, LoadSpec{Name: "lp"}), "no module file")
		if len(f.calls) != 0 {
			t.Errorf("calls = %q, want none", f.calls)
		}
	})
}

func TestLoadNoPatchRegistered(t *testing.T) {
	f, k := newFakeKernel(t, emptyLivepatchTree)
	f.load, f.loadFiles = "other", patchFiles // registers "other", not "lp"
	f.loaded["lp"] = false
	err := k.Load(context.Background(), moduleFile(t), LoadSpec{Name: "lp"})
	if !errors.Is(err, ErrSpecMismatch) {
		t.Fatalf("Load: err = %v, want ErrSpecMismatch", err)
	}
	wantErrContaining(t, err, "module loaded but registered no livepatch named lp")
	if d := cmp.Diff([]string{"finit", "delete lp"}, f.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
}

func TestLoadReplaceMismatchBacksOut(t *testing.T) {
	f, k := newFakeKernel(t, emptyLivepatchTree)
	f.load, f.loadFiles = "lp", withFiles(patchFiles, "replace", "0\n", "transition", "1\n")
	f.busy = 2
	err := k.Load(context.Background(), moduleFile(t), LoadSpec{Name: "lp", Replace: true})
	if !errors.Is(err, ErrSpecMismatch) {
		t.Fatalf("Load: err = %v, want ErrSpecMismatch", err)
	}
	wantErrContaining(t, err, "replace=false", "replace=true")
	want := []string{"finit", "write sys/kernel/livepatch/lp/enabled=0", "delete lp", "delete lp", "delete lp"}
	if d := cmp.Diff(want, f.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	if f.loaded["lp"] || exists(f.patchDir("lp")) {
		t.Error("the mismatched module is still loaded")
	}
}

func TestLoadReplaceMismatchStuckStaysLoaded(t *testing.T) {
	f, k := newFakeKernel(t, emptyLivepatchTree)
	f.load, f.loadFiles = "lp", withFiles(patchFiles, "replace", "1\n")
	f.stuck = true
	err := k.Load(context.Background(), moduleFile(t), LoadSpec{Name: "lp"})
	if !errors.Is(err, ErrSpecMismatch) || !errors.Is(err, ErrTransitionStuck) {
		t.Fatalf("Load: err = %v, want ErrSpecMismatch and ErrTransitionStuck", err)
	}
	// Backing out never reverses (re-enables) nor forces the disable.
	want := []string{"write sys/kernel/livepatch/lp/enabled=0", "write sys/kernel/livepatch/lp/signal=1"}
	if d := cmp.Diff(want, f.writes()); d != "" {
		t.Errorf("writes (-want +got):\n%s", d)
	}
	f.checkNoForce()
}

func TestDisable(t *testing.T) {
	f, k := newFakeKernel(t, map[string]string{
		"sys/kernel/livepatch/lp/enabled":    "1\n",
		"sys/kernel/livepatch/lp/transition": "0\n",
		"sys/kernel/livepatch/off/enabled":   "0\n",
	})
	f.stuck = true
	if err := k.Disable(context.Background(), "lp"); err != nil {
		t.Fatal(err)
	}
	if got := f.get("sys/kernel/livepatch/lp/enabled"); got != "0" {
		t.Errorf("enabled = %q after Disable, want 0", got)
	}
	if err := k.Disable(context.Background(), "off"); err != nil {
		t.Errorf("Disable of a disabling patch: %v", err)
	}
	if d := cmp.Diff([]string{"write sys/kernel/livepatch/lp/enabled=0"}, f.writes()); d != "" {
		t.Errorf("writes (-want +got):\n%s", d)
	}
	if err := k.Disable(context.Background(), "missing"); !errors.Is(err, ErrNoSuchPatch) {
		t.Errorf("Disable(missing): err = %v, want ErrNoSuchPatch", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := k.Disable(ctx, "lp"); !errors.Is(err, context.Canceled) {
		t.Errorf("Disable(cancelled): err = %v", err)
	}
}

func TestDisableMalformed(t *testing.T) {
	_, k := newFakeKernel(t, map[string]string{"sys/kernel/livepatch/lp/enabled": "yes\n"})
	wantErrContaining(t, k.Disable(context.Background(), "lp"), "sys/kernel/livepatch/lp/enabled", `"yes"`)
}

func TestLoadRetriesBusy(t *testing.T) {
	t.Run("another transition in progress", func(t *testing.T) {
		f, k := newFakeKernel(t, emptyLivepatchTree)
		f.load, f.loadFiles, f.finitBusy = "lp", patchFiles, 3
		if err := k.Load(context.Background(), moduleFile(t), LoadSpec{Name: "lp"}); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]string{"finit", "finit", "finit", "finit"}, f.calls); d != "" {
			t.Errorf("calls (-want +got):\n%s", d)
		}
	})
	t.Run("gives up after bounded tries", func(t *testing.T) {
		f, k := newFakeKernel(t, emptyLivepatchTree)
		f.load, f.loadFiles, f.finitBusy = "lp", patchFiles, 1000
		err := k.Load(context.Background(), moduleFile(t), LoadSpec{Name: "lp"})
		if !errors.Is(err, ErrBusy) {
			t.Fatalf("err = %v, want ErrBusy", err)
		}
		if n := len(f.calls); n != k.busyTries {
			t.Errorf("finit_module called %d times, want %d", n, k.busyTries)
		}
		if f.loaded["lp"] {
			t.Error("module loaded")
		}
	})
}

func TestUnload(t *testing.T) {
	t.Run("retries EBUSY", func(t *testing.T) {
		f, k := newFakeKernel(t, nil)
		f.loaded["lp"], f.busy = true, 5
		if err := k.Unload(context.Background(), "lp"); err != nil {
			t.Fatal(err)
		}
		if n := len(f.calls); n != 6 {
			t.Errorf("delete_module called %d times, want 6", n)
		}
	})
	// The kernel drops a disabled patch's module reference from a work
	// queue, so delete_module right after a disable can see EAGAIN.
	t.Run("retries EAGAIN", func(t *testing.T) {
		f, k := newFakeKernel(t, nil)
		f.loaded["lp"], f.busy, f.inUse = true, 1, 3
		if err := k.Unload(context.Background(), "lp"); err != nil {
			t.Fatal(err)
		}
		if n := len(f.calls); n != 5 {
			t.Errorf("delete_module called %d times, want 5", n)
		}
		if f.loaded["lp"] {
			t.Error("module still loaded")
		}
	})
	t.Run("gives up after bounded tries", func(t *testing.T) {
		f, k := newFakeKernel(t, nil)
		f.loaded["lp"], f.busy = true, 1000
		err := k.Unload(context.Background(), "lp")
		if !errors.Is(err, ErrBusy) {
			t.Fatalf("Unload: err = %v, want ErrBusy", err)
		}
		if n := len(f.calls); n != k.busyTries {
			t.Errorf("delete_module called %d times, want %d", n, k.busyTries)
		}
	})
	t.Run("not loaded is not retried", func(t *testing.T) {
		f, k := newFakeKernel(t, nil)
		err := k.Unload(context.Background(), "lp")
		if !errors.Is(err, ErrNotLoaded) || len(f.calls) != 1 {
			t.Errorf("Unload: err = %v after %d calls, want ErrNotLoaded after 1", err, len(f.calls))
		}
		wantErrContaining(t, err, "unload module lp")
	})
	t.Run("cancelled while retrying", func(t *testing.T) {
		f, k := newFakeKernel(t, nil)
		f.loaded["lp"], f.busy = true, 1000
		k.busyBackoff = time.Hour
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		err := k.Unload(ctx, "lp")
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrBusy) {
			t.Errorf("Unload: err = %v, want deadline exceeded and ErrBusy", err)
		}
	})
}

func TestLog(t *testing.T) {
	f, k := newFakeKernel(t, nil)
	f.kmsg = [][]byte{
		[]byte("6,0,0,-;Linux version 6.1.0-56-cloud-amd64\n"),
		[]byte("5,1,2000,-;livepatch: enabling patch 'lp'\n"),
		[]byte("4,2,3000,-;WARNING: CPU: 0 PID: 1 at x\n SUBSYSTEM=cpu\n"),
	}
	recs, next, err := k.Log(0)
	if err != nil {
		t.Fatal(err)
	}
	want := []LogRecord{
		{Seq: 1, Priority: 5, Time: 2 * time.Millisecond, Message: "livepatch: enabling patch 'lp'"},
		{Seq: 2, Priority: 4, Time: 3 * time.Millisecond, Message: "WARNING: CPU: 0 PID: 1 at x"},
	}
	if d := cmp.Diff(want, recs); d != "" || next != 2 {
		t.Errorf("Log(0): next = %d, want 2; records (-want +got):\n%s", next, d)
	}
	if recs, next, err = k.Log(next); err != nil || len(recs) != 0 || next != 2 {
		t.Errorf("Log(2) = %v, %d, %v; want nothing new", recs, next, err)
	}
	f.kmsgErr = fmt.Errorf("open: %w", ErrNotPermitted)
	if _, next, err := k.Log(2); !errors.Is(err, ErrNotPermitted) || next != 2 {
		t.Errorf("Log with an unreadable kmsg: next = %d, err = %v", next, err)
	}
}

// shortTimeouts keep the transition tests fast.
var shortTimeouts = Timeouts{Stall: 20 * time.Millisecond, AfterSignal: 20 * time.Millisecond, Poll: 2 * time.Millisecond}

func TestWaitTransitionDone(t *testing.T) {
	f, k := newFakeKernel(t, map[string]string{
		"sys/kernel/livepatch/lp/enabled":    "1\n",
		"sys/kernel/livepatch/lp/transition": "0\n",
	})
	if err := k.WaitTransition(context.Background(), "lp", shortTimeouts); err != nil {
		t.Fatal(err)
	}
	// A patch that is gone (its disable completed) is not in transition.
	if err := k.WaitTransition(context.Background(), "gone", shortTimeouts); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 0 {
		t.Errorf("calls = %q, want none", f.calls)
	}
}

// TestWaitTransitionPatchGoing: a patch whose disable just finished is
// freed by the kernel from a work queue, and sysfs takes its files away
// before its folder. Seen in a guest: undo read the patch's folder, then
// failed to open its enabled file. That patch is gone, not an error.
func TestWaitTransitionPatchGoing(t *testing.T) {
	f, k := newFakeKernel(t, map[string]string{
		"sys/kernel/livepatch/lp/.keep": "",
	})
	if err := k.WaitTransition(context.Background(), "lp", shortTimeouts); err != nil {
		t.Fatalf("WaitTransition of a patch whose files are gone: %v", err)
	}
	if done, err := k.poll(context.Background(), "lp", time.Second, time.Millisecond); !done || err != nil {
		t.Fatalf("poll of a patch whose files are gone: done %t, err %v", done, err)
	}
	if err := k.Disable(context.Background(), "lp"); !errors.Is(err, ErrNoSuchPatch) {
		t.Fatalf("Disable of a patch whose files are gone: %v, want ErrNoSuchPatch", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("calls = %q, want none", f.calls)
	}
}

func TestWaitTransitionSignalHelps(t *testing.T) {
	f, k := newFakeKernel(t, map[string]string{
		"sys/kernel/livepatch/lp/enabled":    "1\n",
		"sys/kernel/livepatch/lp/transition": "1\n",
		"sys/kernel/livepatch/lp/signal":     "",
		"sys/kernel/livepatch/lp/force":      "",
	})
	f.signalEnds = true
	start := time.Now()
	if err := k.WaitTransition(context.Background(), "lp", shortTimeouts); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < shortTimeouts.Stall {
		t.Errorf("signalled after %s, before the stall timeout %s", waited, shortTimeouts.Stall)
	}
	if d := cmp.Diff([]string{"write sys/kernel/livepatch/lp/signal=1"}, f.writes()); d != "" {
		t.Errorf("writes (-want +got):\n%s", d)
	}
	f.checkNoForce()
}

func TestWaitTransitionStuckEnable(t *testing.T) {
	f, k := newFakeKernel(t, withTasks(map[string]string{
		"sys/kernel/livepatch/lp/enabled":         "1\n",
		"sys/kernel/livepatch/lp/transition":      "1\n",
		"sys/kernel/livepatch/lp/signal":          "",
		"sys/kernel/livepatch/lp/force":           "",
		"sys/kernel/livepatch/lp/vmlinux/patched": "1\n",
	}))
	f.stuck, f.loaded["lp"], f.busy = true, true, 2
	err := k.WaitTransition(context.Background(), "lp", shortTimeouts)
	var te *TransitionError
	if !errors.As(err, &te) || !errors.Is(err, ErrTransitionStuck) {
		t.Fatalf("WaitTransition: err = %v, want a *TransitionError wrapping ErrTransitionStuck", err)
	}
	want := &TransitionError{
		Patch: "lp", Enabling: true, Reverted: true,
		Blockers: []Task{{PID: 9, Comm: "worker"}, {PID: 100, Comm: "sleeper"}},
	}
	if d := cmp.Diff(want, te, cmpIgnoreWaited); d != "" {
		t.Errorf("TransitionError (-want +got):\n%s", d)
	}
	if te.Waited < shortTimeouts.Stall+shortTimeouts.AfterSignal {
		t.Errorf("Waited = %s, want at least %s", te.Waited, shortTimeouts.Stall+shortTimeouts.AfterSignal)
	}
	wantErrContaining(t, err, "enabling lp", "blocked by worker[9], sleeper[100]", "reversed")
	wantCalls := []string{
		"write sys/kernel/livepatch/lp/signal=1",
		"write sys/kernel/livepatch/lp/enabled=0",
		"delete lp", "delete lp", "delete lp",
	}
	if d := cmp.Diff(wantCalls, f.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	if f.loaded["lp"] {
		t.Error("module still loaded after reversing its enable")
	}
	f.checkNoForce()
}

func TestWaitTransitionStuckDisable(t *testing.T) {
	f, k := newFakeKernel(t, withTasks(map[string]string{
		"sys/kernel/livepatch/lp/enabled":    "0\n",
		"sys/kernel/livepatch/lp/transition": "1\n",
		"sys/kernel/livepatch/lp/signal":     "",
		"sys/kernel/livepatch/lp/force":      "",
	}))
	f.stuck, f.loaded["lp"] = true, true
	err := k.WaitTransition(context.Background(), "lp", shortTimeouts)
	var te *TransitionError
	if !errors.As(err, &te) {
		t.Fatalf("WaitTransition: err = %v, want a *TransitionError", err)
	}
	want := &TransitionError{
		Patch: "lp", Reverted: true,
		Blockers: []Task{{PID: 7, Comm: "server"}, {PID: 101, Comm: "done"}},
	}
	if d := cmp.Diff(want, te, cmpIgnoreWaited); d != "" {
		t.Errorf("TransitionError (-want +got):\n%s", d)
	}
	// Reversing a disable re-enables the patch and keeps the module.
	wantCalls := []string{"write sys/kernel/livepatch/lp/signal=1", "write sys/kernel/livepatch/lp/enabled=1"}
	if d := cmp.Diff(wantCalls, f.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	if got := f.get("sys/kernel/livepatch/lp/enabled"); got != "1" || !f.loaded["lp"] {
		t.Errorf("after reversing a disable: enabled = %s, loaded = %t", got, f.loaded["lp"])
	}
	f.checkNoForce()
}

func TestWaitTransitionReversalStuck(t *testing.T) {
	f, k := newFakeKernel(t, map[string]string{
		"sys/kernel/livepatch/lp/enabled":    "1\n",
		"sys/kernel/livepatch/lp/transition": "1\n",
	})
	f.stuck, f.loaded["lp"] = true, true
	// The fake ends reversals at once; make this one hang by recording
	// and making writes without playing the kernel's part.
	k.write = func(path, value string) error {
		f.calls = append(f.calls, "write "+f.rel(path)+"="+value)
		return writeFile(path, value)
	}
	err := k.WaitTransition(context.Background(), "lp", shortTimeouts)
	var te *TransitionError
	if !errors.As(err, &te) {
		t.Fatalf("WaitTransition: err = %v, want a *TransitionError", err)
	}
	if te.Reverted || te.Err == nil {
		t.Errorf("TransitionError = %+v, want not reverted, with an error", te)
	}
	wantErrContaining(t, err, "reversing failed", "did not complete")
	// No signal file on this kernel: nothing to signal; no unload while
	// the patch is still registered.
	if d := cmp.Diff([]string{"write sys/kernel/livepatch/lp/enabled=0"}, f.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
}

func TestWaitTransitionCancelled(t *testing.T) {
	f, k := newFakeKernel(t, map[string]string{
		"sys/kernel/livepatch/lp/enabled":    "1\n",
		"sys/kernel/livepatch/lp/transition": "1\n",
	})
	f.stuck = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := k.WaitTransition(ctx, "lp", Timeouts{Stall: time.Hour, AfterSignal: time.Hour, Poll: time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitTransition: err = %v, want deadline exceeded", err)
	}
	if time.Since(start) > testutil.Within(5*time.Second) {
		t.Errorf("WaitTransition ignored the context for %s", time.Since(start))
	}
	if len(f.calls) != 0 {
		t.Errorf("calls = %q, want none", f.calls)
	}
}

func TestWaitTransitionMalformed(t *testing.T) {
	_, k := newFakeKernel(t, map[string]string{
		"sys/kernel/livepatch/lp/enabled":    "1\n",
		"sys/kernel/livepatch/lp/transition": "busy\n",
	})
	err := k.WaitTransition(context.Background(), "lp", shortTimeouts)
	wantErrContaining(t, err, "sys/kernel/livepatch/lp/transition", `"busy"`)
}

// cmpIgnoreWaited compares TransitionErrors without their timing.
var cmpIgnoreWaited = cmp.FilterPath(func(p cmp.Path) bool {
	return p.Last().String() == ".Waited"
}, cmp.Ignore())

// withTasks adds transitionTasks to a tree.
func withTasks(m map[string]string) map[string]string {
	out := withFiles(m)
	for k, v := range transitionTasks {
		out[k] = v
	}
	return out
}

func TestNewLinux(t *testing.T) {
	if _, err := NewLinux(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("NewLinux(missing root): no error")
	}
	k, err := NewLinux(fixtureRoot)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.sys.(osSys); !ok || k.FS().Root() != fixtureRoot {
		t.Errorf("NewLinux: sys = %T, root = %s", k.sys, k.FS().Root())
	}
	id, err := k.Identity()
	if err != nil || id.Release != "6.1.0-56-cloud-amd64" || id.Simulated {
		t.Errorf("Identity = %+v, %v", id, err)
	}
	if _, err := k.Modules(); err != nil {
		t.Error(err)
	}
	if _, err := k.Taint(); err != nil {
		t.Error(err)
	}
	if ps, err := k.Livepatches(); err != nil || !slices.ContainsFunc(ps, func(p Livepatch) bool { return p.Name == "livepatch_cmdline" }) {
		t.Errorf("Livepatches = %v, %v", ps, err)
	}
}
