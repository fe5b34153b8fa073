package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/splicefleet/splicefleet/internal/atomicfile"
	"github.com/splicefleet/splicefleet/internal/bounded"
	"github.com/splicefleet/splicefleet/metrics"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// Bundle retention.
//
// The store holds every verified bundle for distribution: peers fetch
// them from it, and a host that joins later applies a rollout from the
// copies the fleet holds. A bundle no live rollout needs is dropped
// after Config.BundleRetention: one whose rollouts all halted, were
// revoked or expired (counted from the halt or the expiry), one whose
// manifest expired (from the expiry), and one published without a plan
// (from its arrival). A bundle a running, paused or done rollout rolls
// out is kept, whatever its age. `splicefleet forget` drops one now, on
// this host (the control API) or on every host (a signed forget command,
// verified like every operator command). Only the copy for distribution
// goes: a patch the host applied stays applied, and the one bundle store
// (splice.Store) keeps its bytes, for this host alone, while the host's
// journal needs them to re-apply it at boot or put it back.
//
// A dropped bundle is remembered (forgotten, persisted in the state
// directory), so that anti-entropy does not fetch it back from a peer
// that still holds it. A new announcement (a publish) or a plan naming
// it still brings it.

// ErrBundleInUse reports a forget of a bundle that a running, paused or
// done rollout rolls out.
var ErrBundleInUse = errors.New("bundle in use")

// Bounds of what retention remembers.
const (
	maxForgotten = 4096 // dropped bundles remembered; the oldest go first
	maxForgets   = 1024 // forget commands kept and served to peers
	// forgetSkew is how much later than a forget's issue time a copy may
	// have arrived and still be dropped by it (clocks differ).
	forgetSkew = 5 * time.Minute
)

// forgotten are the bundles this agent dropped, by digest, with when.
type forgotten struct {
	path string
	mu   sync.Mutex
	at   map[string]time.Time
}

func openForgotten(path string) (*forgotten, error) {
	f := &forgotten{path: path, at: map[string]time.Time{}}
	data, err := bounded.ReadFile(path, 1<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("forgotten bundles: %w", err)
	}
	if err := json.Unmarshal(data, &f.at); err != nil {
		return nil, fmt.Errorf("forgotten bundles %s is damaged: %w", path, err)
	}
	for d := range f.at {
		if !splice.ValidDigest(d) {
			delete(f.at, d)
		}
	}
	return f, nil
}

func (f *forgotten) has(digest string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.at[digest]
	return ok
}

// add remembers a dropped bundle, forgetting the oldest beyond
// maxForgotten, and persists the set.
func (f *forgotten) add(digest string, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at[digest] = at.UTC()
	if len(f.at) > maxForgotten {
		keys := slices.SortedFunc(maps.Keys(f.at), func(a, b string) int { return f.at[a].Compare(f.at[b]) })
		for _, d := range keys[:len(f.at)-maxForgotten] {
			delete(f.at, d)
		}
	}
	data, err := json.Marshal(f.at)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(f.path, data, 0o600)
}

// bundleUseLocked says whether a bundle must be kept: keep names the
// rollout that rolls it out and is running, paused or done (not one that
// is done when the bundle itself expired: no host can apply it any
// more). Otherwise ended is when the last rollout naming it ended (its
// halt or its plan's expiry), zero when none names it. The caller holds
// r.mu.
func (r *rollouts) bundleUseLocked(bundle string, expired bool) (keep string, ended time.Time) {
	var c *cluster
	for _, d := range r.order {
		rec := r.recs[d]
		if rec.Rollout.Plan.Bundle != bundle {
			continue
		}
		st, ok := r.status[d]
		if !ok {
			if c == nil {
				cl := r.cluster()
				c = &cl
			}
			st = r.evaluateIn(rec, *c)
		}
		switch {
		case r.acting[d]:
			return fmt.Sprintf("this host is acting on rollout %s", st.ID), time.Time{}
		case st.State == rollout.Running || st.State == rollout.Paused:
			return fmt.Sprintf("rollout %s is %s; halt or revoke it first", st.ID, st.State), time.Time{}
		case st.State == rollout.Done && !expired:
			return fmt.Sprintf("rollout %s is done, and hosts that join later apply it from the fleet's copies; revoke it first to drop it", st.ID), time.Time{}
		case rollout.Ended(st.State):
			ended = later(ended, orElse(rec.Rollout.HaltedAt, rec.Rollout.Accepted))
		case st.State == rollout.Expired && rec.Rollout.Plan.Expires != nil:
			ended = later(ended, *rec.Rollout.Plan.Expires)
		default:
			ended = later(ended, rec.Rollout.Accepted)
		}
	}
	return "", ended
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func orElse(t, fallback time.Time) time.Time {
	if t.IsZero() {
		return fallback
	}
	return t
}

// collectBundles drops the bundles whose retention ran out, and returns
// their digests.
func (a *Agent) collectBundles() []string {
	// Listed under the rollouts' lock, as every drop is made: two
	// collections at once (the anti-entropy tick's and a caller's) must
	// not both drop, and count, one bundle.
	var dropped []string
	a.ro.holdingDrops(func(use bundleUse) {
		entries, err := a.store.List()
		if err != nil {
			a.log.Warn("bundle retention: list the store", "err", err)
			return
		}
		now := a.now()
		for _, e := range entries {
			expired := e.Expires != nil && !now.Before(*e.Expires)
			keep, since := use(e.Digest, expired)
			if keep != "" {
				continue
			}
			why := "its rollouts ended"
			if since.IsZero() {
				why = "published without a plan"
				if since, err = a.store.StoredAt(e.Digest); err != nil {
					continue // removed meanwhile
				}
			}
			if expired {
				why = "it expired"
				since = later(since, *e.Expires)
			}
			if now.Before(since.Add(a.cfg.BundleRetention)) {
				continue
			}
			if err := a.dropBundleLocked(e, metrics.DropRetention, fmt.Sprintf("%s %s ago", why, now.Sub(since).Round(time.Second))); err != nil {
				a.log.Warn("bundle retention", "id", e.ID, "version", e.Version, "err", err)
				continue
			}
			dropped = append(dropped, e.Digest)
		}
	})
	return dropped
}

// bundleUse says whether a bundle must be kept (rollouts.bundleUseLocked).
type bundleUse func(bundle string, expired bool) (keep string, ended time.Time)

// holdingDrops runs f under the engine's lock, so that no plan naming a
// bundle f drops is accepted meanwhile; use says which bundles the
// rollouts need.
func (r *rollouts) holdingDrops(f func(use bundleUse)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.bundleUseLocked)
}

// dropBundleLocked removes a bundle's copy for distribution and
// remembers it. The caller is inside rollouts.holdingDrops, so that no plan naming it is
// accepted meanwhile.
func (a *Agent) dropBundleLocked(e splice.Entry, reason metrics.DropReason, why string) error {
	if err := a.store.Remove(e.Digest); err != nil {
		return err
	}
	if err := a.forgotten.add(e.Digest, a.now()); err != nil {
		a.log.Warn("remember a dropped bundle", "digest", e.Digest[:12], "err", err)
	}
	a.log.Info("bundle dropped from the store", "id", e.ID, "version", e.Version, "digest", e.Digest[:12], "why", why)
	if a.metrics != nil {
		a.metrics.BundleDropped(reason)
	}
	a.refreshTags()
	return nil
}

// heldEntry finds a held bundle by manifest digest.
func (a *Agent) heldEntry(digest string) (splice.Entry, bool, error) {
	entries, err := a.store.List()
	if err != nil {
		return splice.Entry{}, false, err
	}
	i := slices.IndexFunc(entries, func(e splice.Entry) bool { return e.Digest == digest })
	if i < 0 {
		return splice.Entry{}, false, nil
	}
	return entries[i], true, nil
}

// Forget drops a held bundle's copy for distribution on this host now,
// unless a running, paused or done rollout rolls it out. Other hosts
// keep theirs: a signed forget command (Command) drops them everywhere.
func (a *Agent) Forget(digest string) (splice.Entry, error) {
	if err := splice.CheckDigest(digest); err != nil {
		return splice.Entry{}, err
	}
	e, held, err := a.heldEntry(digest)
	if err != nil {
		return splice.Entry{}, err
	}
	if !held {
		return splice.Entry{}, fmt.Errorf("forget bundle %s: %w", digest[:12], splice.ErrNotStored)
	}
	var out splice.Entry
	a.ro.holdingDrops(func(use bundleUse) {
		expired := e.Expires != nil && !a.now().Before(*e.Expires)
		if keep, _ := use(digest, expired); keep != "" {
			err = fmt.Errorf("%w: bundle %s version %d (%s): %s", ErrBundleInUse, e.ID, e.Version, digest[:12], keep)
			return
		}
		out, err = e, a.dropBundleLocked(e, metrics.DropForget, "forget on this host")
	})
	return out, err
}

// acceptForget applies a verified forget command: the bundle's copy goes
// unless a running, paused or done rollout rolls it out here, or the
// copy arrived after the command was issued (a replay must not drop a
// bundle published again since). The command is kept and served to
// peers, so that hosts that were away drop their copy too.
func (r *rollouts) acceptForget(vc *rollout.VerifiedCommand) error {
	a := r.deps
	c := vc.Command
	e, held, err := a.retention.heldEntry(c.Bundle)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Contains(r.forgets, c.Digest) {
		return fmt.Errorf("%w: %w: this forget was already accepted", ErrRolloutRefused, rollout.ErrReplayed)
	}
	if len(r.forgets) >= maxForgets {
		err := fmt.Errorf("%w: %d forget commands are kept already", ErrRolloutRefused, maxForgets)
		a.refused("command", err)
		return err
	}
	expired := held && e.Expires != nil && !a.now().Before(*e.Expires)
	if keep, _ := r.bundleUseLocked(c.Bundle, expired); keep != "" {
		err := fmt.Errorf("%w: forget of bundle %s: %w: %s", ErrRolloutRefused, c.Bundle[:12], ErrBundleInUse, keep)
		a.refused("command", err)
		return err
	}
	if err := r.storeDoc(vc.Doc); err != nil {
		return fmt.Errorf("keep the command: %w", err)
	}
	r.forgets = append(r.forgets, c.Digest)
	return a.retention.forgetAccepted(c, e, held)
}

// forgetAccepted drops the copy of the bundle an accepted forget command
// names, or remembers it when it is not held; a copy that arrived after
// the command was issued stays. The caller holds the engine's lock.
func (a *Agent) forgetAccepted(c rollout.Command, e splice.Entry, held bool) error {
	why := "forget by operator" + reasonOf(c.Reason)
	switch stored, err := a.store.StoredAt(c.Bundle); {
	case !held || err != nil:
		// Not held: remembered, so that anti-entropy does not bring it.
		if err := a.forgotten.add(c.Bundle, a.now()); err != nil {
			a.log.Warn("remember a dropped bundle", "digest", c.Bundle[:12], "err", err)
		}
		a.log.Info("forget accepted for a bundle not held", "digest", c.Bundle[:12])
	case stored.After(c.Issued.Add(forgetSkew)):
		a.log.Info("forget accepted; this copy arrived after it was issued and stays", "id", e.ID, "version", e.Version,
			"stored", stored.UTC(), "issued", c.Issued.UTC())
	default:
		if err := a.dropBundleLocked(e, metrics.DropForget, why); err != nil {
			return err
		}
	}
	return nil
}

func reasonOf(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// wanted lists the bundles a live (running or paused) rollout targets
// this host with, as last judged: only those can be outstanding.
func (r *rollouts) wanted() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for _, d := range r.order {
		st, ok := r.status[d]
		if ok && st.Self.Targeted && (st.State == rollout.Running || st.State == rollout.Paused) {
			out[r.recs[d].Rollout.Plan.Bundle] = true
		}
	}
	return out
}
