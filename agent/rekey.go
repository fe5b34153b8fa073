package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/splicefleet/splicefleet/hostkey"
	"github.com/splicefleet/splicefleet/internal/bounded"
	"github.com/splicefleet/splicefleet/rollout"
)

// Re-keying a host. A node's key is pinned on first sight; a host that
// was reinstalled comes back with a new key, which every agent refuses
// for that name (its reports do not count) until operators sign a re-key
// (rollout.KindRekey, K of N keys as any operator command). The re-key is
// a document like a command: stored, served and carried by anti-entropy,
// so an agent that joins later takes it too; it takes one only when it
// was issued after the last re-key of that node it took, so an old one
// replayed cannot bring an old key back.

// AcceptRekey verifies an operator's re-key and pins the node's new key.
func (r *rollouts) AcceptRekey(d *rollout.Document) (rollout.Status, error) {
	a := r.deps
	vr, err := rollout.VerifyRekey(d, a.trust())
	if err != nil {
		a.refused(rollout.KindRekey, err)
		return rollout.Status{}, fmt.Errorf("%w: %w", ErrRolloutRefused, err)
	}
	key, err := hostkey.Decode(vr.Rekey.Key)
	if err != nil {
		return rollout.Status{}, fmt.Errorf("%w: %w", ErrRolloutRefused, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := a.pins.Rekey(vr.Rekey.Node, key, vr.Digest, vr.Rekey.Issued, a.now()); err != nil {
		if errors.Is(err, hostkey.ErrStaleRekey) {
			err = fmt.Errorf("%w: %w: %w", ErrRolloutRefused, rollout.ErrReplayed, err)
			a.refused(rollout.KindRekey, err)
		}
		return rollout.Status{}, err
	}
	if err := r.storeDoc(d); err != nil {
		a.log.Warn("keep the re-key", "err", err)
	} else {
		r.rekeys = append(r.rekeys, vr.Digest)
	}
	// Members are converted again, with the new pin.
	clear(r.members)
	delete(r.mismatched, vr.Rekey.Node)
	clear(r.asked) // its reports are asked for again
	a.log.Info("host re-keyed by operators", "member", vr.Rekey.Node, "key", vr.Rekey.Key[:12], "reason", vr.Rekey.Reason, "signers", len(vr.Signers))
	r.Kick()
	return rollout.Status{}, nil
}

// Rekey accepts an operator's signed re-key and gossips it to the fleet.
func (a *Agent) Rekey(d *rollout.Document) (rollout.Status, error) {
	st, err := a.ro.AcceptRekey(d)
	if err != nil {
		return st, err
	}
	return st, a.announceDoc(d)
}

// loadRekeys lists the stored re-keys, for anti-entropy. The pins they
// set are on disk already.
func (r *rollouts) loadRekeys() {
	entries, _ := os.ReadDir(r.docs)
	for _, e := range entries {
		data, err := bounded.ReadFile(filepath.Join(r.docs, e.Name()), rollout.MaxDocumentSize)
		if err != nil {
			continue
		}
		if d, err := rollout.DecodeDocument(data); err == nil && d.Kind == rollout.KindRekey {
			r.rekeys = append(r.rekeys, d.Digest())
		}
	}
}
