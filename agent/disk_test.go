package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testdisk"
	"github.com/splicefleet/splicefleet/rollout"
)

// stateFiles reads every file under dir.
func stateFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&os.ModeSocket != 0 || strings.HasSuffix(p, "serf.snapshot") {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStateDirFullOrReadOnly puts an agent's state directory on a small
// tmpfs. With a rollout done (journal, store and rollout state written),
// the file system is filled, then remounted read-only: publishing a
// bundle, starting a rollout and an operator command are refused with
// the cause (no space left, read-only file system), and nothing already
// written changes; once space is freed or the mount is writable again,
// everything reads back and the same requests succeed.
func TestStateDirFullOrReadOnly(t *testing.T) {
	f := newTestFleet(t)
	cfg := f.config("node-00")
	testdisk.Tmpfs(t, cfg.StateDir, 4<<20)
	a := f.start(cfg)
	_, st := f.publishWithPlan(a, "first", 1, "id: ID\nbundle: BUNDLE\nstages:\n  - percent: 100\ngates:\n  health_window: 100ms\n")
	waitRollout(t, []*Agent{a}, st.Digest, rollout.Done, 30*time.Second)
	eventually(t, 10*time.Second, "healthy", func() error {
		if s := localState(a, st.Digest); s != rollout.StateHealthy {
			return fmt.Errorf("local state %s", s)
		}
		return nil
	})

	second := f.bundle("second", 1, f.signer, 256<<10)
	// Another rollout of the bundle the host holds.
	other := f.signedPlan(st.Bundle, "id: other\nbundle: BUNDLE\nstages:\n  - ring: nobody\n  - percent: 100\n")
	try := func(cause string) {
		t.Helper()
		before := stateFiles(t, cfg.StateDir)
		if _, err := a.Publish(second); err == nil || !strings.Contains(err.Error(), cause) {
			t.Errorf("publish: %v, want %q", err, cause)
		}
		if _, err := a.StartRollout(other); err == nil || !strings.Contains(err.Error(), cause) {
			t.Errorf("a plan on a %s state directory: %v", cause, err)
		}
		// A revoke, the one command a done rollout admits (it refuses
		// the others before writing anything).
		cmd := f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 1, Action: rollout.ActionRevoke, Reason: "test"})
		if _, err := a.Command(cmd); err == nil || !strings.Contains(err.Error(), cause) {
			t.Errorf("revoke: %v, want %q", err, cause)
		}
		after := stateFiles(t, cfg.StateDir)
		for p, b := range before {
			if strings.HasSuffix(p, "filler") {
				continue
			}
			if after[p] != b {
				t.Errorf("%s changed", p)
			}
		}
	}

	// Full.
	free := testdisk.Fill(t, filepath.Join(cfg.StateDir, "filler"))
	try("no space left on device")
	free()
	// Read-only.
	undo := testdisk.ReadOnly(t, cfg.StateDir)
	try("read-only file system")
	undo()

	// What was written reads back; the rollout and the patch are intact.
	if s, err := a.Rollout("first"); err != nil || s.State != rollout.Done || s.LastSeq != 0 {
		t.Errorf("after the disk came back: %+v %v", s, err)
	}
	if got := kernelState(t, a); !slices.Equal(got, []string{"lp_first"}) {
		t.Errorf("kernel runs %v", got)
	}
	f.stop("node-00")
	a = f.start(cfg)
	if s, err := a.Rollout("first"); err != nil || s.State != rollout.Done {
		t.Errorf("after a restart: %+v %v", s, err)
	}
	if _, err := a.Publish(second); err != nil {
		t.Errorf("publish once the disk is back: %v", err)
	}
	if _, err := a.StartRollout(other); err != nil {
		t.Errorf("the plan refused on the full disk, once the disk is back: %v", err)
	}
}
