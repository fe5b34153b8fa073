package gossip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMemNetwork runs the protocol over an in-memory network: nodes join,
// see each other at their 198.18/15 addresses, gossip an announcement
// and a failure, answer a query, and an outsider with another key cannot
// join.
func TestMemNetwork(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	mem := NewMemNetwork()
	nodes, recs := cluster(t, "mem", 6, func(name string) Config {
		cfg := testConfig(t, name, key)
		cfg.BindAddr, cfg.Network = "", mem
		return cfg
	})
	for _, n := range nodes {
		if !strings.HasPrefix(n.Addr(), "198.18.") || n.AdvertisedAddr() != n.Addr() {
			t.Errorf("%s: bound %s, advertised %s; want one address in 198.18.0.0/15", n.LocalName(), n.Addr(), n.AdvertisedAddr())
		}
	}
	a := testAnnouncement("kpatch-mem")
	if err := nodes[3].Announce(a); err != nil {
		t.Fatal(err)
	}
	waitAnnounced(t, recs, a)
	nodes[1].HandleQuery("ping", func([]byte) ([]byte, error) { return []byte("pong"), nil })
	resp, err := nodes[0].Query(context.Background(), "ping", nil, time.Second)
	if err != nil || len(resp) != 1 || resp[0].From != "mem-1" || string(resp[0].Payload) != "pong" {
		t.Errorf("query: %v, %v; want one pong from mem-1", resp, err)
	}

	outCfg := testConfig(t, "outsider", testKey(t))
	outCfg.Network = mem
	out, _ := startNode(t, outCfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if n, err := out.Join(ctx, []string{nodes[0].Addr()}); n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("outsider joined %d, err %v; want 0 and a deadline error", n, err)
	}

	// A node that stops without leaving is found failed by its peers, and
	// the network refuses dials to it.
	if err := nodes[5].Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "failure seen", func() error {
		for _, n := range nodes[:5] {
			for _, m := range n.Members() {
				if m.Name == "mem-5" && m.Status != "failed" {
					return fmt.Errorf("%s sees mem-5 %s", n.LocalName(), m.Status)
				}
			}
		}
		return nil
	})
	if _, err := nodes[0].ml.Transport.DialTimeout(nodes[5].Addr(), time.Second); !errors.Is(err, errMemRefused) {
		t.Errorf("dial a node that shut down: %v, want refused", err)
	}
	if dropped, sent := mem.Dropped(); sent == 0 || dropped != 0 {
		t.Errorf("%d of %d packets dropped; want some sent, none dropped", dropped, sent)
	}
}

// BenchmarkMembers compares a full copy of the member table (Members)
// with a walk over it (EachMember), as the agent does every anti-entropy
// round and rollout judgement, in a cluster of 100 nodes on a
// MemNetwork.
func BenchmarkMembers(b *testing.B) {
	key := testKey(b)
	mem := NewMemNetwork()
	tags := map[string]string{"sf.kr": "6.1.0-56-cloud-amd64", "sf.arch": "x86_64", "sf.bid": "0123456789abcdef",
		"sf.v": "0.1.0", "sf.http": "10.1.2.3:7947", "sf.held": "3", "ring": "canary"}
	nodes, _ := cluster(b, "bm", 100, func(name string) Config {
		cfg := testConfig(b, name, key)
		cfg.Network, cfg.Tags, cfg.Tuning = mem, tags, LocalFleetTuning()
		return cfg
	})
	n := nodes[0]
	b.Run("Members", func(b *testing.B) {
		for b.Loop() {
			alive := 0
			for _, m := range n.Members() {
				if m.Status == "alive" && m.Tags["sf.http"] != "" {
					alive++
				}
			}
		}
	})
	b.Run("EachMember", func(b *testing.B) {
		for b.Loop() {
			alive := 0
			n.EachMember(func(_, status string, _ uint64, tags map[string]string) {
				if status == "alive" && tags["sf.http"] != "" {
					alive++
				}
			})
		}
	})
}

// TestUncompressedMixesWithCompressed runs nodes that compress their
// packets beside nodes that do not (Tuning.Uncompressed): they form one
// cluster, exchange state on join, and each hears the others'
// announcements.
func TestUncompressedMixesWithCompressed(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	mem := NewMemNetwork()
	nodes, recs := cluster(t, "lzw", 4, func(name string) Config {
		cfg := testConfig(t, name, key)
		cfg.BindAddr, cfg.Network = "", mem
		cfg.Tuning.Uncompressed = name == "lzw-1" || name == "lzw-3"
		return cfg
	})
	for i, n := range nodes {
		if want := i%2 == 0; n.ml.EnableCompression != want {
			t.Fatalf("%s compresses: %v, want %v", n.LocalName(), n.ml.EnableCompression, want)
		}
	}
	for _, from := range []int{0, 1} {
		a := testAnnouncement(fmt.Sprintf("kpatch-lzw-%d", from))
		if err := nodes[from].Announce(a); err != nil {
			t.Fatal(err)
		}
		waitAnnounced(t, recs, a)
	}
	if dropped, sent := mem.Dropped(); sent == 0 || dropped != 0 || mem.Bytes() < sent {
		t.Errorf("%d of %d packets dropped, %d bytes; want some sent, none dropped", dropped, sent, mem.Bytes())
	}
}
