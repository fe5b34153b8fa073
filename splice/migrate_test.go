package splice_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/splice"
)

// writeLegacyLayout turns a state directory into the layout of the
// release before the one bundle store, as its code wrote it: the host's
// copies as bundles/<manifest sha256>.splice (the whole bundle) and
// modules/<module sha256>.ko, and the agent's copy for distribution in
// store/heads and store/modules of the bundles in held (the old store
// had no local/ folder). This writer lives only here, to make such a
// state directory.
func writeLegacyLayout(t *testing.T, stateDir string, host []*splice.Bundle, held []*splice.Bundle) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(stateDir, splice.StoreDir)); err != nil {
		t.Fatal(err)
	}
	write := func(path string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range host {
		raw, err := b.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(stateDir, "bundles", splice.Digest(b.Manifest)+".splice"), raw)
		write(filepath.Join(stateDir, "modules", splice.Digest(b.Module)+".ko"), b.Module)
	}
	// An interrupted write of the old host code.
	write(filepath.Join(stateDir, "bundles", ".x.splice.tmp-123"), []byte("half"))
	for _, b := range held {
		head, err := splice.EncodeHead(&splice.Head{Manifest: b.Manifest, Signatures: b.Signatures})
		if err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(stateDir, splice.StoreDir, "heads", splice.Digest(b.Manifest)+".json"), head)
		write(filepath.Join(stateDir, splice.StoreDir, "modules", splice.Digest(b.Module)), b.Module)
	}
	// Half a download of the old agent, whose process is gone.
	write(filepath.Join(stateDir, splice.StoreDir, "modules", strings.Repeat("c", 64)+".41.unverified"), []byte("half"))
}

// storeBytes counts the files and bytes under the state directory's
// bundle folders, old and new.
func storeBytes(t *testing.T, stateDir string) (files int, bytes int64) {
	t.Helper()
	for _, d := range []string{"bundles", "modules", splice.StoreDir} {
		err := filepath.WalkDir(filepath.Join(stateDir, d), func(_ string, e fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			if err != nil || e.IsDir() {
				return err
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			files++
			bytes += info.Size()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files, bytes
}

// TestMigrateLegacyStateDir: a state directory of the release before the
// one bundle store (the host's bundles/ and modules/ beside the agent's
// store/) is moved into the store on the first open, also when that open
// is cut short after any step of the migration (a crash: the next open
// finishes it). After it each module is stored once, the agent's copy is
// still held for distribution and the host's own is not, boot re-applies
// from the store, and undo puts back the replaced version from it.
func TestMigrateLegacyStateDir(t *testing.T) {
	for crashAt := 0; ; crashAt++ {
		e := newHostEnv(t)
		h := e.mustOpen()
		v1 := e.bundle("base", 1, []string{"f1"})
		v2 := e.bundle("base", 2, []string{"f1"}, func(m *splice.Manifest) { m.Module.Name = "livepatch_base_2" })
		e.apply(h, v1)
		e.apply(h, v2)
		h.Close()
		if err := sim.Reboot(e.simDir, ""); err != nil {
			t.Fatal(err)
		}
		writeLegacyLayout(t, e.stateDir, []*splice.Bundle{v1, v2}, []*splice.Bundle{v2})
		files, before := storeBytes(t, e.stateDir)

		steps := 0
		splice.SetMigrateStep(func(path string) error {
			steps++
			if steps > crashAt {
				return errors.New("crash at " + path)
			}
			return nil
		})
		first, err := e.open()
		splice.SetMigrateStep(nil)
		if err == nil {
			first.Close()
		}
		crashed := err != nil
		if crashed && !strings.Contains(err.Error(), "crash at") {
			t.Fatalf("crash at step %d: %v", crashAt, err)
		}
		h = e.mustOpen()
		for _, old := range []string{"bundles", "modules"} {
			if _, err := os.Stat(filepath.Join(e.stateDir, old)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("crash at step %d: %s/ is still there: %v", crashAt, old, err)
			}
		}
		s, err := splice.OpenStore(e.stateDir, nil)
		if err != nil {
			t.Fatal(err)
		}
		list, err := s.List()
		if err != nil || len(list) != 1 || list[0].Digest != splice.Digest(v2.Manifest) {
			t.Errorf("crash at step %d: held for distribution: %+v, %v; want version 2 only", crashAt, list, err)
		}
		afterFiles, after := storeBytes(t, e.stateDir)
		// Two heads, two modules, and the local marker of version 1.
		if afterFiles != 5 || after >= before {
			t.Errorf("crash at step %d: %d files of %d bytes after, %d files of %d bytes before", crashAt, afterFiles, after, files, before)
		}
		if crashAt == 0 {
			t.Logf("bundle bytes in the state directory: %d in %d files before, %d in %d files after (modules %d and %d bytes)",
				before, files, after, afterFiles, len(v1.Module), len(v2.Module))
		}

		done, err := h.Boot(context.Background())
		if err != nil || len(done) != 1 || done[0].Version != 2 {
			t.Fatalf("crash at step %d: boot re-applied %v, %v", crashAt, done, err)
		}
		if _, back, err := h.Undo(context.Background(), "base"); err != nil || len(back) != 1 || back[0].Version != 1 {
			t.Fatalf("crash at step %d: undo put back %v, %v", crashAt, back, err)
		}
		if got := states(t, h); got != "base@1=applied base@2=reverted" {
			t.Errorf("crash at step %d: %s", crashAt, got)
		}
		h.Close()
		if !crashed {
			if crashAt < 3 {
				t.Fatalf("the migration took %d steps; want one per old file", crashAt)
			}
			return
		}
	}
}
