package agent

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/rollout"
)

// TestMixedVersionFleet runs a fleet in the middle of an upgrade: two
// hosts of the newest build (one told to speak the oldest protocol, as an
// operator does while upgrading), and two standing in for the old build,
// which decodes protocol version 1 only, the canary among them. A staged
// rollout published at a newest host reaches every host and completes; a
// bundle published at an old host reaches every host; no host drops an
// announcement it cannot read; and the newest host speaks version 1 while
// old builds are in the cluster, then its newest once they have left.
func TestMixedVersionFleet(t *testing.T) {
	f := newTestFleet(t)
	old := map[string]bool{"node-02": true, "node-03": true}
	f.options = func(o *Options) {
		if old[o.Config.NodeName] {
			o.decodes = gossip.ProtocolMin
		}
	}
	var agents []*Agent
	for i := range 4 {
		cfg := f.config(fmt.Sprintf("node-%02d", i))
		switch i {
		case 1:
			cfg.Protocol = gossip.ProtocolMin
		case 2:
			cfg.Tags = map[string]string{"ring": "canary"}
		}
		agents = append(agents, f.start(cfg))
	}
	waitMembers(t, agents, 4)
	for _, m := range agents[3].Members() {
		want := gossip.ProtocolRange(0)
		if old[m.Name] {
			want = gossip.ProtocolRange(gossip.ProtocolMin)
		}
		if got := m.Tags[gossip.TagProtocol]; got != want {
			t.Errorf("%s advertises %q, want %q", m.Name, got, want)
		}
	}
	if v := agents[0].node.Stats().Protocol; v != gossip.ProtocolMin {
		t.Errorf("with old builds in the cluster the newest host speaks %d, want %d", v, gossip.ProtocolMin)
	}

	_, st := f.publishWithPlan(agents[0], "upgrade", 1, canaryPlan)
	waitRollout(t, agents, st.Digest, rollout.Done, 60*time.Second)
	for _, a := range agents {
		if got := kernelState(t, a); !slices.Equal(got, []string{"lp_upgrade"}) {
			t.Errorf("%s kernel runs %v, want lp_upgrade", a.Name(), got)
		}
	}
	v, err := agents[3].Publish(f.bundle("from-old", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the old build's bundle reaches every host", func() error { return holdAll(agents, v.ManifestDigest) })
	for _, a := range agents {
		if n := a.node.Stats().UnknownProtocol; n != 0 {
			t.Errorf("%s dropped %d announcements of a protocol it does not decode", a.Name(), n)
		}
	}

	// The upgrade completes: the old builds leave.
	for name := range old {
		f.stop(name)
	}
	eventually(t, 30*time.Second, "the newest host speaks its newest version", func() error {
		if v := agents[0].node.Stats().Protocol; v != gossip.ProtocolMax {
			return fmt.Errorf("speaks %d", v)
		}
		if v := agents[1].node.Stats().Protocol; v != gossip.ProtocolMin {
			return fmt.Errorf("the host told to speak the oldest speaks %d", v)
		}
		return nil
	})
}

func TestProtocolConfigRefused(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Keyring, cfg.UnsafeNoGossipEncryption = "k", true
	for _, p := range []int{0, gossip.ProtocolMax + 1} {
		cfg.Protocol = p
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("protocol %d: this build speaks %d to %d", p, gossip.ProtocolMin, gossip.ProtocolMax)) {
			t.Errorf("protocol %d: %v", p, err)
		}
	}
}

// TestExpiredAnnouncementNotFetched: a version-2 announcement whose
// expiry has passed starts no fetch; the same announcement unexpired does
// (of a bundle nobody holds, so the fetch fails and is counted).
func TestExpiredAnnouncementNotFetched(t *testing.T) {
	f := newTestFleet(t)
	f.antiEntropy = time.Hour
	agents := f.startN(2)
	waitMembers(t, agents, 2)
	a := agents[1]
	ann := gossip.Announcement{Protocol: 2, ID: "stale", Version: 1, ManifestDigest: strings.Repeat("ab", 32), Size: 100,
		Origin: agents[0].advertisedHTTP(), Expires: time.Now().Add(-time.Minute)}
	fetching := func() bool { return a.bundleQ.sources(ann.ManifestDigest) != nil }
	a.handleEvent(t.Context(), gossip.Event{Kind: gossip.Announce, Announcement: &ann})
	if fetching() {
		t.Fatal("an expired announcement started a fetch")
	}
	ann.Expires = time.Now().Add(time.Hour)
	a.handleEvent(t.Context(), gossip.Event{Kind: gossip.Announce, Announcement: &ann})
	if !fetching() {
		t.Fatal("an unexpired announcement started no fetch")
	}
	eventually(t, 30*time.Second, "the fetch fails and is counted", func() error {
		if n := metricValue(t, a, "splicefleet_fetch_failures_total", "reason", "unavailable"); n != 1 {
			return fmt.Errorf("%v failures", n)
		}
		return nil
	})
}
