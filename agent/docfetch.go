package agent

// Fetching signed documents (plans, commands, re-keys): from the places
// they were announced or listed, from peers by anti-entropy, and from a
// member whose tags show a rollout this agent does not follow.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/splicefleet/splicefleet/distrib"
	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// Bounds of a document fetch: a document is at most
// rollout.MaxDocumentSize bytes, so a source that takes longer than
// docRequestTimeout is not worth waiting for, and one document is not
// looked for longer than docFetchTimeout (a plan's bundle, fetched
// after, has the fetcher's own bounds).
const (
	docRequestTimeout = 5 * time.Second
	docFetchTimeout   = 20 * time.Second
	docPeersTried     = 3
)

// fetchDocAsync fetches, verifies and accepts a signed plan or command
// unless it is held or already being fetched (then source is added to
// that fetch's). The fetch is charged to the member whose blob service
// source is, in the pool of announced documents or, when pulled, of
// documents anti-entropy found in that member's index (see queue.go);
// it is dropped, counted, when no member advertises source or the budget
// is used up. A plan's bundle is fetched first when it is missing.
func (a *Agent) fetchDocAsync(ctx context.Context, kind, digest, source string, pulled bool) {
	if a.ro.has(digest) {
		return
	}
	if a.ro.refusedLately(digest) {
		return
	}
	member, ok := a.memberAt(source)
	if !ok {
		a.docQ.drop(dropNotAMember)
		a.log.Warn("ignored a document announcement whose origin no member advertises", "kind", kind, "digest", digest[:12], "origin", source)
		return
	}
	admitted, reason := a.docQ.admit(digest, member, source, pulled)
	if !admitted {
		if reason != "" {
			a.log.Debug("document fetch not queued; anti-entropy brings it later", "kind", kind, "digest", digest[:12], "member", member, "reason", reason)
		}
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer a.docQ.done(digest)
		if err := a.fetchDoc(ctx, kind, digest); err != nil && ctx.Err() == nil {
			a.log.Warn("fetch "+kind, "digest", digest[:12], "err", err)
			if refusalReason(err) != "" {
				// Refused, not missing: do not fetch it again for a while
				// (a reload of the trust policy forgets this).
				a.ro.refuse(digest)
			}
		}
	}()
}

// fetchDoc looks for a queued document: at the places it was announced
// or listed (also those heard while it is looked for), then at a few
// peers; a source that timed out lately is asked last. Each request and
// the whole search are bounded in time; a source that times out or
// cannot be reached is demoted for every fetch, bundles too.
func (a *Agent) fetchDoc(ctx context.Context, kind, digest string) error {
	fctx, cancel := context.WithTimeout(ctx, docFetchTimeout)
	defer cancel()
	peers := a.peers()
	peers = peers[:min(docPeersTried, len(peers))]
	asked := map[string]bool{}
	var errs []error
	for {
		// The next source: announced first, then peers, demoted last.
		var next string
		for _, demoted := range []bool{false, true} {
			for _, src := range append(a.docQ.sources(digest), peers...) {
				if next == "" && !asked[src] && a.fetcher.Demoted(src) == demoted {
					next = src
				}
			}
		}
		if next == "" {
			if len(errs) == 0 {
				return fmt.Errorf("%s %s: %w: no source left to try", kind, digest[:12], distrib.ErrUnavailable)
			}
			return errors.Join(errs...)
		}
		asked[next] = true
		rctx, cancel := context.WithTimeout(fctx, docRequestTimeout)
		d, err := a.getDoc(rctx, next, digest)
		cancel()
		if err != nil {
			if fctx.Err() != nil {
				return errors.Join(append(errs, fmt.Errorf("%s %s: %w", kind, digest[:12], fctx.Err()))...)
			}
			var status *distrib.StatusError
			switch {
			case errors.Is(err, rollout.ErrInvalidDocument):
				a.metricRefused(kind, err) // unsigned, oversized or malformed
			case errors.Is(err, errWrongDocument), errors.As(err, &status):
			default: // timed out, unreachable or cut off
				a.fetcher.Demote(next)
				a.log.Info("demoted a source that timed out or could not be reached", "what", kind, "source", next, "err", err)
			}
			errs = append(errs, err)
			continue
		}
		if d.Kind != kind {
			return fmt.Errorf("%s announced as a %s is a %s", digest[:12], kind, d.Kind)
		}
		switch kind {
		case rollout.KindPlan:
			return a.acceptFetchedPlan(ctx, d, next)
		case rollout.KindRekey:
			_, err := a.ro.AcceptRekey(d)
			return err
		default:
			_, err := a.ro.AcceptCommand(d)
			if errors.Is(err, ErrNoRollout) {
				return nil // kept until the plan arrives
			}
			return err
		}
	}
}

// errWrongDocument: a source served a document other than the one asked
// for.
var errWrongDocument = errors.New("served another document")

// acceptFetchedPlan verifies a plan heard over gossip; when its bundle is
// not held yet, it fetches the bundle from the plan's source and peers
// first, verified as any bundle.
func (a *Agent) acceptFetchedPlan(ctx context.Context, d *rollout.Document, src string) error {
	vp, err := rollout.VerifyPlan(d, a.policy.Load(), a.now())
	if err != nil {
		a.metricRefused("plan", err)
		return err
	}
	if !a.store.Has(vp.Plan.Bundle) {
		peers := slices.DeleteFunc(a.peers(), func(p string) bool { return p == src })
		if _, err := a.fetcher.Fetch(ctx, distrib.Want{ManifestDigest: vp.Plan.Bundle}, peers, src); err != nil {
			return fmt.Errorf("plan %s: its bundle: %w", vp.Plan.ID, err)
		}
		a.refreshTagsSoon()
	}
	// The plan may be old and may have halted long ago: its signed
	// failure reports come with it, before it is judged here at all.
	if err := a.ro.syncReports(ctx, vp.Digest, src); err != nil {
		a.ro.unfollowUnknown(vp.Digest)
		return fmt.Errorf("plan %s: %w", vp.Plan.ID, err)
	}
	_, err = a.ro.acceptVerified(vp)
	if err != nil {
		a.ro.unfollowUnknown(vp.Digest)
	}
	return err
}

// getDoc fetches one document and checks it is the one asked for.
func (a *Agent) getDoc(ctx context.Context, src, digest string) (*rollout.Document, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+src+"/v1/docs/"+digest, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.fetcher.Client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, distrib.MaxErrorBody))
		return nil, &distrib.StatusError{Source: src, Code: resp.StatusCode, Status: resp.Status}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, rollout.MaxDocumentSize+1))
	if err != nil {
		return nil, err
	}
	d, err := rollout.DecodeDocument(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if d.Digest() != digest {
		return nil, fmt.Errorf("%w: %s served a document whose digest is %s, not %s", errWrongDocument, src, d.Digest()[:12], digest[:12])
	}
	return d, nil
}

// docAntiEntropy asks one random peer for its plans and commands and
// fetches what is missing: a late joiner or a healed partition learns
// every rollout and every operator command this way.
func (a *Agent) docAntiEntropy(ctx context.Context) {
	peers := a.peers()
	if len(peers) == 0 {
		return
	}
	a.pullDocs(ctx, peers[0])
}

// pullDocs asks one peer for its plans and commands and fetches what is
// missing here.
func (a *Agent) pullDocs(ctx context.Context, peer string) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+peer+"/v1/docs", nil)
	if err != nil {
		return
	}
	resp, err := a.fetcher.Client().Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var idx []DocIndexEntry
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&idx) != nil || len(idx) > maxIndexEntries {
		return
	}
	for _, e := range idx {
		if splice.ValidDigest(e.Digest) && (e.Kind == rollout.KindPlan || e.Kind == rollout.KindCommand || e.Kind == rollout.KindRekey) {
			a.fetchDocAsync(ctx, e.Kind, e.Digest, peer, true)
		}
	}
}

// pullUnknownRollouts asks a member for its plans when its tags report a
// rollout this agent does not follow: the plan's announcement was missed
// (gossip events are best effort), and waiting for anti-entropy to pick
// that member could take many rounds. At most once per member per
// pullEvery.
func (a *Agent) pullUnknownRollouts(ctx context.Context, m gossip.Member) {
	addr := m.Tags[TagHTTP]
	if addr == "" || m.Name == a.cfg.NodeName {
		return
	}
	unknown := false
	for key := range rollout.DecodeReports(m.Tags[rollout.ReportsTag]) {
		if !a.ro.knowsKey(key) {
			unknown = true
			break
		}
	}
	if !unknown {
		return
	}
	a.mu.Lock()
	last := a.pulled[m.Name]
	if time.Since(last) < pullEvery {
		a.mu.Unlock()
		return
	}
	if len(a.pulled) > 1<<14 {
		clear(a.pulled)
	}
	a.pulled[m.Name] = time.Now()
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.pullDocs(ctx, addr)
	}()
}

// refusedFor is how long a refused plan or command is not fetched again.
const refusedFor = 10 * time.Minute

// pullEvery bounds how often one member is asked for its plans.
const pullEvery = 5 * time.Second
