package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/splicefleet/splicefleet/hostkey"
	"github.com/splicefleet/splicefleet/internal/atomicfile"
	"github.com/splicefleet/splicefleet/internal/bounded"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// Hosts' signed reports.
//
// A host's part in a rollout (applying, healthy, failed and why, rolled
// back, halted) counts only as the host itself signed it, with its host
// key (package hostkey), and only when that key is the one pinned for the
// node the report names. Every agent keeps, per rollout and node, the
// latest report by the host's sequence number and, when that one is not
// healthy, the last healthy one (a failure after it is a regression, not
// a failing canary). It keeps them on disk, under STATE_DIR/reports, and
// serves them at /v1/reports/PLAN, so the failures that halted a rollout
// stay with it: an agent that first hears of the plan years later fetches
// them with the plan and reaches the same halt.
//
// Reports travel three ways: the ReportEvent gossip event (fast, best
// effort), a fetch from the host whose tags show a state this agent holds
// no report for, and, for a plan heard of over gossip, a pull of every
// report from a few peers before the plan is judged at all. Reports of a
// plan this agent does not follow are not kept: they come with the plan.

// ErrReportRefused wraps every refusal of a host report.
var ErrReportRefused = errors.New("host report refused")

// Bounds of the report book.
const (
	// maxReportsPerPlan bounds the nodes with reports for one plan.
	maxReportsPerPlan = 1 << 14
	// maxReportsBody bounds a /v1/reports answer: two reports per node.
	maxReportsBody = 2 * maxReportsPerPlan * (rollout.MaxReportSize*4/3 + 8)
)

// heldReport is one node's reports for one plan.
type heldReport struct {
	latest *rollout.SignedReport
	// healthy is its last healthy report, when latest is not one.
	healthy *rollout.SignedReport
}

func (h *heldReport) evidence() rollout.Evidence {
	return rollout.Evidence{State: h.latest.State, Reason: h.latest.Reason, WasHealthy: h.healthy != nil}
}

func (h *heldReport) wires() [][]byte {
	out := [][]byte{h.latest.Wire}
	if h.healthy != nil {
		out = append(out, h.healthy.Wire)
	}
	return out
}

// reportBook holds the reports of the rollouts this agent follows. The
// rollouts' lock guards it.
type reportBook struct {
	dir   string
	plans map[string]map[string]*heldReport // plan digest → node → reports
}

func openReportBook(dir string) (*reportBook, error) {
	b := &reportBook{dir: dir, plans: map[string]map[string]*heldReport{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	plans, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, p := range plans {
		if !p.IsDir() || !splice.ValidDigest(p.Name()) {
			continue
		}
		// Followed when its reports were kept: a report is put only
		// into a followed plan.
		b.follow(p.Name())
		nodes, err := os.ReadDir(filepath.Join(dir, p.Name()))
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			data, err := bounded.ReadFile(filepath.Join(dir, p.Name(), n.Name()), 4*rollout.MaxReportSize)
			if err != nil {
				continue
			}
			// Verified again: the disk is not trusted more than the wire.
			for len(data) >= 2 {
				l := int(binary.BigEndian.Uint16(data))
				if len(data) < 2+l {
					break
				}
				if rep, err := rollout.DecodeReport(data[2 : 2+l]); err == nil && rep.Plan == p.Name() {
					_, _ = b.put(rep) // older copies are ignored; what is kept is the newest
				}
				data = data[2+l:]
			}
		}
	}
	return b, nil
}

// follow makes room for a plan's reports.
func (b *reportBook) follow(plan string) {
	if b.plans[plan] == nil {
		b.plans[plan] = map[string]*heldReport{}
	}
}

// put keeps a verified report in memory; it reports whether it changed
// what is held. An older report is ignored, except a healthy one the
// node has none of.
func (b *reportBook) put(rep *rollout.SignedReport) (bool, error) {
	nodes := b.plans[rep.Plan]
	if nodes == nil {
		return false, fmt.Errorf("%w: plan %s is not followed here", ErrReportRefused, rep.Plan[:12])
	}
	h := nodes[rep.Node]
	switch {
	case h == nil:
		if len(nodes) >= maxReportsPerPlan {
			return false, fmt.Errorf("%w: %d nodes report on plan %s already", ErrReportRefused, len(nodes), rep.Plan[:12])
		}
		nodes[rep.Node] = &heldReport{latest: rep}
		return true, nil
	case rep.Seq > h.latest.Seq:
		if h.latest.State == rollout.StateHealthy {
			h.healthy = h.latest
		}
		if rep.State == rollout.StateHealthy {
			h.healthy = nil
		}
		h.latest = rep
		return true, nil
	case rep.Seq == h.latest.Seq:
		if !bytes.Equal(rep.Wire, h.latest.Wire) {
			return false, fmt.Errorf("%w: %w: %s signed two different reports with sequence %d", ErrReportRefused, rollout.ErrReplayed, rep.Node, rep.Seq)
		}
		return false, nil
	case rep.State == rollout.StateHealthy && h.latest.State != rollout.StateHealthy && (h.healthy == nil || rep.Seq > h.healthy.Seq):
		h.healthy = rep
		return true, nil
	}
	return false, nil
}

// save writes one node's reports for a plan.
func (b *reportBook) save(plan, node string) error {
	h := b.plans[plan][node]
	if h == nil {
		return nil
	}
	var buf []byte
	for _, w := range h.wires() {
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(w)))
		buf = append(buf, w...)
	}
	dir := filepath.Join(b.dir, plan)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(node))
	return atomicfile.WriteFile(filepath.Join(dir, hex.EncodeToString(sum[:16])), buf, 0o600)
}

// evidence is what the plan's reports say, node by node, counting only
// reports signed by the key pinned for their node.
func (b *reportBook) evidence(plan string, pinned func(node string, key hostkey.PublicKey) bool) map[string]rollout.Evidence {
	nodes := b.plans[plan]
	out := make(map[string]rollout.Evidence, len(nodes))
	for node, h := range nodes {
		if pinned(node, h.latest.Key) {
			out[node] = h.evidence()
		}
	}
	return out
}

// wires are the plan's reports as served to peers; node, when set,
// narrows them to one node, failed to failures.
func (b *reportBook) wires(plan, node string, failed bool) [][]byte {
	var out [][]byte
	for n, h := range b.plans[plan] {
		if (node == "" || n == node) && (!failed || h.latest.State == rollout.StateFailed) {
			out = append(out, h.wires()...)
		}
	}
	return out
}

// reportsAnswer is the body of /v1/reports/PLAN.
type reportsAnswer struct {
	Reports [][]byte `json:"reports"`
}

// acceptReport verifies a report heard from gossip or a peer, checks it
// against the node's pinned key, and keeps it. The caller holds r.mu.
func (r *rollouts) acceptReportLocked(wire []byte) (*rollout.SignedReport, bool, error) {
	rep, err := rollout.DecodeReport(wire)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrReportRefused, err)
	}
	if rep.Node == r.deps.nodeName {
		return rep, false, nil // this host's own word is its local state
	}
	pin, ok := r.deps.pins.Lookup(rep.Node)
	if !ok {
		r.pinFromTags(rep.Node)
		if pin, ok = r.deps.pins.Lookup(rep.Node); !ok {
			return nil, false, fmt.Errorf("%w: %w: no key is pinned for node %q (it is not a member this agent has seen)", ErrReportRefused, hostkey.ErrKeyMismatch, rep.Node)
		}
	}
	if !bytes.Equal(pin.Key, rep.Key) {
		return nil, false, fmt.Errorf("%w: %w: the report on %q is signed by key %s, the node's pinned key is %s",
			ErrReportRefused, hostkey.ErrKeyMismatch, rep.Node, hostkey.Encode(rep.Key)[:12], hostkey.Encode(pin.Key)[:12])
	}
	changed, err := r.book.put(rep)
	if err != nil || !changed {
		return rep, false, err
	}
	if err := r.book.save(rep.Plan, rep.Node); err != nil {
		r.deps.log.Warn("save host report", "plan", rep.Plan[:12], "reporter", rep.Node, "err", err)
	}
	return rep, true, nil
}

// Report takes a signed report heard over gossip or fetched from a peer:
// refused and counted unless it verifies, then judged at once.
func (r *rollouts) Report(wire []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reportLocked(wire)
}

func (r *rollouts) reportLocked(wire []byte) error {
	rep, changed, err := r.acceptReportLocked(wire)
	if err != nil {
		r.deps.refused("report", err)
		return err
	}
	if changed {
		if rec, ok := r.recs[rep.Plan]; ok {
			r.evaluateLocked(rec)
		}
		r.Kick()
	}
	return nil
}

// signLocked signs this host's current state in a rollout, keeps it and
// gossips it. The caller holds r.mu.
func (r *rollouts) signLocked(rec *rolloutRecord) {
	if rec.Local.State == rollout.StateNone {
		return
	}
	a := r.deps
	wire, err := rollout.EncodeReport(rollout.HostReport{Plan: rec.Rollout.Digest, Node: a.nodeName, State: rec.Local.State,
		Seq: rec.Local.Seq, Reason: publicReason(rec.Local.Reason)}, a.hostKey)
	if err != nil {
		a.log.Warn("sign host report", "err", err)
		return
	}
	rep, err := rollout.DecodeReport(wire)
	if err != nil {
		a.log.Warn("sign host report", "err", err)
		return
	}
	if changed, err := r.book.put(rep); err == nil && changed {
		if err := r.book.save(rep.Plan, rep.Node); err != nil {
			a.log.Warn("save host report", "err", err)
		}
	}
	if err := a.broadcast(rollout.ReportEvent, wire); err != nil {
		a.log.Warn("gossip host report", "err", err)
	}
}

// pinFromTags pins a member's host key from its tags, when it has none
// pinned yet. The caller holds r.mu.
func (r *rollouts) pinFromTags(node string) {
	r.deps.eachMember(func(name, _ string, _ uint64, tags map[string]string) {
		if name == node {
			r.pin(name, tags[TagHostKey])
		}
	})
}

// pin pins a member's advertised key and returns when the key it shows
// was pinned; zero when it shows none or another than the one pinned.
func (r *rollouts) pin(node, tag string) time.Time {
	if tag == "" {
		return time.Time{}
	}
	key, err := hostkey.Decode(tag)
	if err != nil {
		return time.Time{}
	}
	p, _, err := r.deps.pins.Observe(node, key, r.deps.now())
	if err != nil {
		if errors.Is(err, hostkey.ErrKeyMismatch) && !r.mismatched[node] {
			if len(r.mismatched) > 1<<12 {
				clear(r.mismatched)
			}
			r.mismatched[node] = true
			r.deps.log.Warn("a member shows a host key other than the one pinned for its name: its reports do not count until an operator re-keys it",
				"member", node, "shows", tag[:12], "pinned", hostkey.Encode(p.Key)[:12])
			r.deps.refused("report", fmt.Errorf("%w: member %s", hostkey.ErrKeyMismatch, node))
		}
		return time.Time{}
	}
	return p.Since
}

// pinnedSince is when the key a member's tag shows was pinned for it;
// zero when it shows none, or one not pinned (nothing is pinned here).
func (r *rollouts) pinnedSince(node, tag string) time.Time {
	key, err := hostkey.Decode(tag)
	if tag == "" || err != nil {
		return time.Time{}
	}
	if p, ok := r.deps.pins.Lookup(node); ok && bytes.Equal(p.Key, key) {
		return p.Since
	}
	return time.Time{}
}

// fetchReports asks a peer for a plan's reports (narrowed to one node or
// to failures) and takes the ones that verify. It reports whether the
// peer answered.
func (r *rollouts) fetchReports(ctx context.Context, addr, plan, node string, failed bool) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	if failed {
		q.Set("failed", "1")
	}
	u := "http://" + addr + "/v1/reports/" + plan
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	r.mu.Lock()
	client := r.deps.client
	r.mu.Unlock()
	resp, err := client.Do(req)
	if err != nil {
		r.deps.log.Debug("fetch host reports", "peer", addr, "err", err)
		return false
	}
	defer resp.Body.Close()
	var ans reportsAnswer
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, maxReportsBody)).Decode(&ans) != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range ans.Reports {
		rep, err := rollout.DecodeReport(w)
		if err != nil || rep.Plan != plan || (node != "" && rep.Node != node) {
			r.deps.refused("report", fmt.Errorf("%w: %s answered for plan %s with %v", ErrReportRefused, addr, plan[:12], err))
			continue
		}
		_ = r.reportLocked(w)
	}
	return true
}

// askAgain is how long an agent waits before it asks a member again for
// the report behind its tags: the answer may have been lost, or the
// member busy.
const askAgain = 3 * time.Second

// askReports fetches the reports behind a member's tags, at most once per
// askAgain for each state shown: its own, when its tags show a state this
// agent holds no signed report of; the failures it holds, when it shows
// the rollout halted here running. The caller holds r.mu.
func (r *rollouts) askReports(plan, node, addr string, shown rollout.HostState, failures bool) {
	key := plan + "/" + node + "/" + shown.String()
	now := time.Now()
	if at, ok := r.asked[key]; ok && now.Sub(at) < askAgain {
		return
	}
	if len(r.asked) > 1<<14 {
		for k, at := range r.asked {
			if now.Sub(at) >= askAgain {
				delete(r.asked, k)
			}
		}
		if len(r.asked) > 1<<14 {
			return
		}
	}
	r.asked[key] = now
	r.deps.spawn(func() {
		if failures {
			// The failures that halted it, and the member's own word too:
			// its last healthy report may be what a stage here still
			// waits for (the member rolled back since).
			r.fetchReports(context.Background(), addr, plan, "", true)
		}
		r.fetchReports(context.Background(), addr, plan, node, false)
	})
}

// syncReports pulls a plan's reports from its source and a few other
// peers before the plan is judged here for the first time: a plan heard
// of late may have halted long ago, on failures no event carries any
// more. It needs one peer to answer, when there are any.
func (r *rollouts) syncReports(ctx context.Context, plan, src string) error {
	r.mu.Lock()
	r.book.follow(plan)
	r.mu.Unlock()
	peers := r.deps.peers()
	sources := []string{src}
	for _, p := range peers {
		if p != src && len(sources) < 3 {
			sources = append(sources, p)
		}
	}
	answered := 0
	for _, s := range sources {
		if r.fetchReports(ctx, s, plan, "", false) {
			answered++
		}
	}
	if answered == 0 && len(peers) > 0 {
		return fmt.Errorf("no peer answered for the reports of plan %s (asked %v)", plan[:12], sources)
	}
	return nil
}

// served is what /v1/reports/PLAN answers.
func (r *rollouts) served(plan, node string, failed bool) (reportsAnswer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.book.plans[plan]; !ok || r.recs[plan] == nil {
		return reportsAnswer{}, false
	}
	return reportsAnswer{Reports: r.book.wires(plan, node, failed)}, true
}

// unfollowUnknown drops the reports fetched for a plan that was not
// accepted after all.
func (r *rollouts) unfollowUnknown(plan string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.recs[plan] == nil {
		delete(r.book.plans, plan)
		_ = os.RemoveAll(filepath.Join(r.book.dir, plan))
	}
}
