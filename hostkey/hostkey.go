// Package hostkey holds a host's own identity: the Ed25519 key with which
// an agent signs what it says about itself (its reports in rollouts), and
// the keys it has pinned for the other hosts of the fleet.
//
// A host speaks only for itself. Holding the cluster's gossip key makes a
// host a member, nothing more: it can send any gossip event and claim any
// node name, so nothing in gossip says who sent it. What a host reports
// about its own part in a rollout is therefore signed with a key only that
// host holds, generated on its first start and kept 0600 in its state
// directory. The public half travels in the host's gossip tags.
//
// Other agents pin a node's key the first time they see it in that node's
// tags (trust on first use, as SSH does with host keys), with the time they
// pinned it: a report counts only when it is signed by the pinned key of
// the node it names. A reinstalled host has a new key; the fleet accepts it
// only through an operator-signed re-key, never because the host says so.
// The pin time also bounds Sybil members: a stage's healthy share counts
// only hosts pinned before the plan was accepted.
package hostkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/splicefleet/splicefleet/internal/atomicfile"
)

// FileName is the host key's file in the state directory.
const FileName = "host.key"

// PublicKey is a host's public key.
type PublicKey = ed25519.PublicKey

// ErrBadKey reports a host key file or an encoded public key that is not
// one.
var ErrBadKey = errors.New("bad host key")

// Key is this host's signing key.
type Key struct {
	priv ed25519.PrivateKey
}

// Public is the key's public half.
func (k *Key) Public() PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// Sign signs a message.
func (k *Key) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// Generate makes a new key from r (crypto/rand when nil).
func Generate(r io.Reader) (*Key, error) {
	if r == nil {
		r = rand.Reader
	}
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, err
	}
	return &Key{priv: priv}, nil
}

// LoadOrCreate reads the host key from dir/host.key, or makes one there
// (mode 0600) when there is none. A key file that another user can read
// or write, or that is a symbolic link, is refused: it is the host's
// identity in every rollout.
func LoadOrCreate(dir string) (*Key, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k, err := Generate(nil)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(path, []byte(k.priv.Seed()), 0o600); err != nil {
			return nil, fmt.Errorf("write the host key: %w", err)
		}
		return k, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKey, path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %s; it must be a regular file only its owner can read (chmod 600)", ErrBadKey, path, fi.Mode())
	}
	seed, err := io.ReadAll(io.LimitReader(f, ed25519.SeedSize+1))
	if err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want %d", ErrBadKey, path, len(seed), ed25519.SeedSize)
	}
	return &Key{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Encode renders a public key for a gossip tag: 43 characters of
// unpadded URL-safe base64.
func Encode(p PublicKey) string { return base64.RawURLEncoding.EncodeToString(p) }

// Decode parses Encode's form.
func Decode(s string) (PublicKey, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %q is not an encoded Ed25519 public key", ErrBadKey, s)
	}
	return PublicKey(b), nil
}
