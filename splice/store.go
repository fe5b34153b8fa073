package splice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/splicefleet/splicefleet/internal/atomicfile"
	"github.com/splicefleet/splicefleet/internal/bounded"
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

// Store keeps verified bundles content-addressed under one folder:
//
//	DIR/heads/<manifest sha256>.json   the head (manifest + signatures), head wire format
//	DIR/modules/<module sha256>        the module bytes
//
// Only verified bytes get these names. Every write goes to a
// "*.unverified" file in the same folder, is synced, and is renamed into
// place once its content is known good; the folder is synced after. A
// module is stored before the head that names it, so a head's presence
// means its bundle is complete. OpenStore removes "*.unverified" leftovers
// of a crash. Reads check what they read against its name.
type Store struct {
	dir     string
	heads   string
	modules string
	mu      sync.Mutex // serialises Put
}

// OpenStore opens (creating) the store in dir and removes leftovers of
// interrupted writes.
func OpenStore(dir string) (*Store, error) {
	s := &Store{dir: dir, heads: filepath.Join(dir, "heads"), modules: filepath.Join(dir, "modules")}
	for _, d := range []string{dir, s.heads, s.modules} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	for _, d := range []string{s.heads, s.modules} {
		entries, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		removed := false
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), UnverifiedSuffix) {
				if err := os.Remove(filepath.Join(d, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return nil, fmt.Errorf("open store: remove leftover: %w", err)
				}
				removed = true
			}
		}
		if removed {
			if err := atomicfile.SyncDir(d); err != nil {
				return nil, fmt.Errorf("open store: %w", err)
			}
		}
	}
	return s, nil
}

// Dir is the folder the store lives in.
func (s *Store) Dir() string { return s.dir }

func (s *Store) headPath(digest string) string { return filepath.Join(s.heads, digest+".json") }
func (s *Store) modulePath(sha string) string  { return filepath.Join(s.modules, sha) }

// Put stores a verified bundle. Storing one already held changes nothing.
func (s *Store) Put(v *Verified) error {
	if v == nil || v.Bundle == nil {
		return errors.New("store bundle: nothing to store")
	}
	digest, sha := v.ManifestDigest, v.Manifest.Module.SHA256
	if err := CheckDigest(digest); err != nil {
		return fmt.Errorf("store bundle: %w", err)
	}
	if err := CheckDigest(sha); err != nil {
		return fmt.Errorf("store bundle: module: %w", err)
	}
	// A Verified is trusted, but the store names files by these digests:
	// check the bytes agree with the names before writing them.
	if Digest(v.Bundle.Manifest) != digest {
		return fmt.Errorf("store bundle %s: manifest bytes do not match the digest", digest)
	}
	if int64(len(v.Module)) != v.Manifest.Module.Size || Digest(v.Module) != sha {
		return fmt.Errorf("store bundle %s: module bytes do not match the manifest", digest)
	}
	head, err := EncodeHead(&Head{Manifest: v.Bundle.Manifest, Signatures: v.Bundle.Signatures})
	if err != nil {
		return fmt.Errorf("store bundle %s: %w", digest, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Has(digest) {
		return nil
	}
	if st, err := os.Stat(s.modulePath(sha)); err != nil || st.Size() != v.Manifest.Module.Size {
		if err := writeVerified(s.modules, sha, v.Module); err != nil {
			return fmt.Errorf("store module %s: %w", sha, err)
		}
	}
	if err := writeVerified(s.heads, digest+".json", head); err != nil {
		return fmt.Errorf("store head %s: %w", digest, err)
	}
	return nil
}

// writeVerified writes data, already checked, to dir/name: through a synced
// "*.unverified" file, renamed into place, then the folder synced.
func writeVerified(dir, name string, data []byte) error {
	return atomicfile.WriteFileAs(filepath.Join(dir, name), data, 0o600, name+".*"+UnverifiedSuffix)
}

// Stored names a stored bundle and when it was stored.
type Stored struct {
	Digest string    // manifest digest
	At     time.Time // when its head was written
}

// Digests lists the stored bundles without reading any head: cheap enough
// for every scrape. A bundle removed while listed is left out.
func (s *Store) Digests() ([]Stored, error) {
	entries, err := os.ReadDir(s.heads)
	if err != nil {
		return nil, fmt.Errorf("list store: %w", err)
	}
	out := make([]Stored, 0, len(entries))
	for _, e := range entries {
		digest, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !ValidDigest(digest) {
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

// Has reports whether the store holds the bundle with this manifest digest.
func (s *Store) Has(manifestDigest string) bool {
	if !ValidDigest(manifestDigest) {
		return false
	}
	_, err := os.Stat(s.headPath(manifestDigest))
	return err == nil
}

// Head returns a stored bundle's manifest and signatures.
func (s *Store) Head(manifestDigest string) (*Head, error) {
	if err := CheckDigest(manifestDigest); err != nil {
		return nil, fmt.Errorf("read head: %w", err)
	}
	data, err := readBounded(s.headPath(manifestDigest), MaxHeadSize)
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
// caller closes the file.
func (s *Store) OpenModule(sha256 string) (*os.File, int64, error) {
	if err := CheckDigest(sha256); err != nil {
		return nil, 0, fmt.Errorf("open module: %w", err)
	}
	f, err := os.Open(s.modulePath(sha256))
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

// Bundle reassembles a stored bundle. The module is checked against the
// manifest's size and digest; the signatures are not judged here (use
// Verify, since trust can change between store and use).
func (s *Store) Bundle(manifestDigest string) (*Bundle, error) {
	h, err := s.Head(manifestDigest)
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(h.Manifest)
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w: %v", manifestDigest, ErrCorruptStore, err)
	}
	module, err := readBounded(s.modulePath(m.Module.SHA256), MaxModuleSize)
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: module: %w", manifestDigest, err)
	}
	b := &Bundle{Major: FormatMajor, Minor: FormatMinor,
		Manifest: h.Manifest, Module: module, Signatures: h.Signatures}
	if err := b.CheckModule(); err != nil {
		return nil, fmt.Errorf("read bundle %s: %w: %v", manifestDigest, ErrCorruptStore, err)
	}
	return b, nil
}

// StoredAt is when the store took the bundle: its head's modification
// time.
func (s *Store) StoredAt(manifestDigest string) (time.Time, error) {
	if err := CheckDigest(manifestDigest); err != nil {
		return time.Time{}, err
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

// Remove drops a stored bundle: its head first, so that a bundle is
// either whole or gone, then its module unless another stored head names
// the same one. Removing a bundle not held changes nothing. The store is
// the agent's copy for distribution only; the host's own copies of the
// bundles it applied (Host's state) are elsewhere.
func (s *Store) Remove(manifestDigest string) error {
	h, err := s.Head(manifestDigest)
	if errors.Is(err, ErrNotStored) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove bundle: %w", err)
	}
	m, err := ParseManifest(h.Manifest)
	if err != nil {
		return fmt.Errorf("remove bundle %s: %w: %v", manifestDigest, ErrCorruptStore, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(s.headPath(manifestDigest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove bundle %s: %w", manifestDigest, err)
	}
	if err := atomicfile.SyncDir(s.heads); err != nil {
		return fmt.Errorf("remove bundle %s: %w", manifestDigest, err)
	}
	if err := s.removeModuleLocked(m.Module.SHA256); err != nil {
		return fmt.Errorf("remove bundle %s: %w", manifestDigest, err)
	}
	return nil
}

// CreateModule opens a new "*.unverified" file for a module download,
// renamed into place as DIR/modules/<sha> by Commit, which the caller
// calls only once the bytes hash to sha.
func (s *Store) CreateModule(sha string) (*atomicfile.File, error) {
	if err := CheckDigest(sha); err != nil {
		return nil, fmt.Errorf("create module: %w", err)
	}
	return atomicfile.Create(s.modulePath(sha), 0o600, sha+".*"+UnverifiedSuffix)
}

// RemoveUnusedModule removes a module no stored head names: one a fetch
// downloaded for a bundle it then did not store.
func (s *Store) RemoveUnusedModule(sha string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removeModuleLocked(sha)
}

func (s *Store) removeModuleLocked(sha string) error {
	entries, err := s.List()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.ModuleSHA256 == sha {
			return nil // a stored bundle of this module
		}
	}
	if err := os.Remove(s.modulePath(sha)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove module %s: %w", sha, err)
	}
	return atomicfile.SyncDir(s.modules)
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

// List describes every stored bundle, sorted by id and version.
func (s *Store) List() ([]Entry, error) {
	entries, err := os.ReadDir(s.heads)
	if err != nil {
		return nil, fmt.Errorf("list store: %w", err)
	}
	var out []Entry
	for _, e := range entries {
		digest, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !ValidDigest(digest) {
			continue
		}
		h, err := s.Head(digest)
		if errors.Is(err, ErrNotStored) {
			continue // removed since the folder was read
		}
		if err != nil {
			return nil, fmt.Errorf("list store: %w", err)
		}
		m, err := ParseManifest(h.Manifest)
		if err != nil {
			return nil, fmt.Errorf("list store: head %s: %w: %v", digest, ErrCorruptStore, err)
		}
		out = append(out, Entry{Digest: digest, ID: m.ID, Version: m.Version, ModuleSHA256: m.Module.SHA256, Size: m.Module.Size, Expires: m.Expires})
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

// readBounded reads a whole stored file of at most limit bytes; a larger
// one means the store is damaged.
func readBounded(path string, limit int64) ([]byte, error) {
	data, err := bounded.ReadFile(path, limit)
	if errors.Is(err, bounded.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorruptStore, filepath.Base(path), limit)
	}
	return data, err
}
