package agent

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/distrib"

	"github.com/splicefleet/splicefleet/internal/testutil"
	"github.com/splicefleet/splicefleet/rollout"
)

// countingTransport counts the requests that go through it.
// countingTransport counts the requests to peers while on is set, but
// for the listings anti-entropy asks for on its own timer (GET /v1/index
// and /v1/docs).
type countingTransport struct {
	base http.RoundTripper
	n    *atomic.Int64
	on   *atomic.Bool
}

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.on.Load() && req.URL.Path != "/v1/index" && req.URL.Path != "/v1/docs" {
		c.n.Add(1)
	}
	return c.base.RoundTrip(req)
}

// treeState is every file under a folder, by path: its size, mode and
// contents' digest.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		state := info.Mode().String()
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			state += fmt.Sprintf(" %d %x %s", len(data), sha256.Sum256(data), info.ModTime().Format(time.RFC3339Nano))
		}
		out[p] = state
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// changedFiles names the paths whose state differs between two trees.
func changedFiles(before, after map[string]string) []string {
	var out []string
	for p, s := range after {
		if before[p] != s {
			out = append(out, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// TestRolloutStatusOnlyReads: GET /v1/rollouts and GET /v1/rollouts/KEY
// (what `splicefleet rollout status` asks) judge the rollouts without
// writing to the state directory or asking a peer, even when the
// judgement has something to record and a member's tags show a state
// this agent holds no signed report of. The engine's own round, given
// the same rollout, records and asks: the situation is one that has side
// effects, and the read leaves them to the engine.
func TestRolloutStatusOnlyReads(t *testing.T) {
	f := newTestFleet(t)
	// a's requests to peers are counted once counting is on, after the
	// rollout settled: the client is a's from the start, as the engine
	// and the fetcher share it.
	var asked atomic.Int64
	var counting atomic.Bool
	client := distrib.DefaultFetchClient()
	client.Transport = countingTransport{base: client.Transport, n: &asked, on: &counting}
	f.options = func(o *Options) {
		if o.Config.NodeName == "a" {
			o.peerClient = client
		}
	}
	a := f.start(f.config("a"))
	f.options = nil
	b := f.start(f.config("b"))
	waitMembers(t, []*Agent{a, b}, 2)
	_, st := f.publishWithPlan(a, "readonly", 1, "id: ID\nbundle: BUNDLE\nstages:\n  - percent: 100\ngates:\n  health_window: 100ms\n")
	waitRollout(t, []*Agent{a, b}, st.Digest, rollout.Done, 60*time.Second)
	// The engine of a settled: b's healthy report held, its own part
	// over, the rollout done as it last judged it.
	testutil.Eventually(t, 30*time.Second, "a holds b's healthy report and settled", func() error {
		a.ro.mu.Lock()
		defer a.ro.mu.Unlock()
		held := a.ro.book.plans[st.Digest]["b"]
		if held == nil || held.latest.State != rollout.StateHealthy {
			return errors.New("no healthy report of b")
		}
		rec := a.ro.recs[st.Digest]
		if s, ok := a.ro.status[st.Digest]; !ok || !settled(s, rec.Local) || a.ro.acting[st.Digest] {
			return fmt.Errorf("not settled: %+v, local %s", s.State, rec.Local.State)
		}
		return nil
	})

	// What a judgement records and asks for: b dropped from the hosts a
	// saw, and b's reports from what a holds (its tags still show it
	// healthy). The engine's requests to peers are counted. On a busy
	// machine b's report may still be on its way by gossip and land
	// inside the window: that round proves nothing about the reads, and
	// is tried again.
	a.ro.mu.Lock()
	rec := a.ro.recs[st.Digest]
	a.ro.mu.Unlock()
	counting.Store(true)
	var before map[string]string
	for round := 1; ; round++ {
		a.ro.mu.Lock()
		delete(rec.Rollout.Seen, "b")
		delete(a.ro.book.plans[st.Digest], "b")
		a.ro.mu.Unlock()
		before = treeState(t, a.cfg.StateDir)
		readRollouts(t, a, "readonly", st.Digest)
		// A request it started would be under way by now.
		time.Sleep(testutil.Within(500 * time.Millisecond))
		a.ro.mu.Lock()
		_, seen := rec.Rollout.Seen["b"]
		_, gossiped := a.ro.book.plans[st.Digest]["b"]
		a.ro.mu.Unlock()
		if n := asked.Load(); n != 0 {
			t.Fatalf("GET of the rollouts made %d requests to peers", n)
		}
		if gossiped && round < 5 {
			t.Logf("round %d: b's report arrived by gossip during the reads; again", round)
			continue
		}
		if changed := changedFiles(before, treeState(t, a.cfg.StateDir)); len(changed) > 0 {
			t.Errorf("GET of the rollouts changed the state directory: %v", changed)
		}
		if seen {
			t.Error("GET of the rollouts recorded an observation in the rollout itself")
		}
		if gossiped {
			t.Errorf("b's report came back during each of %d rounds of reads, with no request to b", round)
		}
		break
	}

	// The engine's round over the same rollout records what it saw and
	// asks b for its report.
	a.ro.mu.Lock()
	a.ro.evaluateIn(rec, a.ro.cluster())
	a.ro.mu.Unlock()
	testutil.Eventually(t, 10*time.Second, "the engine asks b for its report", func() error {
		if asked.Load() == 0 {
			return errors.New("no request")
		}
		return nil
	})
	if changed := changedFiles(before, treeState(t, a.cfg.StateDir)); !slices.Contains(changed, filepath.Join(a.cfg.StateDir, "rollouts", st.Digest+".json")) {
		t.Errorf("the engine's round did not save the rollout it judged; changed: %v", changed)
	}
}

// readRollouts asks a's control API what `splicefleet rollout status`
// asks: every rollout, one by id, one by digest prefix.
func readRollouts(t *testing.T, a *Agent, id, digest string) {
	t.Helper()
	h := a.controlHandler()
	for _, path := range []string{"/v1/rollouts", "/v1/rollouts/" + id, "/v1/rollouts/" + digest[:12]} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
	}
}
