package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// waitFor is generous: the machine is shared and -race slows gossip down.
const waitFor = 30 * time.Second

// eventually calls f until it returns nil, or fails the test after
// waitFor, stretched by the machine's factor (testutil.Within).
func eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	testutil.Eventually(t, waitFor, what, f)
}

func testLogger(t testing.TB) *slog.Logger {
	return testutil.Logger(t, slog.LevelWarn)
}

func testKey(t testing.TB) []byte {
	t.Helper()
	s, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := DecodeKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testConfig(t testing.TB, name string, keys ...[]byte) Config {
	return Config{
		NodeName:     name,
		BindAddr:     "127.0.0.1",
		Keys:         keys,
		Tuning:       FastTuning(),
		QueryTimeout: 3 * time.Second,
		Logger:       testLogger(t).With("node", name),
	}
}

// recorder drains a node's events so the test can inspect them.
type recorder struct {
	node *Node
	mu   sync.Mutex
	evs  []Event
	done chan struct{}
}

// startNode starts a node that is shut down and drained when the test ends.
func startNode(t testing.TB, cfg Config) (*Node, *recorder) {
	t.Helper()
	n, err := Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.NodeName, err)
	}
	r := &recorder{node: n, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ev := range n.Events() {
			r.mu.Lock()
			r.evs = append(r.evs, ev)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if err := n.Shutdown(); err != nil {
			t.Errorf("shutdown %s: %v", cfg.NodeName, err)
		}
		<-r.done
	})
	return n, r
}

func (r *recorder) announcements() []Announcement {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Announcement
	for _, ev := range r.evs {
		if ev.Kind == Announce {
			out = append(out, *ev.Announcement)
		}
	}
	return out
}

func (r *recorder) saw(kind EventKind, member string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.evs, func(ev Event) bool {
		return ev.Kind == kind && ev.Member != nil && ev.Member.Name == member
	})
}

// cluster starts size nodes named prefix-0... and joins them to the first.
func cluster(t testing.TB, prefix string, size int, mk func(name string) Config) ([]*Node, []*recorder) {
	t.Helper()
	var nodes []*Node
	var recs []*recorder
	for i := range size {
		n, r := startNode(t, mk(fmt.Sprintf("%s-%d", prefix, i)))
		nodes, recs = append(nodes, n), append(recs, r)
		if i > 0 {
			joinOrFail(t, n, nodes[0].Addr())
		}
	}
	waitMembers(t, nodes, size)
	return nodes, recs
}

func joinOrFail(t testing.TB, n *Node, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := n.Join(ctx, []string{addr}); err != nil {
		t.Fatalf("%s joins %s: %v", n.LocalName(), addr, err)
	}
}

// waitMembers waits until every node sees want alive members.
func waitMembers(t testing.TB, nodes []*Node, want int) {
	t.Helper()
	eventually(t, "members alive", func() error {
		for _, n := range nodes {
			if got := n.Stats().Members["alive"]; got != want {
				return fmt.Errorf("%s sees %d alive members, want %d", n.LocalName(), got, want)
			}
		}
		return nil
	})
}

func testAnnouncement(id string) Announcement {
	return Announcement{
		ID:             id,
		Version:        7,
		ManifestDigest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Size:           1 << 20,
		Origin:         "127.0.0.1:8080",
	}
}

// waitAnnounced waits until every recorder holds a.
func waitAnnounced(t testing.TB, recs []*recorder, a Announcement) {
	t.Helper()
	a.Protocol = ProtocolMax
	eventually(t, "announcement reaches all", func() error {
		for _, r := range recs {
			if !slices.Contains(r.announcements(), a) {
				return fmt.Errorf("%s has not seen %s", r.node.LocalName(), a.ID)
			}
		}
		return nil
	})
}

// withProtocolTag is tags as members see them: with the node's own
// TagProtocol of this build.
func withProtocolTag(tags map[string]string) map[string]string {
	t := maps.Clone(tags)
	t[TagProtocol] = fmt.Sprintf("%d-%d", ProtocolMin, ProtocolMax)
	return t
}
