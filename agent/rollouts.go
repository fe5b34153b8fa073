package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/splicefleet/splicefleet/hostkey"
	"github.com/splicefleet/splicefleet/internal/atomicfile"
	"github.com/splicefleet/splicefleet/internal/bounded"
	"github.com/splicefleet/splicefleet/metrics"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// Errors of rollouts at the control API.
var (
	// ErrRolloutRefused wraps every refusal of a plan or command.
	ErrRolloutRefused = errors.New("refused")
	// ErrNoRollout reports an unknown rollout.
	ErrNoRollout = errors.New("no such rollout")
)

// maxRecordSize bounds a rollout record read at start. The record holds
// the names of the hosts seen in the open stages (rollout.Rollout.Seen):
// 10,000 hosts of 128-byte names take about 1.5 MB.
const maxRecordSize = 16 << 20

// rolloutRecord is what the agent keeps on disk per rollout: the shared
// judgement's observations and this host's part.
type rolloutRecord struct {
	Rollout *rollout.Rollout `json:"rollout"`
	// Patch is the bundle's patch ID and version, for undo.
	Patch   string `json:"patch"`
	Version uint64 `json:"version"`
	Local   local  `json:"local"`
}

// local is this host's state in one rollout.
type local struct {
	State   rollout.HostState `json:"state"`
	Reason  string            `json:"reason,omitempty"`
	Updated time.Time         `json:"updated,omitzero"`
	// Interrupted counts the applies of this rollout that the agent
	// stopping cut short (see rollouts.resumeApply).
	Interrupted int `json:"interrupted,omitempty"`
	// Seq numbers this host's signed reports in the rollout.
	Seq uint64 `json:"seq,omitempty"`
}

// engineDeps are what the rollout engine needs from the agent around it,
// and all it gets of it: the engine holds no *Agent.
type engineDeps struct {
	nodeName string           // this host's node name
	stateDir string           // rollouts, docs and reports live under it
	join     []string         // where the agent joins the cluster at start
	now      func() time.Time // the agent's clock
	log      *slog.Logger
	metrics  *metrics.Metrics
	// refused logs and counts a refused document or report.
	refused func(kind string, err error)
	// trust is the trust policy, as last (re)loaded.
	trust   func() *signing.Policy
	hostKey *hostkey.Key  // signs this host's reports
	pins    *hostkey.Pins // the other hosts' keys
	// bundles are the verified bundles held for distribution.
	bundles bundleHeads
	// eachMember lists the gossip members; broadcast gossips an event.
	eachMember func(func(name, status string, version uint64, tags map[string]string))
	broadcast  func(name string, payload []byte) error
	// peers are the blob services to ask, in random order; client asks
	// them (the engine reads it under its lock).
	peers  func() []string
	client *http.Client
	// host applies and rolls back patches on this host.
	host localHost
	// retention drops bundles on a forget command.
	retention bundleRetention
	// tagsChanged gossips this host's tags again (its reports tag).
	tagsChanged func()
	// onRollout, when set, hears every change of a rollout's state or
	// open stage (Options.OnRollout).
	onRollout func(rollout.Status)
	// spawn runs work in the background that the agent's Close waits for.
	spawn func(func())
}

// bundleHeads are the verified bundles held here, as the engine reads them.
type bundleHeads interface {
	Head(digest string) (*splice.Head, error)
	Has(digest string) bool
}

// localHost applies and rolls back patches on this host (apply.go).
type localHost interface {
	// bundleAndProbe reads a rollout's bundle and records the health
	// baseline for its module.
	bundleAndProbe(ro *rollout.Rollout) (*splice.Bundle, *healthProbe, error)
	// openHost opens the host's lifecycle; step hears its steps.
	openHost(ctx context.Context, window time.Duration, step func(string)) (*splice.Host, error)
	// watching and setWatching say whether a health watch runs for a plan.
	watching(plan string) bool
	setWatching(plan string, on bool)
}

// bundleRetention drops a bundle's copy for a forget command
// (retention.go).
type bundleRetention interface {
	heldEntry(digest string) (splice.Entry, bool, error)
	// forgetAccepted drops or remembers the bundle a verified forget
	// names; the engine holds its lock.
	forgetAccepted(c rollout.Command, e splice.Entry, held bool) error
}

// rollouts follows every accepted plan on this host.
type rollouts struct {
	deps engineDeps
	dir  string // one JSON file per rollout
	docs string // signed plans and commands, served to peers

	mu     sync.Mutex
	recs   map[string]*rolloutRecord // by plan digest
	order  []string                  // acceptance order
	book   *reportBook               // the hosts' signed reports
	status map[string]rollout.Status
	acting map[string]bool      // host actions running, by plan digest
	asked  map[string]time.Time // reports asked for, by plan digest, node and state shown: when
	// rechecked is when a settled rollout that some host still runs after
	// its halt was last judged again, by plan digest.
	rechecked map[string]time.Time
	// mismatched names the members seen showing a key other than their
	// pinned one, logged once.
	mismatched map[string]bool
	rekeys     []string                     // the operators' re-keys stored, by digest
	forgets    []string                     // accepted forget commands, by digest (retention.go)
	orphans    map[string][]rollout.Command // verified commands for plans not yet known
	refused    map[string]time.Time         // documents refused, by digest, when
	// joining, until this agent has joined the cluster since it started,
	// says so: its member list may hold only itself, which is no
	// evidence of a stage passing (see rollout.View.Joining).
	joining string

	hostMu sync.Mutex // one host action at a time
	kick   chan struct{}
	// guardsTaken is closed once the start-up Host handed over the crash-loop
	// guard's verdicts (takeGuardVerdicts).
	guardsTaken chan struct{}

	// members caches each member as the judgement sees it, by name, with
	// the tags it was made from; see cluster.
	members map[string]*cachedMember
	round   uint64
}

// cachedMember is a member converted for the judgement, valid while serf
// holds the same tags map and status for it.
type cachedMember struct {
	version uint64 // gossip's version of the member when converted
	status  string
	m       rollout.Member
	http    string // its blob service address
	// hints are the states its reports tag shows, by report key: what
	// to fetch its signed reports for, never evidence.
	hints map[string]rollout.HostState
	round uint64 // the last cluster round that saw it
}

func openRollouts(deps engineDeps) (*rollouts, error) {
	r := &rollouts{deps: deps, dir: filepath.Join(deps.stateDir, "rollouts"), docs: filepath.Join(deps.stateDir, "docs"),
		recs: map[string]*rolloutRecord{}, mismatched: map[string]bool{}, status: map[string]rollout.Status{},
		acting: map[string]bool{}, asked: map[string]time.Time{}, rechecked: map[string]time.Time{}, orphans: map[string][]rollout.Command{}, refused: map[string]time.Time{}, kick: make(chan struct{}, 1),
		guardsTaken: make(chan struct{}), members: map[string]*cachedMember{}}
	if len(deps.join) > 0 {
		r.joining = "this agent has not joined the cluster since it started (joining " + strings.Join(deps.join, ", ") + ")"
	}
	for _, d := range []string{r.dir, r.docs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || !splice.ValidDigest(strings.TrimSuffix(name, ".json")) {
			continue
		}
		data, err := bounded.ReadFile(filepath.Join(r.dir, name), maxRecordSize)
		if err != nil {
			return nil, fmt.Errorf("rollout state: %w", err)
		}
		var rec rolloutRecord
		if err := json.Unmarshal(data, &rec); err != nil || rec.Rollout == nil || rec.Rollout.Plan == nil {
			return nil, fmt.Errorf("rollout state %s is damaged: %v", name, err)
		}
		r.recs[rec.Rollout.Digest] = &rec
		r.order = append(r.order, rec.Rollout.Digest)
	}
	slices.SortFunc(r.order, func(x, y string) int { return r.recs[x].Rollout.Accepted.Compare(r.recs[y].Rollout.Accepted) })
	if r.book, err = openReportBook(filepath.Join(deps.stateDir, "reports")); err != nil {
		return nil, fmt.Errorf("host reports: %w", err)
	}
	for d := range r.recs {
		r.book.follow(d)
	}
	r.loadOrphans()
	r.loadRekeys()
	return r, nil
}

// save writes one rollout's record; the caller holds r.mu.
func (r *rollouts) save(rec *rolloutRecord) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(r.dir, rec.Rollout.Digest+".json"), data, 0o600)
}

// knowsKey reports whether a plan this agent follows has this key in the
// reports tag (or refused it lately: the pull would be for nothing).
func (r *rollouts) knowsKey(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.order {
		if rollout.ReportKey(d) == key {
			return true
		}
	}
	for d, at := range r.refused {
		if rollout.ReportKey(d) == key && time.Since(at) < refusedFor {
			return true
		}
	}
	return false
}

// refusedLately says a document was refused within refusedFor: it is
// not fetched again yet.
func (r *rollouts) refusedLately(digest string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Since(r.refused[digest]) < refusedFor
}

// refuse remembers that a fetched document was refused.
func (r *rollouts) refuse(digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.refused) > 4096 {
		clear(r.refused)
	}
	r.refused[digest] = time.Now()
}

// forgetRefusals forgets the documents refused: they were judged under a
// trust policy that a reload replaced.
func (r *rollouts) forgetRefusals() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.refused)
}

// joined says the agent joined the cluster: its member list is the
// cluster's from now on, and rollouts are judged on it.
func (r *rollouts) joined() {
	r.mu.Lock()
	r.joinedLocked()
	r.mu.Unlock()
	r.Kick()
}

func (r *rollouts) joinedLocked() {
	if r.joining != "" {
		r.joining = ""
		r.deps.log.Info("joined the cluster since start: judging rollouts")
	}
}

// Kick asks for an evaluation soon.
func (r *rollouts) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// storeDoc keeps a verified document to serve to peers.
func (r *rollouts) storeDoc(d *rollout.Document) error {
	wire, err := d.Encode()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(r.docs, d.Digest()+".json"), wire, 0o600)
}

// Doc reads a stored document's wire form.
func (r *rollouts) Doc(digest string) ([]byte, error) {
	if !splice.ValidDigest(digest) {
		return nil, fs.ErrNotExist
	}
	return bounded.ReadFile(filepath.Join(r.docs, digest+".json"), rollout.MaxDocumentSize)
}

// DocIndexEntry names one stored document for anti-entropy.
type DocIndexEntry struct {
	Kind   string `json:"kind"`
	Digest string `json:"digest"`
}

// docIndex lists the stored documents, plans first, then commands in
// sequence order.
func (r *rollouts) docIndex() []DocIndexEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []DocIndexEntry
	for _, d := range r.order {
		out = append(out, DocIndexEntry{Kind: rollout.KindPlan, Digest: d})
	}
	for _, d := range r.order {
		for _, c := range r.recs[d].Rollout.Commands {
			out = append(out, DocIndexEntry{Kind: rollout.KindCommand, Digest: c.Digest})
		}
	}
	for _, d := range r.rekeys {
		out = append(out, DocIndexEntry{Kind: rollout.KindRekey, Digest: d})
	}
	for _, d := range r.forgets {
		out = append(out, DocIndexEntry{Kind: rollout.KindCommand, Digest: d})
	}
	return out
}

func (r *rollouts) has(digest string) bool {
	_, err := os.Stat(filepath.Join(r.docs, digest+".json"))
	return err == nil
}

// AcceptPlan verifies a plan document and starts following it. The
// plan's bundle must be stored here already (verified): fetch it first.
// It returns the rollout's status.
func (r *rollouts) AcceptPlan(d *rollout.Document) (rollout.Status, error) {
	a := r.deps
	vp, err := rollout.VerifyPlan(d, a.trust(), a.now())
	if err != nil {
		a.refused("plan", err)
		return rollout.Status{}, fmt.Errorf("%w: %w", ErrRolloutRefused, err)
	}
	return r.acceptVerified(vp)
}

// acceptVerified starts following a plan whose signatures were checked.
func (r *rollouts) acceptVerified(vp *rollout.VerifiedPlan) (rollout.Status, error) {
	a, d := r.deps, vp.Doc
	head, err := a.bundles.Head(vp.Plan.Bundle)
	if err != nil {
		return rollout.Status{}, fmt.Errorf("%w: plan %s names bundle %s, which this agent does not hold verified (publish the bundle first): %w",
			ErrRolloutRefused, vp.Plan.ID, vp.Plan.Bundle[:12], err)
	}
	m, err := splice.ParseManifest(head.Manifest)
	if err != nil {
		return rollout.Status{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec, ok := r.recs[vp.Digest]; ok {
		return r.status[rec.Rollout.Digest], nil // already following it
	}
	if !a.bundles.Has(vp.Plan.Bundle) {
		// Dropped (retention, forget) since it was read above: retention
		// holds r.mu while it drops, so this check under it is final.
		return rollout.Status{}, fmt.Errorf("%w: plan %s names bundle %s, which this agent dropped meanwhile: %w",
			ErrRolloutRefused, vp.Plan.ID, vp.Plan.Bundle[:12], splice.ErrNotStored)
	}
	for _, rec := range r.recs {
		if rec.Rollout.Plan.ID == vp.Plan.ID {
			err := fmt.Errorf("%w: rollout id %s is taken by plan %s; a new plan needs a new id",
				ErrRolloutRefused, vp.Plan.ID, rec.Rollout.Digest[:12])
			a.refused("plan", err)
			return rollout.Status{}, err
		}
	}
	if err := r.storeDoc(d); err != nil {
		return rollout.Status{}, err
	}
	// Every member listed now is pinned before the plan's acceptance
	// time: they are the hosts its gates count (see rollout.View.KnownBy).
	r.cluster()
	ro := rollout.New(vp, rollout.KernelTarget{Release: m.Target.Release, Arch: m.Target.Arch, BuildID: m.Target.BuildID}, a.now())
	rec := &rolloutRecord{Rollout: ro, Patch: m.ID, Version: m.Version}
	// Commands that arrived before the plan.
	for _, c := range r.orphans[vp.Digest] {
		_ = ro.AddCommand(c)
	}
	delete(r.orphans, vp.Digest)
	if err := r.save(rec); err != nil {
		// Not followed, so not held either: a later offer is fetched and
		// accepted again.
		_ = os.Remove(filepath.Join(r.docs, vp.Digest+".json"))
		return rollout.Status{}, fmt.Errorf("save the rollout state: %w", err)
	}
	r.recs[vp.Digest] = rec
	r.order = append(r.order, vp.Digest)
	r.book.follow(vp.Digest)
	st := r.evaluateLocked(rec)
	a.log.Info("rollout accepted", "rollout", vp.Plan.ID, "plan", vp.Digest[:12], "bundle", m.ID, "version", m.Version,
		"stages", len(vp.Plan.Stages), "signers", len(vp.Signers))
	r.Kick()
	return st, nil
}

// loadOrphans finds the stored commands whose plan is not followed yet
// (they arrived before it), verified again, at start. A stored plan with
// no rollout record is one whose acceptance a crash cut short (the
// document is written before the record): it is removed, so that the
// plan counts as unknown again and is fetched, with its reports, and
// accepted as if it had never arrived. Kept, it would make the plan look
// held, and this host would never follow it.
func (r *rollouts) loadOrphans() {
	entries, _ := os.ReadDir(r.docs)
	for _, e := range entries {
		path := filepath.Join(r.docs, e.Name())
		data, err := bounded.ReadFile(path, rollout.MaxDocumentSize)
		if err != nil {
			continue
		}
		d, err := rollout.DecodeDocument(data)
		if err == nil && d.Kind == rollout.KindPlan && r.recs[d.Digest()] == nil {
			if err := os.Remove(path); err != nil {
				r.deps.log.Warn("remove a plan stored without its rollout record", "plan", d.Digest()[:12], "err", err)
			} else {
				r.deps.log.Info("removed a plan stored without its rollout record (an acceptance cut short); it is fetched again", "plan", d.Digest()[:12])
			}
			continue
		}
		if err != nil || d.Kind != rollout.KindCommand {
			continue
		}
		vc, err := rollout.VerifyCommand(d, r.deps.trust())
		if err == nil && vc.Action == rollout.ActionForget {
			if len(r.forgets) < maxForgets {
				r.forgets = append(r.forgets, vc.Digest)
			}
			continue
		}
		if err == nil && r.recs[vc.Plan] == nil && len(r.orphans[vc.Plan]) < maxOrphans {
			r.orphans[vc.Plan] = append(r.orphans[vc.Plan], vc.Command)
		}
	}
}

// maxOrphans bounds the commands kept for one plan not yet known.
const maxOrphans = 64

// AcceptCommand verifies an operator command and applies it to its
// rollout. A command for a plan not yet known is kept until the plan
// arrives.
func (r *rollouts) AcceptCommand(d *rollout.Document) (rollout.Status, error) {
	a := r.deps
	vc, err := rollout.VerifyCommand(d, a.trust())
	if err != nil {
		a.refused("command", err)
		return rollout.Status{}, fmt.Errorf("%w: %w", ErrRolloutRefused, err)
	}
	c := vc.Command
	if c.Action == rollout.ActionForget {
		// It names a bundle, not a rollout (retention.go).
		return rollout.Status{}, r.acceptForget(vc)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.recs[c.Plan]
	if !ok {
		if len(r.orphans[c.Plan]) >= maxOrphans || len(r.orphans) >= maxOrphans {
			return rollout.Status{}, fmt.Errorf("%w: plan %s, and too many commands wait for plans already", ErrNoRollout, c.Plan[:12])
		}
		if err := r.storeDoc(d); err != nil {
			return rollout.Status{}, err
		}
		r.orphans[c.Plan] = append(r.orphans[c.Plan], c)
		return rollout.Status{}, fmt.Errorf("%w: plan %s (the command is kept until the plan arrives)", ErrNoRollout, c.Plan[:12])
	}
	if i := slices.IndexFunc(rec.Rollout.Commands, func(x rollout.Command) bool { return x.Digest == c.Digest }); i >= 0 {
		return r.status[c.Plan], fmt.Errorf("%w: %w: this command (seq %d) was already accepted", ErrRolloutRefused, rollout.ErrReplayed, c.Seq)
	}
	// The end of a rollout refuses what it leaves without effect (halt
	// of a done rollout, resume of a halted one), judged as it stands
	// before the command.
	if i := slices.IndexFunc(rec.Rollout.Commands, func(x rollout.Command) bool { return x.Seq == c.Seq }); i >= 0 {
		// A used number is a replay whatever the rollout's state.
		err := fmt.Errorf("%w: %w: seq %d of rollout %s was used by %s", ErrRolloutRefused, rollout.ErrReplayed, c.Seq, rec.Rollout.Plan.ID, rec.Rollout.Commands[i].Action)
		a.refused("command", err)
		return r.status[c.Plan], err
	}
	if err := rollout.CheckCommand(r.evaluateLocked(rec), c.Action); err != nil {
		a.refused("command", err)
		return r.status[c.Plan], fmt.Errorf("%w: %w", ErrRolloutRefused, err)
	}
	// A command that cannot be written is not accepted: the rollout
	// stays as it was, in memory as on disk.
	prev := slices.Clone(rec.Rollout.Commands)
	if err := rec.Rollout.AddCommand(c); err != nil {
		a.refused("command", err)
		return rollout.Status{}, fmt.Errorf("%w: %w", ErrRolloutRefused, err)
	}
	if err := r.storeDoc(d); err != nil {
		rec.Rollout.Commands = prev
		return rollout.Status{}, fmt.Errorf("keep the command: %w", err)
	}
	if err := r.save(rec); err != nil {
		rec.Rollout.Commands = prev
		_ = os.Remove(filepath.Join(r.docs, c.Digest+".json"))
		return rollout.Status{}, fmt.Errorf("save the rollout state: %w", err)
	}
	a.log.Info("operator command accepted", "rollout", rec.Rollout.Plan.ID, "action", c.Action, "seq", c.Seq, "reason", c.Reason)
	st := r.evaluateLocked(rec)
	r.Kick()
	return st, nil
}

// cluster is the gossip view of the members, converted once per
// judgement round and shared by every rollout's view.
type cluster struct {
	members []rollout.Member
	http    []string                       // each member's blob service address
	hints   []map[string]rollout.HostState // each member's reports tag
	self    int                            // index of this host, -1 when serf does not list it
	// peerAlive: another member is alive in the list, which only a join
	// (or a snapshot rejoin) brings.
	peerAlive bool
}

// cluster takes the members from gossip for a judgement round of the
// engine's loop (or an accepted document): it pins the keys members show
// for the first time, and notices the agent joined.
//
// Every agent judges every running rollout over the whole member table
// once per tick, so the conversion is cached: a member whose gossip
// version and status are the ones seen last round is converted again only
// when they change. The caller holds r.mu.
func (r *rollouts) cluster() cluster {
	r.round++
	es := r.walkMembers(r.pin, func(cm *cachedMember) { r.members[cm.m.Name] = cm })
	for _, cm := range es {
		cm.round = r.round
	}
	if len(r.members) > len(es) {
		for name, cm := range r.members {
			if cm.round != r.round {
				delete(r.members, name) // reaped by serf
			}
		}
	}
	if err := r.deps.pins.Flush(); err != nil {
		r.deps.log.Warn("pinned host keys", "err", err)
	}
	c := r.clusterOf(es)
	if c.peerAlive {
		// serf exchanged its full state with a peer (a snapshot rejoin,
		// or a peer joined this host), which is what a join brings.
		r.joinedLocked()
	}
	return c
}

// peekCluster is the members as cluster converts them, for a judgement
// that only reads: it pins no key (a member whose key is not pinned yet
// shows none) and leaves the cache as it is. The caller holds r.mu.
func (r *rollouts) peekCluster() cluster {
	return r.clusterOf(r.walkMembers(r.pinnedSince, nil))
}

// walkMembers lists the gossip members converted for the judgement,
// reusing the cached conversion of each member whose gossip version and
// status are unchanged. A member converted anew gets the time its key
// was pinned from since, and is handed to fresh when that is set. The
// caller holds r.mu.
func (r *rollouts) walkMembers(since func(node, tag string) time.Time, fresh func(*cachedMember)) []*cachedMember {
	es := make([]*cachedMember, 0, len(r.members)+1)
	r.deps.eachMember(func(name, status string, version uint64, tags map[string]string) {
		cm := r.members[name]
		if cm == nil || cm.version != version || cm.status != status {
			cm = &cachedMember{version: version, status: status, m: memberFor(name, status, tags), http: tags[TagHTTP],
				hints: rollout.DecodeReports(tags[rollout.ReportsTag])}
			cm.m.KeySince = since(name, tags[TagHostKey])
			if fresh != nil {
				fresh(cm)
			}
		}
		es = append(es, cm)
	})
	return es
}

// clusterOf orders converted members by name into a cluster.
func (r *rollouts) clusterOf(es []*cachedMember) cluster {
	slices.SortFunc(es, func(a, b *cachedMember) int { return strings.Compare(a.m.Name, b.m.Name) })
	c := cluster{members: make([]rollout.Member, 0, len(es)), http: make([]string, 0, len(es)), hints: make([]map[string]rollout.HostState, 0, len(es)), self: -1}
	for _, e := range es {
		if e.m.Name == r.deps.nodeName {
			c.self = len(c.members)
		}
		c.peerAlive = c.peerAlive || e.m.Name != r.deps.nodeName && e.m.Status == "alive"
		c.members = append(c.members, e.m)
		c.http = append(c.http, e.http)
		c.hints = append(c.hints, e.hints)
	}
	return c
}

// view is one rollout's view of the cluster: the members, and the
// reports their hosts signed. This host's own report comes from its
// local state, which is ahead of what it gossiped. It only reads. The
// caller holds r.mu.
func (r *rollouts) view(rec *rolloutRecord, c cluster) rollout.View {
	d := rec.Rollout.Digest
	pins := r.deps.pins
	joining := r.joining
	if c.peerAlive {
		joining = "" // a reader's view sees the join the loop notes next
	}
	v := rollout.View{Self: r.deps.nodeName, Members: c.members, Joining: joining,
		Reports: r.book.evidence(d, func(node string, key hostkey.PublicKey) bool {
			p, ok := pins.Lookup(node)
			return ok && bytes.Equal(p.Key, key)
		})}
	if rec.Rollout.Accepted.After(pins.Created()) {
		v.KnownBy = rec.Rollout.Accepted
	}
	if rec.Local.State != rollout.StateNone {
		// As its signed report says it, so that every host names the same cause.
		v.Reports[v.Self] = rollout.Evidence{State: rec.Local.State, Reason: publicReason(rec.Local.Reason)}
	} else {
		delete(v.Reports, v.Self)
	}
	if c.self >= 0 && c.members[c.self].Status != "alive" {
		v.Members = slices.Clone(c.members)
		v.Members[c.self].Status = "alive"
	}
	return v
}

// askMissing asks the members whose tags show a state in the rollout
// that the view holds no signed report of for their reports (in the
// background). The caller holds r.mu.
func (r *rollouts) askMissing(rec *rolloutRecord, c cluster, v rollout.View) {
	d := rec.Rollout.Digest
	key := rec.Rollout.Key()
	ended := rec.Rollout.HaltReason != ""
	for i, m := range c.members {
		shown := c.hints[i][key]
		if i == c.self || c.http[i] == "" {
			continue
		}
		if shown == rollout.StateNone {
			// Its tags carry only its last few rollouts. A host this agent
			// still holds running the patch of a rollout that halted for
			// rollback is asked for its word directly: the report that it
			// rolled back may have been lost, and its tags dropped it since.
			if held := v.Reports[m.Name]; ended && rec.Rollout.Rollback && m.Status == "alive" &&
				(held.State == rollout.StateApplying || held.State == rollout.StateHealthy) {
				r.askReports(d, m.Name, c.http[i], rollout.StateRolledBack, false)
			}
			continue
		}
		switch held := v.Reports[m.Name]; {
		case held.State != shown && (shown == rollout.StateHalted || shown == rollout.StateRolledBack):
			// It halted: the failures or commands that halted it are
			// what this agent needs, not its word.
			switch {
			case !ended:
				r.askReports(d, m.Name, c.http[i], shown, true)
			case held.State == rollout.StateApplying || held.State == rollout.StateHealthy:
				// Halted here too, and this agent holds it running the
				// patch: its rolled-back report is what it lacks.
				r.askReports(d, m.Name, c.http[i], shown, false)
			}
		case held.State != shown:
			r.askReports(d, m.Name, c.http[i], shown, false)
		}
	}
}

// memberFor is a member as the rollout judgement sees it, with copies of
// what it needs from the tags.
func memberFor(name, status string, tags map[string]string) rollout.Member {
	user := map[string]string{}
	for k, v := range tags {
		if !strings.HasPrefix(k, "sf.") {
			user[k] = v
		}
	}
	return rollout.Member{Name: name, Status: status, Kernel: tags[TagKernel], Arch: tags[TagArch],
		BuildID: tags[TagBuildID], Tags: user, Simulated: tags[TagSim] == "1", NoLivepatch: tags[TagNoLP] == "1"}
}

// evaluateLocked judges one rollout, persists what changed and asks for
// the reports the judgement lacks. The caller holds r.mu.
func (r *rollouts) evaluateLocked(rec *rolloutRecord) rollout.Status {
	return r.evaluateIn(rec, r.cluster())
}

// evaluateIn is evaluateLocked with the cluster view already taken: the
// judgement, then its side effects (persist, ask, tell).
func (r *rollouts) evaluateIn(rec *rolloutRecord, c cluster) rollout.Status {
	v := r.view(rec, c)
	r.askMissing(rec, c, v)
	st := r.judge(rec.Rollout, v)
	r.persistLocked(rec, st)
	return st
}

// judge decides a rollout's state from its documents (the plan and the
// operators' commands), the hosts' signed reports and the members, at
// the agent's clock. It writes nothing and asks no one: the observations
// it records are in ro, for the caller to persist (rollout.Rollout.Changed).
func (r *rollouts) judge(ro *rollout.Rollout, v rollout.View) rollout.Status {
	return ro.Evaluate(v, r.deps.now())
}

// judgeOnly judges a copy of the rollout over the members as they are
// now, for a reader (the control API): the rollout itself, the disk and
// the peers are left as they are; the engine's loop records and acts on
// the same judgement. The caller holds r.mu.
func (r *rollouts) judgeOnly(rec *rolloutRecord, c cluster) rollout.Status {
	return r.judge(rec.Rollout.Clone(), r.view(rec, c))
}

// persistLocked saves what a judgement recorded and remembers the status,
// telling OnRollout when the state or the open stage changed. The caller
// holds r.mu.
func (r *rollouts) persistLocked(rec *rolloutRecord, st rollout.Status) {
	if rec.Rollout.Changed() {
		if err := r.save(rec); err != nil {
			r.deps.log.Warn("save rollout state", "rollout", rec.Rollout.Plan.ID, "err", err)
		}
	}
	prev, seen := r.status[rec.Rollout.Digest]
	r.status[rec.Rollout.Digest] = st
	if !seen || prev.State != st.State || prev.Open != st.Open {
		// OnRollout runs under r.mu: it must not call back into the agent.
		r.deps.log.Info("rollout", "rollout", st.ID, "state", st.State, "stage", st.Open+1, "why", st.Why)
		if r.deps.onRollout != nil {
			r.deps.onRollout(st)
		}
	}
}

// loop evaluates every rollout when kicked and every tick, and starts the
// host actions the judgement asks for.
func (r *rollouts) loop(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	// Member updates arrive in bursts while a rollout moves; one round
	// per tick is enough (failure reports are judged at once, not here).
	gap := tick
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-t.C:
		}
		r.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
	}
}

// settled says a rollout needs nothing from this host until something
// judges it again (a command, a failure report, a status request): it
// halted or expired and this host's part is over, or it is done and this
// host applied it or is not in it.
func settled(st rollout.Status, l local) bool {
	switch st.State {
	case rollout.Halted, rollout.RolledBack, rollout.Revoked, rollout.Expired:
		return !st.Self.RollBack && (l.State != rollout.StateNone || !st.Self.Targeted) && l.State != rollout.StateApplying
	case rollout.Done:
		return (l.State == rollout.StateHealthy || !st.Self.Targeted) && l.State != rollout.StateApplying
	}
	return false
}

// recheckRollingBack is how often a settled rollout that some host still
// runs after its halt is judged again.
const recheckRollingBack = 5 * time.Second

// step evaluates every rollout once and acts.
func (r *rollouts) step(ctx context.Context) {
	r.mu.Lock()
	var todo []func()
	var c *cluster // taken once, when a rollout needs judging
	for _, d := range r.order {
		rec := r.recs[d]
		if prev, ok := r.status[d]; ok && !r.acting[d] && settled(prev, rec.Local) {
			// A halted rollout that some host still runs, as this agent
			// sees it, is judged again now and then until it rolled back
			// everywhere: judging asks those hosts for their reports.
			if prev.RollingBack == 0 || time.Since(r.rechecked[d]) < recheckRollingBack {
				continue
			}
			r.rechecked[d] = time.Now()
		}
		if c == nil {
			cl := r.cluster()
			c = &cl
		}
		st := r.evaluateIn(rec, *c)
		if r.acting[d] {
			continue
		}
		switch {
		case st.Self.Apply && rec.Local.State == rollout.StateNone:
			r.acting[d] = true
			todo = append(todo, func() { r.apply(ctx, rec) })
		case st.Self.RollBack:
			r.acting[d] = true
			todo = append(todo, func() { r.rollBack(ctx, rec, st) })
		case rollout.Ended(st.State) && rec.Local.State == rollout.StateNone && st.Self.Targeted:
			r.setLocked(rec, rollout.StateHalted, "the rollout halted before this host's stage")
		case rec.Local.State == rollout.StateApplying && !r.deps.host.watching(d):
			// Restarted inside the health window: watch again.
			r.acting[d] = true
			todo = append(todo, func() { r.rewatch(ctx, rec) })
		}
	}
	r.mu.Unlock()
	for _, f := range todo {
		r.deps.spawn(f)
	}
}

// setLocked changes this host's state in a rollout, persists it and
// gossips it at once. The caller holds r.mu.
func (r *rollouts) setLocked(rec *rolloutRecord, s rollout.HostState, reason string) {
	rec.Local = local{State: s, Reason: reason, Updated: r.deps.now().UTC(), Interrupted: rec.Local.Interrupted, Seq: rec.Local.Seq + 1}
	if err := r.save(rec); err != nil {
		r.deps.log.Warn("save rollout state", "rollout", rec.Rollout.Plan.ID, "err", err)
	}
	r.signLocked(rec)
	r.deps.log.Info("host state in rollout", "rollout", rec.Rollout.Plan.ID, "state", s.String(), "reason", reason)
	r.deps.tagsChanged()
}

func (r *rollouts) set(rec *rolloutRecord, s rollout.HostState, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setLocked(rec, s, reason)
}

func (r *rollouts) done(rec *rolloutRecord) {
	r.mu.Lock()
	delete(r.acting, rec.Rollout.Digest)
	r.mu.Unlock()
	r.Kick()
}

// reports is this host's reports tag.
func (r *rollouts) reports() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rs []rollout.Report
	for _, d := range r.order {
		if s := r.recs[d].Local.State; s != rollout.StateNone {
			rs = append(rs, rollout.Report{Plan: d, State: s})
		}
	}
	return rollout.EncodeReports(rs)
}

// Statuses lists the rollouts as this agent judges them now, newest
// last. It only reads (see judgeOnly).
func (r *rollouts) Statuses() []rollout.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]rollout.Status, 0, len(r.order))
	c := r.peekCluster()
	for _, d := range r.order {
		out = append(out, r.judgeOnly(r.recs[d], c))
	}
	return out
}

// find resolves a rollout by plan ID or digest prefix (8+ digits).
func (r *rollouts) find(key string) (*rolloutRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found []*rolloutRecord
	for _, d := range r.order {
		rec := r.recs[d]
		if rec.Rollout.Plan.ID == key || (len(key) >= 8 && strings.HasPrefix(d, key)) {
			found = append(found, rec)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: %s", ErrNoRollout, key)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%q names %d rollouts; use more digits of the plan digest", key, len(found))
}

// Status is one rollout as this agent judges it now. It only reads (see
// judgeOnly).
func (r *rollouts) Status(key string) (rollout.Status, error) {
	rec, err := r.find(key)
	if err != nil {
		return rollout.Status{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.judgeOnly(rec, r.peekCluster()), nil
}
