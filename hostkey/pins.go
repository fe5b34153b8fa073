package hostkey

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/splicefleet/splicefleet/internal/atomicfile"
)

// PinsFileName is the pinned keys' file in the state directory.
const PinsFileName = "hostkeys.json"

// MaxPins bounds the nodes pinned: a fleet larger than this is beyond
// what one cluster holds.
const MaxPins = 1 << 16

// Outcomes of Pins.Observe.
var (
	// ErrKeyMismatch: the node shows a key other than the one pinned for
	// it (a reinstalled host, or a member claiming another's name).
	ErrKeyMismatch = errors.New("key differs from the one pinned for this node")
	// ErrTooManyPins: the pin table is full.
	ErrTooManyPins = errors.New("too many pinned host keys")
	// ErrStaleRekey: a re-key issued no later than the last one taken
	// for the node (an old re-key replayed).
	ErrStaleRekey = errors.New("re-key is not newer than the one in force")
)

// Pin is one node's pinned key.
type Pin struct {
	Key PublicKey `json:"key"`
	// Since is when this agent pinned it.
	Since time.Time `json:"since"`
	// Rekeyed names the operator's re-key that set it, when one did,
	// and RekeyIssued is when that re-key was issued.
	Rekeyed     string    `json:"rekeyed,omitempty"`
	RekeyIssued time.Time `json:"rekey_issued,omitzero"`
}

type pinsFile struct {
	// Created is when this agent started pinning keys: rollouts it
	// accepted before then count every host as known.
	Created time.Time      `json:"created"`
	Pins    map[string]Pin `json:"pins"`
}

// Pins is the table of pinned keys, kept in one file written atomically.
// It is safe for concurrent use.
type Pins struct {
	path  string
	mu    sync.Mutex
	f     pinsFile
	dirty bool // pinned since the last Flush
}

// OpenPins reads dir/hostkeys.json, or starts an empty table at now.
func OpenPins(dir string, now time.Time) (*Pins, error) {
	p := &Pins{path: filepath.Join(dir, PinsFileName)}
	f, err := os.OpenFile(p.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		p.f = pinsFile{Created: now.UTC(), Pins: map[string]Pin{}}
		return p, p.saveLocked()
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &p.f); err != nil {
		return nil, fmt.Errorf("%s is damaged: %w", p.path, err)
	}
	if p.f.Pins == nil {
		p.f.Pins = map[string]Pin{}
	}
	for node, pin := range p.f.Pins {
		if len(pin.Key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s: %w for node %q", p.path, ErrBadKey, node)
		}
	}
	return p, nil
}

func (p *Pins) saveLocked() error {
	data, err := json.MarshalIndent(p.f, "", " ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(p.path, data, 0o600)
}

// Created is when the table was started.
func (p *Pins) Created() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.f.Created
}

// Lookup returns a node's pin.
func (p *Pins) Lookup(node string) (Pin, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pin, ok := p.f.Pins[node]
	return pin, ok
}

// Observe pins key for node when the node has no pin yet, and reports
// whether it did. A key other than the pinned one is ErrKeyMismatch,
// and the pin stays as it was. New pins reach the disk at Flush, so
// that a whole member list is pinned with one write.
func (p *Pins) Observe(node string, key PublicKey, now time.Time) (Pin, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pin, ok := p.f.Pins[node]; ok {
		if !bytes.Equal(pin.Key, key) {
			return pin, false, ErrKeyMismatch
		}
		return pin, false, nil
	}
	if len(p.f.Pins) >= MaxPins {
		return Pin{}, false, ErrTooManyPins
	}
	pin := Pin{Key: bytes.Clone(key), Since: now.UTC()}
	p.f.Pins[node] = pin
	p.dirty = true
	return pin, true, nil
}

// Flush writes the pins made since the last Flush. A pin that did not
// reach the disk is made again, later, from the node's tags.
func (p *Pins) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.dirty {
		return nil
	}
	if err := p.saveLocked(); err != nil {
		return fmt.Errorf("save pinned host keys: %w", err)
	}
	p.dirty = false
	return nil
}

// Rekey replaces a node's pin on an operator's signed word (by names the
// re-key, issued when it was made). The operators vouch for the host, so
// it stays known since it was first pinned (from now, when it never was).
// A re-key not issued after the last one taken for the node
// is ErrStaleRekey, and the pin stays.
func (p *Pins) Rekey(node string, key PublicKey, by string, issued, now time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, had := p.f.Pins[node]
	if had && !old.RekeyIssued.IsZero() && !issued.After(old.RekeyIssued) {
		return fmt.Errorf("%w: %s was re-keyed by a re-key issued %s; this one was issued %s", ErrStaleRekey, node,
			old.RekeyIssued.UTC().Format(time.RFC3339), issued.UTC().Format(time.RFC3339))
	}
	if !had && len(p.f.Pins) >= MaxPins {
		return ErrTooManyPins
	}
	since := now.UTC()
	if had {
		since = old.Since
	}
	p.f.Pins[node] = Pin{Key: bytes.Clone(key), Since: since, Rekeyed: by, RekeyIssued: issued.UTC()}
	if err := p.saveLocked(); err != nil {
		if had {
			p.f.Pins[node] = old
		} else {
			delete(p.f.Pins, node)
		}
		return fmt.Errorf("save pinned host keys: %w", err)
	}
	p.dirty = false
	return nil
}
