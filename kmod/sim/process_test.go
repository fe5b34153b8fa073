package sim

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/kmod"
)

// The helper process: the test binary run again with these variables set
// acts on a kernel folder instead of testing.
const (
	helperDir    = "SIM_TEST_HELPER_DIR"
	helperAction = "SIM_TEST_HELPER_ACTION" // "load:<module file>,<module file>..." or "hold-lock"
)

// TestHelperProcess is not a test: it is what helper processes run. Run
// normally (without the variables), it does nothing.
func TestHelperProcess(t *testing.T) {
	dir, action := os.Getenv(helperDir), os.Getenv(helperAction)
	if dir == "" {
		return
	}
	if err := helper(dir, action); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func helper(dir, action string) error {
	if action == "hold-lock" {
		unlock, err := lockDir(dir)
		if err != nil {
			return err
		}
		defer unlock()
		fmt.Println("locked")
		time.Sleep(time.Minute) // until killed
		return nil
	}
	files, ok := strings.CutPrefix(action, "load:")
	if !ok {
		return fmt.Errorf("unknown action %q", action)
	}
	k, err := Open(dir)
	if err != nil {
		return err
	}
	for _, path := range strings.Split(files, ",") {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(path), ".ko")
		err = k.Load(context.Background(), f, kmod.LoadSpec{Name: name})
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func helperCmd(t *testing.T, dir, action string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperDir+"="+dir, helperAction+"="+action)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestProcessesShareOneKernel loads modules from several processes at
// once; the kernel ends up with all of them.
func TestProcessesShareOneKernel(t *testing.T) {
	dir := t.TempDir()
	mods := t.TempDir()
	const procs, each = 3, 4
	var cmds []*exec.Cmd
	var want []string
	for p := range procs {
		var files []string
		for i := range each {
			name := fmt.Sprintf("lp_p%d_%d", p, i)
			want = append(want, name)
			path := filepath.Join(mods, name+".ko")
			if err := os.WriteFile(path, fakemodule.Build(livepatch(name)), 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, path)
		}
		cmd := helperCmd(t, dir, "load:"+strings.Join(files, ","))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper: %v", err)
		}
	}
	k, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := moduleNames(t, k)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("modules = %v, want %v", got, want)
	}
	if got := patchNames(t, k); len(got) != procs*each {
		t.Errorf("%d livepatches, want %d", len(got), procs*each)
	}
}

// TestKilledProcessReleasesLock kills a process holding the kernel's lock;
// the kernel stays usable.
func TestKilledProcessReleasesLock(t *testing.T) {
	k, dir := openKernel(t)
	cmd := helperCmd(t, dir, "hold-lock")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	f := moduleFile(t, livepatch("lp_a"))
	done := make(chan error, 1)
	go func() { done <- k.Load(context.Background(), f, kmod.LoadSpec{Name: "lp_a"}) }()
	select {
	case err := <-done:
		t.Fatalf("Load finished while another process held the lock: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: the error says so
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Load still waiting after the lock holder was killed")
	}
	if got := patchNames(t, k); !slices.Equal(got, []string{"lp_a"}) {
		t.Errorf("patches = %v", got)
	}
}
