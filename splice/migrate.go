package splice

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/splicefleet/splicefleet/internal/atomicfile"
	"github.com/splicefleet/splicefleet/internal/fileperm"
)

// The layout of earlier releases, which kept the host's copy of every
// bundle it applied apart from the agent's store:
//
//	bundles/<manifest sha256>.splice   the whole bundle, module inside
//	modules/<module sha256>.ko         the module again
const (
	legacyBundles = "bundles"
	legacyModules = "modules"
)

// migrateStep, when set (by tests), is called after each step of the
// migration, with the path it moved or removed; a test stops the
// migration there to play a crash.
var migrateStep func(path string) error

// migrateLegacy moves the bundles an earlier release kept in bundles/ and
// modules/ into the store, once. Each bundle is checked (its name against
// its manifest, its module against the manifest's size and digest), kept
// for this host (Keep: head and module, each written atomically, so
// distribution does not start to offer it), and only then is its old file
// removed; a module file goes once the store has that module. So a crash
// at any point leaves every bundle in the old folder, the store or both,
// and the next open finishes the job; running it again changes nothing.
// The folders go once empty. A file that is damaged, unsafe (a link, or
// writable by another user) or unknown is left where it is, with a
// warning, and is not loaded: the host treats its bundle as missing, as
// it treated a damaged copy before. Signatures are not judged here: boot
// and undo's put-back verify every stored bundle before loading it.
func (s *Store) migrateLegacy(log *slog.Logger) error {
	bundles := filepath.Join(s.stateDir, legacyBundles)
	modules := filepath.Join(s.stateDir, legacyModules)
	for _, d := range []string{bundles, modules} {
		if _, err := os.Lstat(d); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := fileperm.CheckPath(d); err != nil {
			return fmt.Errorf("migrate %s: %w", d, err)
		}
		if err := s.migrateFolder(d, log); err != nil {
			return err
		}
	}
	return nil
}

// migrateFolder moves or removes each file of one legacy folder, then
// removes the folder when nothing is left in it.
func (s *Store) migrateFolder(dir string, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // another process finished it
	}
	if err != nil {
		return fmt.Errorf("migrate %s: %w", dir, err)
	}
	left := 0
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		done, err := s.migrateFile(dir, e.Name())
		if err != nil {
			return fmt.Errorf("migrate %s: %w", path, err)
		}
		if !done {
			left++
			continue
		}
		if migrateStep != nil {
			if err := migrateStep(path); err != nil {
				return err
			}
		}
	}
	if left > 0 {
		log.Warn("state directory: files of an earlier layout left in place (damaged, unsafe or unknown); their bundles are not loaded again",
			"folder", dir, "files", left)
		return nil
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("migrate %s: %w", dir, err)
	}
	return atomicfile.SyncDir(s.stateDir)
}

// migrateFile moves one file of a legacy folder into the store and
// removes it. It reports false for a file it leaves in place.
func (s *Store) migrateFile(dir, name string) (bool, error) {
	path := filepath.Join(dir, name)
	if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") {
		// A temporary file of an interrupted write: never a stored copy.
		return true, s.removeLegacy(dir, name)
	}
	var ok bool
	var err error
	switch {
	case filepath.Base(dir) == legacyBundles && strings.HasSuffix(name, ".splice"):
		ok, err = s.migrateBundle(path, strings.TrimSuffix(name, ".splice"))
	case filepath.Base(dir) == legacyModules && strings.HasSuffix(name, ".ko"):
		ok, err = s.migrateModule(path, strings.TrimSuffix(name, ".ko"))
	}
	if err != nil || !ok {
		return false, err
	}
	return true, s.removeLegacy(dir, name)
}

// migrateBundle keeps a legacy bundle file's bundle in the store. It
// reports false, nil for a file it cannot trust or read as a bundle.
func (s *Store) migrateBundle(path, digest string) (bool, error) {
	if !ValidDigest(digest) {
		return false, nil
	}
	if s.stored(digest) {
		return true, nil
	}
	f, err := fileperm.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s.stored(digest), nil // moved by another process meanwhile
	}
	if err != nil {
		return false, nil
	}
	b, err := Decode(f)
	f.Close()
	if err != nil || Digest(b.Manifest) != digest || b.CheckModule() != nil {
		return false, nil
	}
	m, err := ParseManifest(b.Manifest)
	if err != nil {
		return false, nil
	}
	// Not verified against a policy: only moved. It is verified before
	// it is loaded again, as it was in the old place.
	v := &Verified{Bundle: b, Manifest: *m, ManifestDigest: digest, Module: b.Module}
	if err := s.Keep(v); err != nil {
		return false, err
	}
	return true, nil
}

// migrateModule drops a legacy module file once the store has that
// module (every one has come with its bundle). It reports false for a
// module the store lacks: kept, as its bundle could not be moved.
func (s *Store) migrateModule(path, sha string) (bool, error) {
	if !ValidDigest(sha) {
		return false, nil
	}
	f, size, err := s.OpenModule(sha)
	if err != nil {
		return false, nil
	}
	f.Close()
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return err == nil && st.Size() == size, nil
}

func (s *Store) removeLegacy(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return atomicfile.SyncDir(dir)
}
