package splice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/splicefleet/splicefleet/internal/atomicfile"
	"github.com/splicefleet/splicefleet/internal/bounded"
	"github.com/splicefleet/splicefleet/internal/fileperm"
)

// Errors of the bundle store and the blob transfer, for errors.Is.
var (
	// ErrInvalidDigest: a digest is not 64 lower-case hex digits.
	ErrInvalidDigest = errors.New("invalid digest")
	// ErrNotStored: the store does not hold the head or module asked for.
	ErrNotStored = errors.New("not in the store")
	// ErrCorruptStore: a stored file does not match its name or limits.
	ErrCorruptStore = errors.New("corrupt store entry")
)

// UnverifiedSuffix marks bytes that have not (yet) passed their checks.
// Nothing reads such a file as content; OpenStore removes leftovers.
const UnverifiedSuffix = ".unverified"

// Head is the signed part of a bundle: the manifest bytes exactly as
// signed and the detached signatures over them. It is what a fetcher
// verifies before it downloads any module.
type Head struct {
	Manifest   []byte
	Signatures [][]byte
}

// headWire is the JSON encoding of a Head, on disk and on the wire:
//
//	{"manifest": "<base64>", "signatures": ["<base64>", ...]}
//
// Base64 is standard with padding (encoding/json's []byte encoding).
type headWire struct {
	Manifest   []byte   `json:"manifest"`
	Signatures [][]byte `json:"signatures"`
}

// MaxHeadSize bounds an encoded head: the largest manifest and the most,
// largest signatures, base64-encoded, plus room for the JSON around them.
const MaxHeadSize = (MaxManifestSize+MaxSignatures*MaxSignatureSize)/3*4 +
	(1+MaxSignatures)*4 + 1024

// EncodeHead encodes h in the head wire format, checking its limits.
func EncodeHead(h *Head) ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	sigs := h.Signatures
	if sigs == nil {
		sigs = [][]byte{}
	}
	out, err := json.Marshal(headWire{Manifest: h.Manifest, Signatures: sigs})
	if err != nil {
		return nil, fmt.Errorf("encode head: %w", err)
	}
	return append(out, '\n'), nil
}

// DecodeHead decodes a head in the wire format strictly: at most
// MaxHeadSize bytes, no unknown fields, no trailing data, and every part
// within the bundle format's limits. It does not verify anything.
func DecodeHead(data []byte) (*Head, error) {
	if len(data) > MaxHeadSize {
		return nil, fmt.Errorf("decode head: %d bytes, limit %d", len(data), MaxHeadSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w headWire
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("decode head: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode head: data after the head object")
	}
	h := &Head{Manifest: w.Manifest, Signatures: w.Signatures}
	if err := h.check(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *Head) check() error {
	switch {
	case len(h.Manifest) == 0 || len(h.Manifest) > MaxManifestSize:
		return fmt.Errorf("head: manifest of %d bytes, limit %d", len(h.Manifest), MaxManifestSize)
	case len(h.Signatures) > MaxSignatures:
		return fmt.Errorf("head: %d signatures, limit %d", len(h.Signatures), MaxSignatures)
	}
	for i, s := range h.Signatures {
		if len(s) == 0 || len(s) > MaxSignatureSize {
			return fmt.Errorf("head: signature %d of %d bytes, limit %d", i+1, len(s), MaxSignatureSize)
		}
	}
	return nil
}

// ValidDigest reports whether s is a hex SHA-256 as the store names
// things: exactly 64 lower-case hex digits.
func ValidDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func CheckDigest(d string) error {
	if !ValidDigest(d) {
		return fmt.Errorf("%w: %q is not 64 lower-case hex digits", ErrInvalidDigest, d)
	}
	return nil
}

// StoreDir is the bundle store's folder in a state directory.
const StoreDir = "store"

// Store is a host's one copy of every bundle it keeps, content-addressed
// in the state directory's StoreDir folder:
//
//	store/heads/<manifest sha256>.json   the head (manifest + signatures), head wire format
//	store/modules/<module sha256>        the module bytes
//	store/local/<manifest sha256>        present when the bundle is this host's only
//
// Both users share it: the host lifecycle (Host) keeps there the bundles
// it applied, for boot re-apply and undo's put-back, and the agent's
// distribution (package distrib) fetches into it and serves from it. A
// bundle is held for distribution (Has, List, Head, Bundle, StoredAt see
// it) unless a local marker says it is kept for this host alone: one
// applied by hand (Keep), or one the agent dropped (Remove) that the
// host's journal still needs. A module two bundles name is stored once.
//
// Only verified bytes get these names. Every write goes to a
// "*.unverified" file in the same folder, is synced, and is renamed into
// place once its content is known good; the folder is synced after. A
// module is stored before the head that names it, so a head's presence
// means its bundle is complete, and a local marker is written before the
// head it hides. OpenStore removes the "*.unverified" leftovers of a
// process that died. Reads check what they read against its name, and
// open files without following links, refusing one another user could
// have written (package fileperm).
//
// Bytes go only when neither user needs them: Remove and Sweep delete a
// bundle only while they hold the state directory's lock (without
// waiting for it: a busy host keeps the bundle, locally, for a later
// Sweep) and only when the journal names no patch that may load it
// again.
type Store struct {
	stateDir string
	dir      string
	heads    string
	modules  string
	local    string
	mu       sync.Mutex // serialises the writes and removals of this process
}

// OpenStore opens (creating) the bundle store of the state directory
// stateDir, removes the leftovers of writes whose process died, and moves
// bundles kept in the layout of earlier releases into it (see
// migrateLegacy). log, when set, hears what the migration could not move.
func OpenStore(stateDir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(stateDir, StoreDir)
	s := &Store{stateDir: stateDir, dir: dir, heads: filepath.Join(dir, "heads"),
		modules: filepath.Join(dir, "modules"), local: filepath.Join(dir, "local")}
	for _, d := range []string{dir, s.heads, s.modules, s.local} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		if err := fileperm.CheckPath(d); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	for _, d := range []string{s.heads, s.modules, s.local} {
		if err := removeLeftovers(d); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	if err := s.migrateLegacy(log); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// unverifiedPattern names a temporary file for name, with this process's
// id in it, so that another process opening the store leaves a write in
// progress alone.
func unverifiedPattern(name string) string {
	return fmt.Sprintf("%s.pid%d.*%s", name, os.Getpid(), UnverifiedSuffix)
}

// removeLeftovers removes the "*.unverified" files in dir whose process
// is gone (or that name none).
func removeLeftovers(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	removed := false
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), UnverifiedSuffix) || writerAlive(e.Name()) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove leftover: %w", err)
		}
		removed = true
	}
	if removed {
		return atomicfile.SyncDir(dir)
	}
	return nil
}

// writerAlive reports whether the process a temporary file's name
// records (".pid<N>.") still runs: this one, or another that exists.
func writerAlive(name string) bool {
	_, rest, ok := strings.Cut(name, ".pid")
	if !ok {
		return false
	}
	digits, _, ok := strings.Cut(rest, ".")
	pid, err := strconv.Atoi(digits)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Dir is the folder the store lives in.
func (s *Store) Dir() string { return s.dir }

func (s *Store) headPath(digest string) string { return filepath.Join(s.heads, digest+".json") }
func (s *Store) modulePath(sha string) string  { return filepath.Join(s.modules, sha) }
func (s *Store) localPath(digest string) string {
	return filepath.Join(s.local, digest)
}

// checkVerified checks that a verified bundle's bytes agree with the
// digests the store names them by, and encodes its head.
func checkVerified(v *Verified) (head []byte, err error) {
	if v == nil || v.Bundle == nil {
		return nil, errors.New("store bundle: nothing to store")
	}
	digest, sha := v.ManifestDigest, v.Manifest.Module.SHA256
	if err := CheckDigest(digest); err != nil {
		return nil, fmt.Errorf("store bundle: %w", err)
	}
	if err := CheckDigest(sha); err != nil {
		return nil, fmt.Errorf("store bundle: module: %w", err)
	}
	// A Verified is trusted, but the store names files by these digests:
	// check the bytes agree with the names before writing them.
	if Digest(v.Bundle.Manifest) != digest {
		return nil, fmt.Errorf("store bundle %s: manifest bytes do not match the digest", digest)
	}
	if int64(len(v.Module)) != v.Manifest.Module.Size || Digest(v.Module) != sha {
		return nil, fmt.Errorf("store bundle %s: module bytes do not match the manifest", digest)
	}
	head, err = EncodeHead(&Head{Manifest: v.Bundle.Manifest, Signatures: v.Bundle.Signatures})
	if err != nil {
		return nil, fmt.Errorf("store bundle %s: %w", digest, err)
	}
	return head, nil
}

// Put stores a verified bundle and holds it for distribution. Storing
// one already held changes nothing; one kept for this host alone becomes
// held, as if it arrived now.
func (s *Store) Put(v *Verified) error {
	head, err := checkVerified(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	digest := v.ManifestDigest
	if s.stored(digest) {
		if !s.isLocal(digest) {
			return nil
		}
		// Arrived for distribution now: StoredAt counts from here.
		now := time.Now()
		if err := os.Chtimes(s.headPath(digest), now, now); err != nil {
			return fmt.Errorf("store bundle %s: %w", digest, err)
		}
		return s.removeFile(s.local, digest)
	}
	_, err = s.write(v, head, false)
	return err
}

// Keep stores a verified bundle for this host's own use (the host
// lifecycle's apply): not held for distribution unless it already is. On
// failure it removes what it wrote, so the store is as it was.
func (s *Store) Keep(v *Verified) error {
	head, err := checkVerified(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stored(v.ManifestDigest) {
		return nil
	}
	_, err = s.write(v, head, true)
	return err
}

// write stores a bundle not stored yet: the local marker (when local),
// the module unless stored, then the head. On failure it removes what it
// wrote. It returns whether it wrote the module. The caller holds s.mu.
func (s *Store) write(v *Verified, head []byte, local bool) (wroteModule bool, err error) {
	digest, sha := v.ManifestDigest, v.Manifest.Module.SHA256
	undo := func() {
		if wroteModule {
			_ = s.removeModuleLocked(sha)
		}
		if local {
			_ = s.removeFile(s.local, digest)
		}
	}
	if local {
		if err := writeVerified(s.local, digest, nil); err != nil {
			return false, fmt.Errorf("store bundle %s: %w", digest, err)
		}
	}
	if st, err := os.Lstat(s.modulePath(sha)); err != nil || !st.Mode().IsRegular() || st.Size() != v.Manifest.Module.Size {
		if err := writeVerified(s.modules, sha, v.Module); err != nil {
			undo()
			return false, fmt.Errorf("store module %s: %w", sha, err)
		}
		wroteModule = true
	}
	if err := writeVerified(s.heads, digest+".json", head); err != nil {
		undo()
		return wroteModule, fmt.Errorf("store head %s: %w", digest, err)
	}
	return wroteModule, nil
}

// writeVerified writes data, already checked, to dir/name: through a synced
// "*.unverified" file, renamed into place, then the folder synced.
func writeVerified(dir, name string, data []byte) error {
	return atomicfile.WriteFileAs(filepath.Join(dir, name), data, 0o600, unverifiedPattern(name))
}

// removeFile removes dir/name and syncs dir; a missing file is no error.
func (s *Store) removeFile(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return atomicfile.SyncDir(dir)
}

// stored reports whether the store has the bundle's head, held or not.
func (s *Store) stored(digest string) bool {
	_, err := os.Lstat(s.headPath(digest))
	return err == nil
}

// isLocal reports whether a bundle is kept for this host alone.
func (s *Store) isLocal(digest string) bool {
	_, err := os.Lstat(s.localPath(digest))
	return err == nil
}

// Stored names a stored bundle and when it was stored.
type Stored struct {
	Digest string    // manifest digest
	At     time.Time // when its head was written
}

// localSet lists the bundles kept for this host alone.
func (s *Store) localSet() (map[string]bool, error) {
	entries, err := os.ReadDir(s.local)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(entries))
	for _, e := range entries {
		if ValidDigest(e.Name()) {
			out[e.Name()] = true
		}
	}
	return out, nil
}

// headDigests lists the digests of every stored head, held or local.
func (s *Store) headDigests() ([]fs.DirEntry, error) {
	entries, err := os.ReadDir(s.heads)
	if err != nil {
		return nil, err
	}
	out := entries[:0]
	for _, e := range entries {
		if digest, ok := strings.CutSuffix(e.Name(), ".json"); ok && ValidDigest(digest) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Digests lists the bundles held for distribution without reading any
// head: cheap enough for every scrape. A bundle removed while listed is
// left out.
func (s *Store) Digests() ([]Stored, error) {
	entries, err := s.headDigests()
	if err != nil {
		return nil, fmt.Errorf("list store: %w", err)
	}
	local, err := s.localSet()
	if err != nil {
		return nil, fmt.Errorf("list store: %w", err)
	}
	out := make([]Stored, 0, len(entries))
	for _, e := range entries {
		digest := strings.TrimSuffix(e.Name(), ".json")
		if local[digest] {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed while listed
		}
		out = append(out, Stored{Digest: digest, At: info.ModTime()})
	}
	return out, nil
}

// Has reports whether the store holds the bundle with this manifest
// digest for distribution.
func (s *Store) Has(manifestDigest string) bool {
	return ValidDigest(manifestDigest) && s.stored(manifestDigest) && !s.isLocal(manifestDigest)
}

// Head returns the manifest and signatures of a bundle held for
// distribution.
func (s *Store) Head(manifestDigest string) (*Head, error) {
	if err := CheckDigest(manifestDigest); err != nil {
		return nil, fmt.Errorf("read head: %w", err)
	}
	if s.isLocal(manifestDigest) {
		return nil, fmt.Errorf("read head %s: %w", manifestDigest, ErrNotStored)
	}
	return s.readHead(manifestDigest)
}

// readHead reads any stored head, held or local, and checks it against
// its name.
func (s *Store) readHead(manifestDigest string) (*Head, error) {
	data, err := readStoreFile(s.headPath(manifestDigest), MaxHeadSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read head %s: %w", manifestDigest, ErrNotStored)
	}
	if err != nil {
		return nil, fmt.Errorf("read head %s: %w", manifestDigest, err)
	}
	h, err := DecodeHead(data)
	if err != nil {
		return nil, fmt.Errorf("read head %s: %w: %v", manifestDigest, ErrCorruptStore, err)
	}
	if Digest(h.Manifest) != manifestDigest {
		return nil, fmt.Errorf("read head %s: %w: manifest digest differs", manifestDigest, ErrCorruptStore)
	}
	return h, nil
}

// OpenModule opens a stored module for reading and returns its size. The
// caller closes the file. A module is served by its digest whichever
// bundle names it.
func (s *Store) OpenModule(sha256 string) (*os.File, int64, error) {
	if err := CheckDigest(sha256); err != nil {
		return nil, 0, fmt.Errorf("open module: %w", err)
	}
	f, err := fileperm.Open(s.modulePath(sha256))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("open module %s: %w", sha256, ErrNotStored)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open module %s: %w", sha256, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("open module %s: %w", sha256, err)
	}
	if !st.Mode().IsRegular() || st.Size() <= 0 || st.Size() > MaxModuleSize {
		f.Close()
		return nil, 0, fmt.Errorf("open module %s: %w: %d bytes", sha256, ErrCorruptStore, st.Size())
	}
	return f, st.Size(), nil
}

// OpenHeldModule is OpenModule for a module that a bundle held for
// distribution names, as the blob service serves it: the module of a
// bundle kept for this host alone (applied by hand) is not offered to
// peers, like its head.
func (s *Store) OpenHeldModule(sha256 string) (*os.File, int64, error) {
	if err := CheckDigest(sha256); err != nil {
		return nil, 0, fmt.Errorf("open module: %w", err)
	}
	held, err := s.List()
	if err != nil {
		return nil, 0, err
	}
	if !slices.ContainsFunc(held, func(e Entry) bool { return e.ModuleSHA256 == sha256 }) {
		return nil, 0, fmt.Errorf("open module %s: %w", sha256, ErrNotStored)
	}
	return s.OpenModule(sha256)
}

// Bundle reassembles a bundle held for distribution. The module is
// checked against the manifest's size and digest; the signatures are not
// judged here (use Verify, since trust can change between store and
// use).
func (s *Store) Bundle(manifestDigest string) (*Bundle, error) {
	h, err := s.Head(manifestDigest)
	if err != nil {
		return nil, err
	}
	return s.assemble(manifestDigest, h)
}

func (s *Store) assemble(manifestDigest string, h *Head) (*Bundle, error) {
	m, err := ParseManifest(h.Manifest)
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w: %v", manifestDigest, ErrCorruptStore, err)
	}
	if err := CheckDigest(m.Module.SHA256); err != nil {
		return nil, fmt.Errorf("read bundle %s: %w: %v", manifestDigest, ErrCorruptStore, err)
	}
	module, err := readStoreFile(s.modulePath(m.Module.SHA256), MaxModuleSize)
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: module: %w", manifestDigest, err)
	}
	b := &Bundle{Major: FormatMajor, Minor: FormatMinor, Manifest: h.Manifest, Module: module, Signatures: h.Signatures}
	if err := b.CheckModule(); err != nil {
		return nil, fmt.Errorf("read bundle %s: %w: %v", manifestDigest, ErrCorruptStore, err)
	}
	return b, nil
}

// StoredAt is when the store took the bundle for distribution: its
// head's modification time.
func (s *Store) StoredAt(manifestDigest string) (time.Time, error) {
	if err := CheckDigest(manifestDigest); err != nil {
		return time.Time{}, err
	}
	if s.isLocal(manifestDigest) {
		return time.Time{}, fmt.Errorf("bundle %s: %w", manifestDigest, ErrNotStored)
	}
	st, err := os.Stat(s.headPath(manifestDigest))
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, fmt.Errorf("bundle %s: %w", manifestDigest, ErrNotStored)
	}
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}

// Remove drops a bundle from distribution. Its bytes go too (the head
// first, so that a bundle is either whole or gone, then the module
// unless another stored head names it), unless the host's journal names
// a patch that may load it again (applied, replaced and so on: boot
// re-apply and undo's put-back read it from here) or the host is busy
// (its lock taken): then it stays, kept for this host alone, for Sweep to
// remove once nothing needs it. Removing a bundle not held changes
// nothing.
func (s *Store) Remove(manifestDigest string) error {
	if !s.Has(manifestDigest) {
		if err := CheckDigest(manifestDigest); err != nil {
			return fmt.Errorf("remove bundle: %w", err)
		}
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Hidden from distribution first, whatever happens to the bytes.
	if err := writeVerified(s.local, manifestDigest, nil); err != nil {
		return fmt.Errorf("remove bundle %s: %w", manifestDigest, err)
	}
	if err := s.collectLocked(); err != nil {
		return fmt.Errorf("remove bundle %s: %w", manifestDigest, err)
	}
	return nil
}

// Sweep removes the bundles kept for this host alone that its journal no
// longer needs (the patch was undone or failed), when the host is not
// busy.
func (s *Store) Sweep() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.collectLocked(); err != nil {
		return fmt.Errorf("sweep store: %w", err)
	}
	return nil
}

// collectLocked removes the local bundles the journal does not need,
// holding the state directory's lock without waiting for it: a host busy
// with an apply may be storing one. The caller holds s.mu.
func (s *Store) collectLocked() error {
	local, err := s.localSet()
	if err != nil || len(local) == 0 {
		return err
	}
	_, lockPath := statePaths(s.stateDir)
	lock, err := lockDir(lockPath, 0)
	if errors.Is(err, ErrLocked) {
		return nil // busy: a later sweep removes them
	}
	if err != nil {
		return err
	}
	defer lock.unlock()
	needed, err := neededBundles(s.stateDir)
	if err != nil {
		return err
	}
	for digest := range local {
		if needed[digest] {
			continue
		}
		if err := s.removeBundleLocked(digest); err != nil {
			return err
		}
	}
	return nil
}

// neededBundles are the manifest digests of the patches in the journal of
// stateDir that may be loaded again from the store: every one not undone
// and not failed (applied ones at boot, replaced ones by undo's put-back).
func neededBundles(stateDir string) (map[string]bool, error) {
	patches, err := ReadPatches(stateDir)
	if err != nil {
		return nil, fmt.Errorf("read the journal: %w", err)
	}
	out := map[string]bool{}
	for _, p := range patches {
		if p.State != StateReverted && p.State != StateFailed {
			out[p.ManifestDigest] = true
		}
	}
	return out, nil
}

// removeBundleLocked removes a stored bundle's head, its module unless
// another head names it, then its local marker.
func (s *Store) removeBundleLocked(digest string) error {
	h, err := s.readHead(digest)
	switch {
	case errors.Is(err, ErrNotStored):
		return s.removeFile(s.local, digest)
	case err != nil:
		return err
	}
	m, err := ParseManifest(h.Manifest)
	if err != nil {
		return fmt.Errorf("remove bundle %s: %w: %v", digest, ErrCorruptStore, err)
	}
	if err := s.removeFile(s.heads, digest+".json"); err != nil {
		return fmt.Errorf("remove bundle %s: %w", digest, err)
	}
	if err := s.removeModuleLocked(m.Module.SHA256); err != nil {
		return fmt.Errorf("remove bundle %s: %w", digest, err)
	}
	return s.removeFile(s.local, digest)
}

// RemoveUnusedModule removes a module no stored head names: one a fetch
// downloaded for a bundle it then did not store. It leaves it while the
// host is busy: an apply may be storing a bundle that names it.
func (s *Store) RemoveUnusedModule(sha string) error {
	if err := CheckDigest(sha); err != nil {
		return fmt.Errorf("remove module: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, lockPath := statePaths(s.stateDir)
	lock, err := lockDir(lockPath, 0)
	if errors.Is(err, ErrLocked) {
		return nil
	}
	if err != nil {
		return err
	}
	defer lock.unlock()
	return s.removeModuleLocked(sha)
}

// CreateModule opens a new "*.unverified" file for a module download,
// renamed into place as the module sha by Commit, which the caller calls
// only once the bytes hash to sha.
func (s *Store) CreateModule(sha string) (*atomicfile.File, error) {
	if err := CheckDigest(sha); err != nil {
		return nil, fmt.Errorf("create module: %w", err)
	}
	return atomicfile.Create(s.modulePath(sha), 0o600, unverifiedPattern(sha))
}

func (s *Store) removeModuleLocked(sha string) error {
	heads, err := s.headDigests()
	if err != nil {
		return err
	}
	for _, e := range heads {
		h, err := s.readHead(strings.TrimSuffix(e.Name(), ".json"))
		if errors.Is(err, ErrNotStored) {
			continue
		}
		if err != nil {
			return err
		}
		m, err := ParseManifest(h.Manifest)
		if err != nil || m.Module.SHA256 == sha {
			return nil // a stored bundle of this module, or one that cannot say
		}
	}
	if err := s.removeFile(s.modules, sha); err != nil {
		return fmt.Errorf("remove module %s: %w", sha, err)
	}
	return nil
}

// Entry describes one stored bundle.
type Entry struct {
	Digest       string `json:"digest"` // manifest sha256
	ID           string `json:"id"`
	Version      uint64 `json:"version"`
	ModuleSHA256 string `json:"module_sha256"`
	Size         int64  `json:"size"` // module bytes
	// Expires is the manifest's expiry, when it has one.
	Expires *time.Time `json:"expires,omitempty"`
}

// List describes every bundle held for distribution, sorted by id and
// version.
func (s *Store) List() ([]Entry, error) {
	held, err := s.Digests()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, d := range held {
		h, err := s.readHead(d.Digest)
		if errors.Is(err, ErrNotStored) {
			continue // removed since the folder was read
		}
		if err != nil {
			return nil, fmt.Errorf("list store: %w", err)
		}
		m, err := ParseManifest(h.Manifest)
		if err != nil {
			return nil, fmt.Errorf("list store: head %s: %w: %v", d.Digest, ErrCorruptStore, err)
		}
		out = append(out, Entry{Digest: d.Digest, ID: m.ID, Version: m.Version, ModuleSHA256: m.Module.SHA256, Size: m.Module.Size, Expires: m.Expires})
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		switch {
		case a.Version < b.Version:
			return -1
		case a.Version > b.Version:
			return 1
		}
		return strings.Compare(a.Digest, b.Digest)
	})
	return out, nil
}

// readStoreFile reads a whole stored file of at most limit bytes, without
// following a link and refusing one another user could have written; a
// larger one means the store is damaged.
func readStoreFile(path string, limit int64) ([]byte, error) {
	f, err := fileperm.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := bounded.Read(f, filepath.Base(path), limit)
	if errors.Is(err, bounded.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorruptStore, filepath.Base(path), limit)
	}
	return data, err
}
