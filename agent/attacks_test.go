package agent

// Attacks on an agent through the paths a real attacker has: gossip
// events and tags from a rogue member of the encrypted cluster, and the
// blob and document services that member advertises (a rogue peer
// serving bytes). Each test asserts the refusal (with its message where
// there is one), the metric that counts it, and that the agent's state
// did not change: its store, the rollouts it follows and their state, its
// journal and its simulated kernel's livepatches.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"

	"github.com/splicefleet/splicefleet/distrib"

	dto "github.com/prometheus/client_model/go"

	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/hostkey"
	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// rogue is a member of the cluster that holds the gossip key and nothing
// else: it gossips what it likes and serves what it likes on the blob
// service address it advertises in its tags.
type rogue struct {
	t    testing.TB
	node *gossip.Node
	srv  *httptest.Server
	// key is its own host key, shown in its tags as an agent's is.
	key *hostkey.Key

	mu      sync.Mutex
	docs    map[string][]byte           // by digest: what /v1/docs/DIGEST serves
	anyDoc  http.HandlerFunc            // when set, serves every document instead
	heads   map[string]http.HandlerFunc // by manifest digest
	modules map[string]http.HandlerFunc // by module sha256
	served  atomic.Int64                // module bytes written
}

// joinRogue starts a rogue member with the fleet's gossip key and joins
// it to the fleet.
func (f *testFleet) joinRogue(name string, extra ...map[string]string) *rogue {
	t := f.t
	t.Helper()
	keys, err := ReadGossipKeys(f.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	r := &rogue{t: t, docs: map[string][]byte{}, heads: map[string]http.HandlerFunc{}, modules: map[string]http.HandlerFunc{}}
	if r.key, err = hostkey.Generate(nil); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/docs/{digest}", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		d, ok := r.docs[req.PathValue("digest")]
		anyDoc := r.anyDoc
		r.mu.Unlock()
		if anyDoc != nil {
			anyDoc(w, req)
			return
		}
		if !ok {
			http.NotFound(w, req)
			return
		}
		_, _ = w.Write(d)
	})
	// It answers for the reports of any plan as an agent that holds none.
	mux.HandleFunc("GET /v1/reports/{plan}", func(w http.ResponseWriter, req *http.Request) {
		_, _ = w.Write([]byte(`{"reports":[]}`))
	})
	for path, m := range map[string]map[string]http.HandlerFunc{distrib.HeadsPath: r.heads, distrib.ModulesPath: r.modules} {
		mux.HandleFunc("GET "+path+"{digest}", func(w http.ResponseWriter, req *http.Request) {
			r.mu.Lock()
			h, ok := m[req.PathValue("digest")]
			r.mu.Unlock()
			if !ok {
				http.NotFound(w, req)
				return
			}
			h(w, req)
		})
	}
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	r.node, err = gossip.Start(gossip.Config{NodeName: name, BindAddr: "127.0.0.1", Keys: keys, Tuning: f.tuning,
		UserEvents: []string{rollout.ReportEvent, rollout.FailureEvent, rollout.DocEvent, gossip.AnnounceEvent, "sf-junk"},
		Tags:       rogueTags(r, extra...)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.node.Shutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.node.Join(ctx, []string{f.seedAddr}); err != nil {
		t.Fatalf("rogue join: %v", err)
	}
	return r
}

// rogueTags are a rogue's tags: its blob service, ring=canary, its host
// key, and any extra (an agent's kernel tags, to be a targeted host).
func rogueTags(r *rogue, extra ...map[string]string) map[string]string {
	t := map[string]string{TagHTTP: r.addr(), "ring": "canary", TagHostKey: hostkey.Encode(r.key.Public())}
	for _, e := range extra {
		maps.Copy(t, e)
	}
	return t
}

// kernelTags are an agent's kernel tags: a rogue showing them is a host
// every rollout of that kernel targets.
func kernelTags(t testing.TB, a *Agent) map[string]string {
	t.Helper()
	tags, err := a.tags()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{TagKernel: tags[TagKernel], TagArch: tags[TagArch], TagBuildID: tags[TagBuildID]}
}

// addr is the rogue's blob service, host:port.
func (r *rogue) addr() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// offerDoc serves a document's wire form (or any bytes under a digest)
// and announces it in an sf-doc event.
func (r *rogue) offerDoc(kind, digest string, wire []byte) {
	r.t.Helper()
	r.mu.Lock()
	r.docs[digest] = wire
	r.mu.Unlock()
	payload, err := rollout.EncodeDocAnnouncement(rollout.DocAnnouncement{Kind: kind, Digest: digest, Origin: r.addr()})
	if err != nil {
		r.t.Fatal(err)
	}
	r.broadcast(rollout.DocEvent, payload)
}

// offerSigned serves and announces a signed document.
func (r *rogue) offerSigned(d *rollout.Document) {
	r.t.Helper()
	wire, err := d.Encode()
	if err != nil {
		r.t.Fatal(err)
	}
	r.offerDoc(d.Kind, d.Digest(), wire)
}

// serveBundle serves a bundle's head and, through module, its module.
func (r *rogue) serveBundle(b *splice.Bundle, module http.HandlerFunc) string {
	r.t.Helper()
	digest := splice.Digest(b.Manifest)
	// The module is served under the digest the manifest names, or its
	// own when the manifest does not parse (agents refuse its head first).
	module256 := splice.Digest(b.Module)
	if m, err := splice.ParseManifest(b.Manifest); err == nil {
		module256 = m.Module.SHA256
	}
	head := headBytes(r.t, b)
	r.mu.Lock()
	r.heads[digest] = serveBytes(head)
	r.modules[module256] = func(w http.ResponseWriter, req *http.Request) {
		module(countingWriter{w, &r.served}, req)
	}
	r.mu.Unlock()
	return digest
}

// announce gossips a bundle announcement naming the rogue as origin.
func (r *rogue) announce(id string, version uint64, digest string) {
	r.t.Helper()
	if err := r.node.Announce(gossip.Announcement{ID: id, Version: version, ManifestDigest: digest, Size: 1 << 10, Origin: r.addr()}); err != nil {
		r.t.Fatal(err)
	}
}

// report signs a report with the rogue's own key, whatever node it names,
// and gossips it.
func (r *rogue) report(rep rollout.HostReport) []byte {
	r.t.Helper()
	wire, err := rollout.EncodeReport(rep, r.key)
	if err != nil {
		r.t.Fatal(err)
	}
	r.broadcast(rollout.ReportEvent, wire)
	return wire
}

func (r *rogue) broadcast(name string, payload []byte) {
	r.t.Helper()
	if err := r.node.Broadcast(name, payload); err != nil {
		r.t.Fatal(err)
	}
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func (w countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// agentState is what an attack must not change.
type agentState struct {
	Stored   []string // id@version digest
	Rollouts []string // id digest state stage commands
	Journal  []string
	Kernel   []string
}

func stateOf(t testing.TB, a *Agent) agentState {
	t.Helper()
	var s agentState
	entries, err := a.store.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		s.Stored = append(s.Stored, fmt.Sprintf("%s@%d %s", e.ID, e.Version, e.Digest[:12]))
	}
	a.ro.mu.Lock()
	for _, d := range a.ro.order {
		rec := a.ro.recs[d]
		st := a.ro.status[d]
		s.Rollouts = append(s.Rollouts, fmt.Sprintf("%s %s %s stage %d commands %d host %s", rec.Rollout.Plan.ID, d[:12], st.State, st.Open+1,
			len(rec.Rollout.Commands), rec.Local.State))
	}
	a.ro.mu.Unlock()
	if s.Journal, err = splice.LiveSummary(a.cfg.StateDir); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	s.Kernel = kernelState(t, a)
	return s
}

func (s agentState) String() string {
	return fmt.Sprintf("stored %v; rollouts %v; journal %v; kernel %v", s.Stored, s.Rollouts, s.Journal, s.Kernel)
}

// assertUnchanged fails when the agent's state is not before.
func assertUnchanged(t testing.TB, a *Agent, before agentState) {
	t.Helper()
	if after := stateOf(t, a); after.String() != before.String() {
		t.Errorf("the attack changed %s's state:\nbefore: %s\nafter:  %s", a.Name(), before, after)
	}
}

// metricValue reads one sample of the agent's metrics by family name and
// labels (a subset of the sample's); 0 when there is none.
func metricValue(t testing.TB, a *Agent, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := a.Metrics().Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				switch {
				case m.GetCounter() != nil:
					return m.GetCounter().GetValue()
				case m.GetGauge() != nil:
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// waitMetric waits until a metric reaches at least want.
func waitMetric(t *testing.T, a *Agent, want float64, name string, labels ...string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%s%v reaches %g", name, labels, want), func() error {
		if got := metricValue(t, a, name, labels...); got < want {
			return fmt.Errorf("%g", got)
		}
		return nil
	})
}

// logBuffer keeps an agent's log lines for tests to search.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// captureLogs sends the agents started from now on to a buffer as well.
func (f *testFleet) captureLogs() *logBuffer {
	b := &logBuffer{}
	f.options = func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return b
}

// waitLog waits until the agent's log has a line containing every part.
func waitLog(t *testing.T, logs *logBuffer, parts ...string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("a log line with %q", parts), func() error {
		for line := range strings.Lines(logs.String()) {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return nil
			}
		}
		return fmt.Errorf("not logged")
	})
}

// signedBundle builds a bundle for the simulated kernel from a manifest,
// signed by signers.
func signedBundle(t testing.TB, m splice.Manifest, padding int, signers ...*signing.Signer) *splice.Bundle {
	t.Helper()
	if m.Module.Name == "" {
		m.Module.Name = "lp_" + strings.ReplaceAll(m.ID, "-", "_")
	}
	if m.Target.Release == "" {
		m.Target = splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"}
	}
	if len(m.Functions) == 0 {
		m.Functions = []string{"f"}
	}
	if m.Created.IsZero() {
		m.Created = time.Now().Add(-time.Minute)
	}
	mod := fakemodule.Build(fakemodule.Options{Name: m.Module.Name, Livepatch: true, Functions: m.Functions, Padding: padding})
	b, err := splice.New(m, mod)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		sig, err := s.Sign(b.Manifest, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddSignature(sig); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// signPlan signs a plan body with every signer. The test fleets run the
// simulated kernel: a plan that does not say allow_simulated gets it
// added, so its hosts take part.
func signPlan(t testing.TB, body string, signers ...*signing.Signer) *rollout.Document {
	t.Helper()
	body = allowSimulated(body)
	var sigs [][]byte
	for _, s := range signers {
		sig, err := s.Sign([]byte(body), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, sig)
	}
	return rollout.SignPlan([]byte(body), sigs)
}

// allowSimulated adds allow_simulated: true to a plan body that does not
// say whether simulated hosts take part.
func allowSimulated(body string) string {
	if strings.Contains(body, "allow_simulated") {
		return body
	}
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	return body + "allow_simulated: true\n"
}

func newSigner(t testing.TB, who string) *signing.Signer {
	t.Helper()
	s, err := signing.GenerateSigner(who+" <"+strings.ToLower(who)+"@example.com>", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeKeyring writes the signers' public keys as one keyring file.
func writeKeyring(t testing.TB, path string, signers ...*signing.Signer) {
	t.Helper()
	var all []byte
	for _, s := range signers {
		pub, err := s.Public().Armored()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, pub...)
	}
	if err := os.WriteFile(path, all, 0o644); err != nil {
		t.Fatal(err)
	}
}

// serveBytes answers every request with b.
func serveBytes(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(b) }
}

// headBytes is a bundle's head in its wire form.
func headBytes(t testing.TB, b *splice.Bundle) []byte {
	t.Helper()
	raw, err := splice.EncodeHead(&splice.Head{Manifest: b.Manifest, Signatures: b.Signatures})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// endless writes until the client goes away.
func endless(w http.ResponseWriter, r *http.Request) {
	chunk := bytes.Repeat([]byte("A"), 32<<10)
	for r.Context().Err() == nil {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// moduleOf serves a bundle's own module.
func moduleOf(b *splice.Bundle) http.HandlerFunc { return serveBytes(b.Module) }

// planFor is a plan body for a bundle: stage 1 holds (almost) nobody and
// soaks for an hour, so nothing opens stage 2 but an attacker.
func planFor(id, bundle string) string {
	return fmt.Sprintf("id: %s\nbundle: %s\nstages:\n  - percent: 0.01\n    soak: 1h\n  - percent: 100\ngates:\n  health_window: 100ms\n", id, bundle)
}

// heldOutOfStageOne starts an agent that follows a plan of planFor for a
// bundle it published, outside the plan's first stage.
func heldOutOfStageOne(t *testing.T, f *testFleet, a *Agent, id string) (*splice.Verified, rollout.Status) {
	t.Helper()
	if rollout.Bucket(id, a.Name()) < 1 {
		t.Fatalf("%s is in the first stage of %s; pick another id", a.Name(), id)
	}
	v, err := a.Publish(f.bundle(id, 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.StartRollout(f.signedPlan(v.ManifestDigest, planFor(id, "BUNDLE")))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != rollout.Running || st.Open != 0 {
		t.Fatalf("rollout %s: %+v", id, st)
	}
	return v, st
}

// TestAttackRollbackToOlderBundle: a host runs version 2 of a patch; a
// rogue member replays the signed plan and bundle of version 1, which the
// host never saw. The host refuses to go back: the apply is rejected and
// counted, the journal and the kernel still hold version 2.
func TestAttackRollbackToOlderBundle(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	h := f.start(f.config("host"))
	plan := "id: ID\nbundle: BUNDLE\nstages:\n  - percent: 100\ngates:\n  health_window: 100ms\n"
	old := signedBundle(t, splice.Manifest{ID: "rb", Version: 1}, 0, f.signer)
	oldPlan := f.signedPlan(splice.Digest(old.Manifest), strings.ReplaceAll(plan, "ID", "rb-v1"))
	_, st := f.publishWithPlan(h, "rb", 2, plan)
	waitRollout(t, []*Agent{h}, st.Digest, rollout.Done, 30*time.Second)
	eventually(t, 10*time.Second, "version 2 healthy", func() error {
		if s := localState(h, st.Digest); s != rollout.StateHealthy {
			return fmt.Errorf("host state %s", s)
		}
		return nil
	})
	before := stateOf(t, h)
	if !slices.Equal(before.Journal, []string{"rb@2"}) || !slices.Equal(before.Kernel, []string{"lp_rb"}) {
		t.Fatalf("before the attack: %s", before)
	}
	rejected := metricValue(t, h, "splicefleet_applies_total", "result", "rejected")

	r := f.joinRogue("rogue")
	waitMembers(t, []*Agent{h}, 2)
	r.serveBundle(old, moduleOf(old))
	r.offerSigned(oldPlan)

	waitMetric(t, h, rejected+1, "splicefleet_applies_total", "result", "rejected")
	waitLog(t, logs, "rb version 2 is applied; version 1 is older")
	after := stateOf(t, h)
	if !slices.Equal(after.Journal, before.Journal) || !slices.Equal(after.Kernel, before.Kernel) {
		t.Errorf("the host went back: before %s; after %s", before, after)
	}
	if got := metricValue(t, h, "splicefleet_applies_total", "result", "success"); got != 1 {
		t.Errorf("%g successful applies, want the one of version 2", got)
	}
}

// TestAttackReplayedPlan: a rogue member replays another signed plan
// under the id of a rollout the host follows (an earlier draft, say). The
// host refuses it, counts it, and keeps following the plan it had.
func TestAttackReplayedPlan(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	h := f.start(f.config("host"))
	v, _ := heldOutOfStageOne(t, f, h, "replay")
	before := stateOf(t, h)
	r := f.joinRogue("rogue")
	waitMembers(t, []*Agent{h}, 2)

	// The same id, every host at once.
	other := f.signedPlan(v.ManifestDigest, "id: replay\nbundle: BUNDLE\nstages:\n  - percent: 100\n")
	r.offerSigned(other)
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "plan", "reason", "refused")
	waitLog(t, logs, "rollout id replay is taken by plan")
	// The plan the host follows, replayed as is: nothing to do.
	d, err := h.ro.Doc(before.rolloutDigest(t, h))
	if err != nil {
		t.Fatal(err)
	}
	r.offerDoc(rollout.KindPlan, before.rolloutDigest(t, h), d)
	time.Sleep(time.Second)
	assertUnchanged(t, h, before)
}

// rolloutDigest is the digest of the one rollout an agent follows.
func (s agentState) rolloutDigest(t testing.TB, a *Agent) string {
	t.Helper()
	a.ro.mu.Lock()
	defer a.ro.mu.Unlock()
	if len(a.ro.order) != 1 {
		t.Fatalf("%d rollouts followed", len(a.ro.order))
	}
	return a.ro.order[0]
}

// TestAttackExpired: a rogue member offers a signed plan past its expiry
// and a signed bundle past its expiry (freeze attacks): both refused,
// counted, nothing followed or stored.
func TestAttackExpired(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	h := f.start(f.config("host"))
	r := f.joinRogue("rogue")
	waitMembers(t, []*Agent{h}, 2)
	before := stateOf(t, h)

	t.Run("plan", func(t *testing.T) {
		b := signedBundle(t, splice.Manifest{ID: "frozen-plan", Version: 1}, 0, f.signer)
		digest := r.serveBundle(b, moduleOf(b))
		past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		r.offerSigned(f.signedPlan(digest, "id: frozen\nbundle: BUNDLE\nstages:\n  - percent: 100\nexpires: "+past+"\n"))
		waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "plan", "reason", "expired")
		waitLog(t, logs, "plan frozen expired at "+past)
		assertUnchanged(t, h, before)
	})
	t.Run("bundle", func(t *testing.T) {
		expires := time.Now().Add(-time.Hour)
		b := signedBundle(t, splice.Manifest{ID: "frozen-bundle", Version: 1, Created: expires.Add(-time.Hour), Expires: &expires}, 0, f.signer)
		digest := r.serveBundle(b, moduleOf(b))
		r.announce("frozen-bundle", 1, digest)
		waitMetric(t, h, 1, "splicefleet_verification_failures_total", "reason", "expired")
		waitLog(t, logs, "frozen-bundle version 1 expired at")
		assertUnchanged(t, h, before)
		if n := r.served.Load(); n != 0 {
			t.Errorf("the module of an expired bundle was downloaded: %d bytes", n)
		}
	})
}

// TestAttackMixAndMatch: a rogue peer serves a valid, trusted manifest and
// signatures with another module (a valid livepatch module of another
// bundle). The fetch refuses the module, counts the peer as bad and
// stores nothing.
func TestAttackMixAndMatch(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	h := f.start(f.config("host"))
	r := f.joinRogue("rogue")
	waitMembers(t, []*Agent{h}, 2)
	before := stateOf(t, h)

	wanted := signedBundle(t, splice.Manifest{ID: "mix", Version: 1}, 0, f.signer)
	other := signedBundle(t, splice.Manifest{ID: "mix", Version: 1, Module: splice.ModuleRef{Name: "lp_mix"}, Functions: []string{"g"}}, 0, f.signer)
	if len(wanted.Module) != len(other.Module) || bytes.Equal(wanted.Module, other.Module) {
		t.Fatalf("the modules should differ in content only: %d and %d bytes", len(wanted.Module), len(other.Module))
	}
	digest := r.serveBundle(wanted, moduleOf(other))
	r.announce("mix", 1, digest)
	waitMetric(t, h, 1, "splicefleet_fetch_bad_peer_responses_total")
	waitMetric(t, h, 1, "splicefleet_fetch_failures_total", "reason", "unavailable")
	waitLog(t, logs, "module sha256 "+splice.Digest(other.Module))
	assertUnchanged(t, h, before)
	assertNoUnverified(t, h)
}

func assertNoUnverified(t testing.TB, a *Agent) {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(a.store.Dir(), "*", "*"+splice.UnverifiedSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("downloads left behind: %v", left)
	}
}

// TestAttackEndlessDownload: rogue peers stream forever, or announce more
// bytes than the signed manifest says. Each download stops at the
// manifest's size (the head at its limit), is refused, and the peer is
// counted as bad.
func TestAttackEndlessDownload(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	h := f.start(f.config("host"))
	r := f.joinRogue("rogue")
	waitMembers(t, []*Agent{h}, 2)
	before := stateOf(t, h)

	for i, tc := range []struct {
		name   string
		head   bool
		serve  func(b *splice.Bundle) http.HandlerFunc
		logged string
	}{
		{"endless module", false, func(*splice.Bundle) http.HandlerFunc { return endless }, "module longer than the"},
		{"module longer than its content length", false, func(b *splice.Bundle) http.HandlerFunc {
			return func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(b.Module)+1<<20))
				_, _ = w.Write(b.Module)
				_, _ = w.Write(make([]byte, 1<<20))
			}
		}, "manifest says"},
		{"endless head", true, nil, "head longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("endless-%d", i)
			b := signedBundle(t, splice.Manifest{ID: id, Version: 1}, 0, f.signer)
			var digest string
			if tc.head {
				digest = splice.Digest(b.Manifest)
				r.mu.Lock()
				r.heads[digest] = endless
				r.mu.Unlock()
			} else {
				digest = r.serveBundle(b, tc.serve(b))
			}
			bad := metricValue(t, h, "splicefleet_fetch_bad_peer_responses_total")
			start := time.Now()
			r.announce(id, 1, digest)
			waitMetric(t, h, bad+1, "splicefleet_fetch_bad_peer_responses_total")
			waitLog(t, logs, tc.logged)
			t.Logf("refused %s after %s", tc.name, time.Since(start).Round(time.Millisecond))
			limit := float64(len(b.Module) + 1 + 2*splice.MaxHeadSize)
			if got := metricValue(t, h, "splicefleet_fetched_bytes_total", "source", "origin"); got > float64(i+1)*limit {
				t.Errorf("%g bytes read from the rogue, bound %g", got, float64(i+1)*limit)
			}
			assertUnchanged(t, h, before)
			assertNoUnverified(t, h)
		})
	}
}

// TestAttackKeyRotatedOut: the trust policy is reloaded without a key
// (rotated out, or revoked by removal). A bundle and a plan signed by it,
// accepted before, are refused after, and counted.
func TestAttackKeyRotatedOut(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	retired := newSigner(t, "Retired")
	cfg := f.config("host")
	cfg.Keyring = filepath.Join(f.dir, "both.asc")
	writeKeyring(t, cfg.Keyring, f.signer, retired)
	h := f.start(cfg)
	r := f.joinRogue("rogue")
	waitMembers(t, []*Agent{h}, 2)

	// Trusted while in the keyring.
	b1 := signedBundle(t, splice.Manifest{ID: "retired-before", Version: 1}, 0, retired)
	r.announce("retired-before", 1, r.serveBundle(b1, moduleOf(b1)))
	eventually(t, 30*time.Second, "the bundle signed by the key is accepted", func() error {
		if !h.store.Has(splice.Digest(b1.Manifest)) {
			return fmt.Errorf("not stored")
		}
		return nil
	})

	cfg.Keyring = f.keyring // the fleet's key only
	if err := h.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, h)
	b2 := signedBundle(t, splice.Manifest{ID: "retired-after", Version: 1}, 0, retired)
	r.announce("retired-after", 1, r.serveBundle(b2, moduleOf(b2)))
	waitMetric(t, h, 1, "splicefleet_verification_failures_total", "reason", "signature")
	waitLog(t, logs, "signer is not a trusted key")
	// A plan signed by it, for a bundle the host holds.
	r.offerSigned(signPlan(t, "id: retired\nbundle: "+splice.Digest(b1.Manifest)+"\nstages:\n  - percent: 100\n", retired))
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "plan", "reason", "signature")
	assertUnchanged(t, h, before)
}

// TestAttackBelowThreshold: with a threshold of two keys, a bundle and a
// plan signed by one trusted key are refused and counted.
func TestAttackBelowThreshold(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	second := newSigner(t, "Second")
	cfg := f.config("host")
	cfg.Keyring = filepath.Join(f.dir, "two.asc")
	cfg.Threshold = 2
	writeKeyring(t, cfg.Keyring, f.signer, second)
	h := f.start(cfg)
	r := f.joinRogue("rogue")
	waitMembers(t, []*Agent{h}, 2)
	// A bundle with both signatures is held; a plan for it will be offered.
	both := signedBundle(t, splice.Manifest{ID: "two", Version: 1}, 0, f.signer, second)
	raw, err := both.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(raw); err != nil {
		t.Fatalf("a bundle with two signatures: %v", err)
	}
	before := stateOf(t, h)

	one := signedBundle(t, splice.Manifest{ID: "one", Version: 1}, 0, f.signer)
	r.announce("one", 1, r.serveBundle(one, moduleOf(one)))
	waitMetric(t, h, 1, "splicefleet_verification_failures_total", "reason", "signature")
	waitLog(t, logs, "1 of 2 required signatures valid")
	r.offerSigned(signPlan(t, "id: two\nbundle: "+splice.Digest(both.Manifest)+"\nstages:\n  - percent: 100\n", f.signer))
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "plan", "reason", "signature")
	// The same key twice still counts once.
	r.offerSigned(signPlan(t, "id: twice\nbundle: "+splice.Digest(both.Manifest)+"\nstages:\n  - percent: 100\n", f.signer, f.signer))
	waitMetric(t, h, 2, "splicefleet_rollout_documents_refused_total", "kind", "plan", "reason", "signature")
	assertUnchanged(t, h, before)
}

// TestAttackAmbiguousKeys: with a threshold of two keys, a bundle, a plan
// and an operator command, each signed by both trusted keys, carry a key
// twice in two cases ({"id":"cmdline","ID":"evil-id"}): jq shows the
// first, encoding/json would take the second. Each is refused, the log
// names the key, each is counted as duplicate_key, and nothing changes.
func TestAttackAmbiguousKeys(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	second := newSigner(t, "Second")
	cfg := f.config("host")
	cfg.Keyring = filepath.Join(f.dir, "two.asc")
	cfg.Threshold = 2
	writeKeyring(t, cfg.Keyring, f.signer, second)
	h := f.start(cfg)
	r := f.joinRogue("rogue")
	waitMembers(t, []*Agent{h}, 2)

	// A rollout the host follows, held out of its first stage, for the
	// commands to aim at.
	id := "ambiguous"
	for i := 0; rollout.Bucket(id, h.Name()) < 1; i++ {
		id = fmt.Sprintf("ambiguous-%d", i)
	}
	held := signedBundle(t, splice.Manifest{ID: id, Version: 1}, 0, f.signer, second)
	raw, err := held.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(raw); err != nil {
		t.Fatal(err)
	}
	st, err := h.StartRollout(signPlan(t, planFor(id, splice.Digest(held.Manifest)), f.signer, second))
	if err != nil || st.State != rollout.Running || st.Open != 0 {
		t.Fatalf("rollout %s: %+v, %v", id, st, err)
	}
	before := stateOf(t, h)

	// The bundle: its manifest names the id twice, and both keys sign it.
	b := signedBundle(t, splice.Manifest{ID: "cmdline", Version: 1}, 0)
	b.Manifest = bytes.Replace(b.Manifest, []byte(`"id": "cmdline",`), []byte(`"id": "cmdline", "ID": "evil-id",`), 1)
	for _, s := range []*signing.Signer{f.signer, second} {
		sig, err := s.Sign(b.Manifest, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddSignature(sig); err != nil {
			t.Fatal(err)
		}
	}
	r.announce("cmdline", 1, r.serveBundle(b, moduleOf(b)))
	waitMetric(t, h, 1, "splicefleet_verification_failures_total", "reason", "duplicate_key")
	waitLog(t, logs, `duplicate key \"ID\" in the object at $: it differs from \"id\" only in case`)

	// The plan, as JSON, signed by both.
	plan := `{"id":"cmdline","ID":"evil-id","bundle":"` + splice.Digest(held.Manifest) + `","stages":[{"percent":100}]}`
	r.offerSigned(signPlan(t, plan, f.signer, second))
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "plan", "reason", "duplicate_key")

	// The command: "action" says pause, "Action" says revoke.
	cmd := []byte(`{"plan":"` + st.Digest + `","seq":1,"action":"pause","Action":"revoke","issued":"` + time.Now().UTC().Format(time.RFC3339) + `"}`)
	var sigs [][]byte
	for _, s := range []*signing.Signer{f.signer, second} {
		sig, err := s.Sign(cmd, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, sig)
	}
	doc := &rollout.Document{Kind: rollout.KindCommand, Body: cmd, Signatures: sigs}
	r.offerSigned(doc)
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "command", "reason", "duplicate_key")
	waitLog(t, logs, `duplicate key \"Action\"`)
	// Posted to the control API, the same command is refused with the
	// reason, and counted again.
	if _, err := h.Command(doc); !errors.Is(err, rollout.ErrDuplicateKey) {
		t.Fatalf("Command: %v", err)
	}
	waitMetric(t, h, 2, "splicefleet_rollout_documents_refused_total", "kind", "command", "reason", "duplicate_key")
	assertUnchanged(t, h, before)
	if got, err := h.Rollout(id); err != nil || got.State != rollout.Running {
		t.Fatalf("rollout after the ambiguous command: %+v, %v", got, err)
	}
}

// TestAttackForgedAnnouncements: announcements of a digest nobody holds,
// and payloads that do not decode, are counted; nothing is stored. (An
// announcement of a bundle signed by an untrusted key is
// TestUntrustedAnnouncementIsNeverDownloaded and
// TestAttackMemberWithoutSigningKey.)
func TestAttackForgedAnnouncements(t *testing.T) {
	f := newTestFleet(t)
	h := f.start(f.config("host"))
	r := f.joinRogue("rogue")
	waitMembers(t, []*Agent{h}, 2)
	before := stateOf(t, h)

	nobody := splice.Digest([]byte("held by nobody"))
	r.announce("ghost", 1, nobody)
	waitMetric(t, h, 1, "splicefleet_fetch_failures_total", "reason", "unavailable")
	r.broadcast(gossip.AnnounceEvent, []byte("\x01not an announcement"))
	eventually(t, 30*time.Second, "the bad announcement counted", func() error {
		var sum float64
		for _, reason := range []string{"malformed", "protocol"} {
			sum += metricValue(t, h, "splicefleet_gossip_bad_announcements_total", "reason", reason)
		}
		if sum < 1 {
			return fmt.Errorf("none counted")
		}
		return nil
	})
	assertUnchanged(t, h, before)
}

// TestAttackForgedCommands: a rogue member offers operator commands for a
// rollout the host follows: signed by an untrusted key, unsigned, and
// announced in payloads that do not decode. Each is refused and counted;
// the rollout does not move.
func TestAttackForgedCommands(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	h := f.start(f.config("host"))
	_, st := heldOutOfStageOne(t, f, h, "forged")
	r := f.joinRogue("rogue")
	waitMembers(t, []*Agent{h}, 2)
	before := stateOf(t, h)
	stranger := newSigner(t, "Stranger")

	promote := rollout.Command{Plan: st.Digest, Seq: 1, Action: rollout.ActionPromote, Stage: 1}
	r.offerSigned(f.command(stranger, promote))
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "command", "reason", "signature")
	waitLog(t, logs, "signer is not a trusted key")

	// Unsigned: the body of a promote and no signatures.
	body, err := rollout.EncodeCommand(rollout.Command{Plan: st.Digest, Seq: 2, Action: rollout.ActionPromote, Stage: 1, Issued: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	unsigned, err := json.Marshal(map[string]any{"kind": rollout.KindCommand, "body": body, "signatures": [][]byte{}})
	if err != nil {
		t.Fatal(err)
	}
	r.offerDoc(rollout.KindCommand, (&rollout.Document{Body: body}).Digest(), unsigned)
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "command", "reason", "invalid")
	waitLog(t, logs, "unsigned")

	r.broadcast(rollout.DocEvent, []byte{1, 7, 0})
	waitMetric(t, h, 1, "splicefleet_rollout_bad_events_total", "event", rollout.DocEvent)
	// An announcement whose origin is not host:port is refused before
	// anything is fetched from it.
	bad, err := rollout.EncodeDocAnnouncement(rollout.DocAnnouncement{Kind: rollout.KindCommand, Digest: st.Digest, Origin: "not an address"})
	if err != nil {
		t.Fatal(err)
	}
	r.broadcast(rollout.DocEvent, bad)
	waitMetric(t, h, 2, "splicefleet_rollout_bad_events_total", "event", rollout.DocEvent)
	waitLog(t, logs, "is not host:port")
	time.Sleep(time.Second)
	assertUnchanged(t, h, before)
}

// TestAttackForgedHostReports: a rogue member holding the gossip key
// sends host reports: unsigned (the failure event of earlier releases),
// signed by its own key but naming another host, with a broken
// signature, and for a plan nobody follows. Each is refused and counted
// by reason; the rollout does not move and the kernel does not change.
// Its own signed failure, outside the open stage, does not halt either.
func TestAttackForgedHostReports(t *testing.T) {
	f := newTestFleet(t)
	h := f.start(f.config("host"))
	_, st := heldOutOfStageOne(t, f, h, "reports")
	r := f.joinRogue("rogue", kernelTags(t, h))
	waitMembers(t, []*Agent{h}, 2)
	before := stateOf(t, h)

	unsigned := append([]byte{1}, make([]byte, 40)...)
	r.broadcast(rollout.FailureEvent, unsigned)
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "report", "reason", "unsigned")

	// About another host: the host itself, and a host nobody knows.
	r.report(rollout.HostReport{Plan: st.Digest, Node: h.Name(), State: rollout.StateFailed, Seq: 9, Reason: "made up"})
	r.report(rollout.HostReport{Plan: st.Digest, Node: "ghost", State: rollout.StateFailed, Seq: 9, Reason: "made up"})
	// The host's own report is its local state; the ghost has no pinned key.
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "report", "reason", "key")

	wire, err := rollout.EncodeReport(rollout.HostReport{Plan: st.Digest, Node: "rogue", State: rollout.StateFailed, Seq: 1, Reason: "x"}, r.key)
	if err != nil {
		t.Fatal(err)
	}
	wire[len(wire)-1] ^= 1
	r.broadcast(rollout.ReportEvent, wire)
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "report", "reason", "signature")

	r.report(rollout.HostReport{Plan: splice.Digest([]byte("no such plan")), Node: "rogue", State: rollout.StateFailed, Seq: 1, Reason: "x"})
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "report", "reason", "refused")

	// Its own failure, signed, while its stage is closed (it is tagged
	// ring=canary, which this plan has no stage for).
	r.report(rollout.HostReport{Plan: st.Digest, Node: "rogue", State: rollout.StateFailed, Seq: 2, Reason: "made up"})
	eventually(t, 30*time.Second, "the rogue's own report is held", func() error {
		h.ro.mu.Lock()
		defer h.ro.mu.Unlock()
		if held := h.ro.book.plans[st.Digest]["rogue"]; held == nil || held.latest.Seq != 2 {
			return fmt.Errorf("held %+v", held)
		}
		return nil
	})
	time.Sleep(time.Second) // ten judgement ticks
	after := stateOf(t, h)
	s, err := h.Rollout(st.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != rollout.Running || s.Open != 0 || s.Self.Apply || len(after.Kernel) != 0 || len(after.Journal) != 0 || len(s.Failed) != 0 {
		t.Errorf("forged reports moved the rollout: %+v; %s", s, after)
	}
	if len(s.Regressed) != 1 || !strings.Contains(s.Regressed[0], "rogue") {
		t.Errorf("the rogue's failure outside the open stages is not shown apart: %v", s.Regressed)
	}
	if got := metricValue(t, h, "splicefleet_applies_total", "result", "success"); got != 0 {
		t.Errorf("%g applies", got)
	}
	if !slices.Equal(after.Stored, before.Stored) {
		t.Errorf("store changed: %v, was %v", after.Stored, before.Stored)
	}
	t.Logf("after forged reports the rollout is %s: %s", s.State, s.Why)
}

// TestAttackEventFlood: a rogue member floods the cluster with thousands
// of user events that do not decode, failure reports for made-up plans,
// and announcements of bundles and documents nobody holds. The agent
// stays responsive, its queues and memory stay bounded, and the
// counters count.
func TestAttackEventFlood(t *testing.T) {
	f := newTestFleet(t)
	h := f.start(f.config("host"))
	r := f.joinRogue("rogue")
	waitMembers(t, []*Agent{h}, 2)
	before := stateOf(t, h)
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()

	const n = 2000
	done := make(chan struct{})
	var maxGoroutines, maxInflight, maxDocs atomic.Int64
	go func() {
		defer close(done)
		junk := make([]byte, 64)
		for i := range n {
			_, _ = rand.Read(junk)
			_ = r.node.Broadcast(rollout.FailureEvent, junk)
			_ = r.node.Broadcast(rollout.DocEvent, junk[:i%40])
			_ = r.node.Broadcast("sf-junk", junk)
			plan := splice.Digest(junk)
			if p, err := rollout.EncodeReport(rollout.HostReport{Plan: plan, Node: "n" + strconv.Itoa(i), State: rollout.StateFailed, Reason: "x"}, r.key); err == nil {
				_ = r.node.Broadcast(rollout.ReportEvent, p)
			}
			if p, err := rollout.EncodeDocAnnouncement(rollout.DocAnnouncement{Kind: rollout.KindPlan, Digest: plan, Origin: r.addr()}); err == nil {
				_ = r.node.Broadcast(rollout.DocEvent, p)
			}
			_ = r.node.Announce(gossip.Announcement{ID: "flood", Version: uint64(i + 1), ManifestDigest: plan, Size: 1, Origin: r.addr()})
			if i%20 == 0 {
				// Paced so that gossip carries most of it: a burst
				// is mostly pruned from the sender's own queue.
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	client := &http.Client{Timeout: testutil.Within(2 * time.Second)}
	ctl := NewControlClient(h.cfg.ControlSocket)
	for flooding := true; flooding; {
		select {
		case <-done:
			flooding = false
		case <-time.After(200 * time.Millisecond):
		}
		maxGoroutines.Store(max(maxGoroutines.Load(), int64(runtime.NumGoroutine())))
		announced, pulled := h.bundleQ.counts()
		maxInflight.Store(max(maxInflight.Load(), int64(max(announced, pulled))))
		announced, pulled = h.docQ.counts()
		maxDocs.Store(max(maxDocs.Load(), int64(max(announced, pulled))))
		start := time.Now()
		resp, err := client.Get("http://" + h.HTTPAddr() + "/healthz")
		if err != nil {
			t.Fatalf("healthz during the flood: %v", err)
		}
		resp.Body.Close()
		var sts []rollout.Status
		if err := ctl.Do(http.MethodGet, "/v1/rollouts", nil, &sts); err != nil {
			t.Fatalf("control API during the flood: %v", err)
		}
		if d := time.Since(start); d > testutil.Within(time.Second) {
			t.Errorf("the agent took %s to answer during the flood", d)
		}
	}
	waitMetric(t, h, 50, "splicefleet_rollout_documents_refused_total", "kind", "report", "reason", "unsigned")
	waitMetric(t, h, 50, "splicefleet_rollout_documents_refused_total", "kind", "report", "reason", "key")
	waitMetric(t, h, 50, "splicefleet_rollout_bad_events_total", "event", rollout.DocEvent)
	waitMetric(t, h, 50, "splicefleet_gossip_events_received_total")
	st := h.node.Stats()
	t.Logf("gossip: %d events received, %d announcements, %d other user events, %d dropped; at most %d goroutines (%d before), %d bundle and %d document fetches in flight",
		st.EventsReceived, st.AnnouncementsReceived, st.OtherUserEvents, st.EventsDropped, maxGoroutines.Load(), g0, maxInflight.Load(), maxDocs.Load())
	if st.OtherUserEvents == 0 {
		t.Errorf("unknown user events not counted: %+v", st)
	}
	h.ro.mu.Lock()
	plans := len(h.ro.book.plans)
	h.ro.mu.Unlock()
	if plans > 0 {
		t.Errorf("reports kept for %d plans nobody follows", plans)
	}
	if got := maxInflight.Load(); got > maxFetchesQueued {
		t.Errorf("%d bundle fetches queued at once, bound %d", got, maxFetchesQueued)
	}
	if got := maxDocs.Load(); got > maxFetchesQueued {
		t.Errorf("%d document fetches queued at once, bound %d", got, maxFetchesQueued)
	}
	// Each queued fetch, bundle or document, may hold its own goroutine,
	// the HTTP client's two per connection and the rogue server's one:
	// bounded by the queues, not by the thousands of events.
	if got := maxGoroutines.Load(); got > int64(g0)+2*4*maxFetchesQueued+200 {
		t.Errorf("%d goroutines during the flood, %d before", got, g0)
	}
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	if grown := int64(m1.HeapAlloc) - int64(m0.HeapAlloc); grown > 256<<20 {
		t.Errorf("heap grew by %d MiB", grown>>20)
	}
	assertUnchanged(t, h, before)
}

// TestAttackMemberWithoutSigningKey: a member with the gossip key and a
// signing key of its own, which no host trusts, joins and gossips: it
// publishes a bundle, a plan for it, a plan for a bundle the host holds
// and a promote. It is a member; it gets nothing stored, followed or
// applied.
func TestAttackMemberWithoutSigningKey(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	h := f.start(f.config("host"))
	_, st := heldOutOfStageOne(t, f, h, "member")
	r := f.joinRogue("mallory")
	waitMembers(t, []*Agent{h}, 2)
	before := stateOf(t, h)
	mallory := newSigner(t, "Mallory")

	b := signedBundle(t, splice.Manifest{ID: "mallory", Version: 1}, 0, mallory)
	digest := r.serveBundle(b, moduleOf(b))
	r.announce("mallory", 1, digest)
	waitMetric(t, h, 1, "splicefleet_verification_failures_total", "reason", "signature")
	r.offerSigned(signPlan(t, "id: mallory\nbundle: "+digest+"\nstages:\n  - percent: 100\n", mallory))
	held, err := h.store.List()
	if err != nil || len(held) != 1 {
		t.Fatalf("store: %v %v", held, err)
	}
	r.offerSigned(signPlan(t, "id: mallory-2\nbundle: "+held[0].Digest+"\nstages:\n  - percent: 100\n", mallory))
	waitMetric(t, h, 2, "splicefleet_rollout_documents_refused_total", "kind", "plan", "reason", "signature")
	r.offerSigned(f.command(mallory, rollout.Command{Plan: st.Digest, Seq: 1, Action: rollout.ActionPromote, Stage: 1}))
	waitMetric(t, h, 1, "splicefleet_rollout_documents_refused_total", "kind", "command", "reason", "signature")
	waitLog(t, logs, "signer is not a trusted key")
	if n := r.served.Load(); n != 0 {
		t.Errorf("the module of an untrusted bundle was downloaded: %d bytes", n)
	}
	time.Sleep(time.Second)
	assertUnchanged(t, h, before)
}
