package gossip

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestClusterJoinAnnounceLeave(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	tags := func(name string) map[string]string { return map[string]string{"role": "web", "name": name} }
	nodes, recs := cluster(t, "c5", 5, func(name string) Config {
		cfg := testConfig(t, name, key)
		cfg.Tags = tags(name)
		return cfg
	})

	for i, n := range nodes {
		if n.AdvertisedAddr() != n.Addr() || nodes[0].Members()[i].Addr != n.Addr() {
			t.Errorf("%s: bound %s, advertised %s, listed at %s", n.LocalName(), n.Addr(), n.AdvertisedAddr(), nodes[0].Members()[i].Addr)
		}
		ms := n.Members()
		if len(ms) != 5 {
			t.Fatalf("%s lists %d members, want 5", n.LocalName(), len(ms))
		}
		for i, m := range ms {
			if want := "c5-" + strconv.Itoa(i); m.Name != want || m.Status != "alive" || !maps.Equal(m.Tags, withProtocolTag(tags(want))) {
				t.Errorf("%s member %d = %+v, want %s alive with tags %v", n.LocalName(), i, m, want, tags(want))
			}
			if !strings.HasPrefix(m.Addr, "127.0.0.1:") {
				t.Errorf("member %s addr %q", m.Name, m.Addr)
			}
		}
	}

	a := testAnnouncement("kpatch-cve-2026-1")
	if err := nodes[2].Announce(a); err != nil {
		t.Fatal(err)
	}
	waitAnnounced(t, recs, a)

	if err := nodes[4].Leave(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "leave seen", func() error {
		for i, n := range nodes[:4] {
			for _, m := range n.Members() {
				if m.Name == "c5-4" && m.Status != "left" {
					return fmt.Errorf("%s sees c5-4 %s", n.LocalName(), m.Status)
				}
			}
			if !recs[i].saw(MemberLeave, "c5-4") {
				return fmt.Errorf("%s got no leave event", n.LocalName())
			}
		}
		return nil
	})
	for _, n := range nodes[:4] {
		if st := n.Stats(); st.Members["failed"] != 0 {
			t.Errorf("%s: graceful leave counted as failure: %v", n.LocalName(), st.Members)
		}
	}
}

func TestStartRefusesUnencrypted(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "plain")
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "UnsafeNoEncryption") {
		t.Fatalf("Start without keys: err = %v, want refusal naming UnsafeNoEncryption", err)
	}
	cfg.Keys = [][]byte{[]byte("short")}
	if _, err := Start(cfg); err == nil {
		t.Fatal("Start with a 5-byte key succeeded")
	}
}

func TestOutsiderCannotJoin(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	nodes, _ := cluster(t, "enc", 2, func(name string) Config { return testConfig(t, name, key) })

	wrongKey := testConfig(t, "wrong-key", testKey(t))
	noKey := testConfig(t, "no-key")
	noKey.UnsafeNoEncryption = true
	// Holding the right key as a secondary does not help: outgoing gossip
	// uses the primary.
	secondary := testConfig(t, "secondary", testKey(t), key)
	t.Run("outsiders", func(t *testing.T) {
		for _, cfg := range []Config{wrongKey, noKey, secondary} {
			t.Run(cfg.NodeName, func(t *testing.T) {
				t.Parallel()
				out, _ := startNode(t, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				n, err := out.Join(ctx, []string{nodes[0].Addr(), nodes[1].Addr()})
				if err == nil || !errors.Is(err, context.DeadlineExceeded) || n != 0 {
					t.Errorf("%s joined %d nodes, err %v; want 0 and a deadline error", cfg.NodeName, n, err)
				}
				if got := len(out.Members()); got != 1 {
					t.Errorf("%s lists %d members, want only itself", cfg.NodeName, got)
				}
			})
		}
	})
	var refused uint64
	for _, n := range nodes {
		for _, m := range n.Members() {
			if !strings.HasPrefix(m.Name, "enc-") {
				t.Errorf("%s lists outsider %s (%s)", n.LocalName(), m.Name, m.Status)
			}
		}
		refused += n.Stats().OutsiderMessages
	}
	// Each of the three outsiders tried at least one push/pull.
	if refused < 3 {
		t.Errorf("the cluster counted %d messages from outsiders, want at least 3", refused)
	}

	friend, _ := startNode(t, testConfig(t, "friend", key))
	joinOrFail(t, friend, nodes[0].Addr())
	waitMembers(t, append(nodes, friend), 3)
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey := testKey(t)
	nodes, recs := cluster(t, "rot", 3, func(name string) Config { return testConfig(t, name, oldKey) })
	ctx := context.Background()
	oldB64 := encodeKey(oldKey)
	newB64, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}

	// A keyring operation fails when a member's answer is lost; repeating
	// it is safe.
	eventually(t, "install", func() error { return nodes[1].InstallKey(ctx, newB64) })
	eventually(t, "both keys everywhere", func() error {
		keys, err := nodes[0].ListKeys(ctx)
		if err != nil {
			return err
		}
		if want := map[string]int{oldB64: 3, newB64: 3}; !maps.Equal(keys.Installed, want) {
			return fmt.Errorf("keys %v, want %v", keys.Installed, want)
		}
		if want := map[string]int{oldB64: 3}; !maps.Equal(keys.Primary, want) || keys.PrimaryKey() != oldB64 {
			return fmt.Errorf("primary keys %v, want %v", keys.Primary, want)
		}
		return nil
	})
	eventually(t, "use", func() error { return nodes[0].UseKey(ctx, newB64) })
	eventually(t, "remove", func() error { return nodes[2].RemoveKey(ctx, oldB64) })
	eventually(t, "only the new key", func() error {
		keys, err := nodes[1].ListKeys(ctx)
		if err != nil {
			return err
		}
		if want := map[string]int{newB64: 3}; !maps.Equal(keys.Installed, want) {
			return fmt.Errorf("keys %v, want %v", keys.Installed, want)
		}
		if keys.PrimaryKey() != newB64 {
			return fmt.Errorf("primary keys %v, want the new key", keys.Primary)
		}
		return nil
	})

	a := testAnnouncement("after-rotation")
	if err := nodes[2].Announce(a); err != nil {
		t.Fatal(err)
	}
	waitAnnounced(t, recs, a)

	stale, _ := startNode(t, testConfig(t, "stale", oldKey))
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := stale.Join(tctx, []string{nodes[0].Addr()}); err == nil {
		t.Error("a node with only the removed key joined")
	}
	newKey, err := DecodeKey(newB64)
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := startNode(t, testConfig(t, "fresh", newKey))
	joinOrFail(t, fresh, nodes[0].Addr())
	waitMembers(t, append(nodes, fresh), 4)
}

func TestKeyOpsNeedEncryption(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "plain")
	cfg.UnsafeNoEncryption = true
	n, _ := startNode(t, cfg)
	if _, err := n.ListKeys(context.Background()); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("ListKeys: %v, want ErrNotEncrypted", err)
	}
	k, _ := GenerateKey()
	if err := n.InstallKey(context.Background(), k); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("InstallKey: %v, want ErrNotEncrypted", err)
	}
	if err := n.InstallKey(context.Background(), "bm90IGEga2V5"); err == nil {
		t.Error("InstallKey accepted a 9-byte key")
	}
}

func TestBadAnnouncementsCountedNotDelivered(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	nodes, recs := cluster(t, "bad", 2, func(name string) Config { return testConfig(t, name, key) })

	good, err := EncodeAnnouncement(testAnnouncement("good"))
	if err != nil {
		t.Fatal(err)
	}
	future := append([]byte{ProtocolMax + 1}, good[1:]...)
	for _, p := range [][]byte{{ProtocolMax, 200, 'x'}, future, good[:len(good)-1], {0}} {
		if err := nodes[0].userEvent(AnnounceEvent, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodes[0].userEvent("someone-elses-event", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].Announce(testAnnouncement("good")); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		eventually(t, "counted", func() error {
			st := n.Stats()
			if st.BadAnnouncements != 2 || st.UnknownProtocol != 2 || st.AnnouncementsReceived != 1 || st.OtherUserEvents != 1 {
				return fmt.Errorf("%s stats %+v", n.LocalName(), st)
			}
			if len(recs[i].announcements()) == 0 {
				return fmt.Errorf("%s: the good announcement is counted but not yet read", n.LocalName())
			}
			return nil
		})
		if got := recs[i].announcements(); len(got) != 1 || got[0].ID != "good" {
			t.Errorf("%s delivered %+v, want only the good one", n.LocalName(), got)
		}
	}
}

func TestQuery(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	nodes, _ := cluster(t, "q", 3, func(name string) Config { return testConfig(t, name, key) })
	for _, n := range nodes {
		name := n.LocalName()
		n.HandleQuery("whoami", func(p []byte) ([]byte, error) {
			if name == "q-2" {
				return nil, errors.New("not telling")
			}
			return []byte(name + ":" + string(p)), nil
		})
		n.HandleQuery("huge", func([]byte) ([]byte, error) { return make([]byte, 4096), nil })
	}
	ctx := context.Background()
	const timeout = 500 * time.Millisecond
	eventually(t, "query answered", func() error {
		start := time.Now()
		resps, err := nodes[1].Query(ctx, "whoami", []byte("hi"), timeout)
		if err != nil {
			return err
		}
		if d := time.Since(start); d < timeout {
			t.Errorf("query returned after %v, before its %v timeout", d, timeout)
		}
		want := []QueryResponse{{"q-0", []byte("q-0:hi")}, {"q-1", []byte("q-1:hi")}}
		if fmt.Sprint(resps) != fmt.Sprint(want) {
			return fmt.Errorf("responses %q, want %q", resps, want)
		}
		return nil
	})
	eventually(t, "q-2 counted its refusal", func() error {
		if st := nodes[2].Stats(); st.QueryErrors == 0 || st.QueriesAnswered != 0 {
			return fmt.Errorf("q-2 stats %+v", st)
		}
		return nil
	})

	resps, err := nodes[0].Query(ctx, "huge", nil, timeout)
	if err != nil || len(resps) != 0 {
		t.Errorf("oversized answers: %v, %v; want none", resps, err)
	}
	if _, err := nodes[0].Query(ctx, "_serf_ping", nil, timeout); err == nil {
		t.Error("a query in serf's namespace was sent")
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := nodes[0].Query(cctx, "whoami", nil, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled query: %v", err)
	}
}

func TestTagsLimit(t *testing.T) {
	t.Parallel()
	// Find the tag that encodes to exactly serf's limit: serf must accept
	// it, and one more byte must be refused with the size named.
	// The node adds its TagProtocol to what it is given, and that counts.
	fill := 0
	for TagsSize(withProtocolTag(map[string]string{"k": strings.Repeat("x", fill)})) < MaxTagsSize {
		fill++
	}
	exact := map[string]string{"k": strings.Repeat("x", fill)}
	if TagsSize(withProtocolTag(exact)) != MaxTagsSize {
		t.Fatalf("no fill gives exactly %d bytes", MaxTagsSize)
	}
	over := map[string]string{"k": strings.Repeat("x", fill+1)}

	cfg := testConfig(t, "tags", testKey(t))
	cfg.Tags = over
	_, err := Start(cfg)
	if !errors.Is(err, ErrTagsTooLarge) || !strings.Contains(err.Error(), "513 bytes") {
		t.Fatalf("Start with 513-byte tags: %v", err)
	}

	cfg.Tags = exact
	n, _ := startNode(t, cfg)
	if err := n.SetTags(over); !errors.Is(err, ErrTagsTooLarge) {
		t.Fatalf("SetTags over the limit: %v", err)
	}
	if got := n.Members()[0].Tags; !maps.Equal(got, withProtocolTag(exact)) {
		t.Error("refused SetTags changed the tags")
	}
	small := map[string]string{"role": "db"}
	if err := n.SetTags(small); err != nil {
		t.Fatal(err)
	}
	if got := n.Members()[0].Tags; !maps.Equal(got, withProtocolTag(small)) {
		t.Errorf("tags %v after SetTags, want %v", got, small)
	}
}

func TestEventsNeverBlockSerf(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "slow-reader", testKey(t))
	cfg.EventBuffer = 1
	n, err := Start(cfg) // nobody reads Events
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := n.Shutdown(); err != nil {
			t.Error(err)
		}
	}()
	for i := range 20 {
		if err := n.Announce(testAnnouncement("b" + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "drops counted", func() error {
		// Alone, the node has nobody to gossip its events to: they wait
		// in serf's queue.
		if st := n.Stats(); st.AnnouncementsReceived != 20 || st.EventsDropped < 19 || st.QueueDepth != 1 || st.EventQueue == 0 || st.HealthScore != 0 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
}

func TestSnapshotRejoin(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	nodes, _ := cluster(t, "snap", 2, func(name string) Config { return testConfig(t, name, key) })
	cfg := testConfig(t, "snap-r", key)
	cfg.SnapshotPath = t.TempDir() + "/serf.snapshot"
	first, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	joinOrFail(t, first, nodes[0].Addr())
	waitMembers(t, append(nodes, first), 3)
	// Crash, not leave: the snapshot still lists the peers.
	if err := first.Shutdown(); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(first.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cfg.BindPort, _ = strconv.Atoi(port)
	cfg.Logger = testLogger(t)
	restarted, _ := startNode(t, cfg) // no Join: serf rejoins from the snapshot
	waitMembers(t, append(nodes, restarted), 3)
	eventually(t, "peers see the restarted node", func() error {
		for _, n := range nodes {
			got := n.Members()[2]
			if got.Name != "snap-r" || got.Addr != restarted.Addr() || got.Status != "alive" {
				return fmt.Errorf("%s sees %+v", n.LocalName(), got)
			}
		}
		return nil
	})
	if len(restarted.Members()) != 3 {
		t.Errorf("restarted node lists %v", restarted.Members())
	}
}

func TestBroadcastDeliversOnlyNamedUserEvents(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	nodes, recs := cluster(t, "user", 2, func(name string) Config {
		cfg := testConfig(t, name, key)
		cfg.UserEvents = []string{"sf-test"}
		return cfg
	})
	if err := nodes[0].Broadcast("not-registered", []byte("x")); err == nil {
		t.Error("Broadcast of an unregistered event name succeeded")
	}
	if err := nodes[0].userEvent("someone-elses-event", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].Broadcast("sf-test", []byte("payload")); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		eventually(t, "delivered", func() error {
			recs[i].mu.Lock()
			defer recs[i].mu.Unlock()
			var got []string
			for _, ev := range recs[i].evs {
				if ev.Kind == UserEvent {
					got = append(got, ev.Name+"="+string(ev.Payload))
				}
			}
			if len(got) != 1 || got[0] != "sf-test=payload" || n.Stats().OtherUserEvents != 1 {
				return fmt.Errorf("%s: user events %v, other %d", n.LocalName(), got, n.Stats().OtherUserEvents)
			}
			return nil
		})
	}
}

// TestMixedProtocolCluster runs a fleet in the middle of an upgrade: a
// node of the newest build, one of the newest build told to speak the
// oldest version (Config.Protocol), and one standing in for an old build
// that decodes only version 1. They form one cluster under different serf
// protocol versions; while the old build is alive, the newest node
// announces in version 1 and every node hears it; once it has left, the
// newest node announces in version 2, expiry included.
func TestMixedProtocolCluster(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	nodes, recs := cluster(t, "mix", 3, func(name string) Config {
		cfg := testConfig(t, name, key)
		switch name {
		case "mix-1":
			cfg.Protocol = ProtocolMin
		case "mix-2":
			cfg.Decodes = ProtocolMin
		}
		return cfg
	})
	newest, oldest, old := nodes[0], nodes[1], nodes[2]
	if got := old.Members()[0].Tags[TagProtocol]; got != fmt.Sprintf("%d-%d", ProtocolMin, ProtocolMax) {
		t.Errorf("the old build sees the newest advertise %q", got)
	}
	if v := newest.serf.ProtocolVersion(); v != serfProtocol[ProtocolMax] {
		t.Errorf("the newest node speaks serf protocol %d, want %d", v, serfProtocol[ProtocolMax])
	}
	if v := old.serf.ProtocolVersion(); v != serfProtocol[ProtocolMin] {
		t.Errorf("the old build speaks serf protocol %d, want %d", v, serfProtocol[ProtocolMin])
	}
	if v := oldest.Speaks(); v != ProtocolMin {
		t.Errorf("told to speak the oldest version, the node speaks %d", v)
	}

	expires := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	a := testAnnouncement("during-upgrade")
	a.Expires = expires
	if v := newest.Speaks(); v != ProtocolMin {
		t.Fatalf("with an old build alive the newest node speaks %d, want %d", v, ProtocolMin)
	}
	if err := newest.Announce(a); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every node hears the announcement made for the old build", func() error {
		for _, r := range recs {
			if !slices.ContainsFunc(r.announcements(), func(got Announcement) bool { return got.ID == "during-upgrade" }) {
				return fmt.Errorf("%s has not heard it", r.node.LocalName())
			}
		}
		return nil
	})
	if st := old.Stats(); st.UnknownProtocol != 0 {
		t.Errorf("the old build dropped %d announcements of an unknown protocol", st.UnknownProtocol)
	}
	for _, got := range recs[2].announcements() {
		if got.Protocol != ProtocolMin || !got.Expires.IsZero() {
			t.Errorf("the old build received %+v, want version %d without expiry", got, ProtocolMin)
		}
	}

	// The old build leaves: the newest node speaks its newest version.
	if err := old.Leave(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the newest node speaks its newest version", func() error {
		if v := newest.Speaks(); v != ProtocolMax {
			return fmt.Errorf("speaks %d", v)
		}
		return nil
	})
	a.ID = "after-upgrade"
	if err := newest.Announce(a); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[:2] {
		eventually(t, "version 2 reaches "+r.node.LocalName(), func() error {
			for _, got := range r.announcements() {
				if got.ID == "after-upgrade" {
					if got.Protocol != ProtocolMax || !got.Expires.Equal(expires) {
						return fmt.Errorf("got %+v, want version %d expiring %s", got, ProtocolMax, expires)
					}
					return nil
				}
			}
			return fmt.Errorf("%s has not heard it", r.node.LocalName())
		})
	}
}

func TestProtocolConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ protocol, decodes uint8 }{{ProtocolMax + 1, 0}, {0, ProtocolMax + 1}, {2, 1}} {
		cfg := testConfig(t, "p", testKey(t))
		cfg.Protocol, cfg.Decodes = c.protocol, c.decodes
		if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "this build speaks") {
			t.Errorf("protocol %d decoding up to %d: %v", c.protocol, c.decodes, err)
		}
	}
}

// TestSetTagsAfterLeave: a node that left refuses new tags with
// ErrNotAlive instead of asking memberlist to re-advertise a local node
// it may have dropped (which crashed the agent once, when its tag updater
// ran beside its leave).
func TestSetTagsAfterLeave(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	a, _ := startNode(t, testConfig(t, "leaver", key))
	b, _ := startNode(t, testConfig(t, "stayer", key))
	joinOrFail(t, b, a.Addr())
	waitMembers(t, []*Node{a, b}, 2)
	if err := a.Leave(); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := a.SetTags(map[string]string{"role": "db"}); !errors.Is(err, ErrNotAlive) {
			t.Fatalf("SetTags after leave: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMemberVersions: a member's version grows when its tags change, as
// seen by another node (through the update event) and by the node itself
// (at SetTags); a member that did not change keeps its version.
func TestMemberVersions(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	a, _ := startNode(t, testConfig(t, "va", key))
	b, _ := startNode(t, testConfig(t, "vb", key))
	joinOrFail(t, b, a.Addr())
	waitMembers(t, []*Node{a, b}, 2)
	version := func(n *Node, name string) (v uint64, role string) {
		n.EachMember(func(m, _ string, ver uint64, tags map[string]string) {
			if m == name {
				v, role = ver, tags["role"]
			}
		})
		return v, role
	}
	eventually(t, "both members seen with a version", func() error {
		if v, _ := version(a, "vb"); v == 0 {
			return fmt.Errorf("a sees vb at version 0")
		}
		return nil
	})
	before, _ := version(a, "vb")
	ownBefore, _ := version(a, "va")
	if err := b.SetTags(map[string]string{"role": "db"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sees vb's new tags under a new version", func() error {
		v, role := version(a, "vb")
		if role != "db" || v <= before {
			return fmt.Errorf("vb at version %d (was %d), role %q", v, before, role)
		}
		return nil
	})
	if v, _ := version(a, "va"); v != ownBefore {
		t.Errorf("a's own version moved from %d to %d with no change of a", ownBefore, v)
	}
	if err := a.SetTags(map[string]string{"role": "web"}); err != nil {
		t.Fatal(err)
	}
	if v, role := version(a, "va"); v <= ownBefore || role != "web" {
		t.Errorf("after its own SetTags a sees itself at version %d (was %d), role %q", v, ownBefore, role)
	}
}
