package agent

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestTagsFollowTheCommandLine: a patch applied, then undone, with the
// command line on a host whose agent runs (not through the agent) shows
// in the host's gossiped applied stack, and goes from it, without any
// other change to the fleet: the agent looks at its host on its own.
func TestTagsFollowTheCommandLine(t *testing.T) {
	f := newTestFleet(t)
	agents := f.startN(2)
	waitMembers(t, agents, 2)
	host, peer := agents[1], agents[0]
	applied := func() string {
		for _, m := range peer.Members() {
			if m.Name == host.cfg.NodeName {
				return m.Tags[TagApplied]
			}
		}
		return "(not a member)"
	}
	if got := applied(); got != "" {
		t.Fatalf("applied stack before any apply: %q", got)
	}
	cliApply(t, f, host, f.bundleFixing(t, "cve-cli", 1, "CVE-2024-1086"))
	eventually(t, 10*time.Second, "the peer sees the patch", func() error {
		if got := applied(); got != "cve-cli@1" {
			return fmt.Errorf("applied stack %q", got)
		}
		return nil
	})
	h, err := host.openHost(context.Background(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Undo(context.Background(), "cve-cli"); err != nil {
		t.Fatal(err)
	}
	h.Close()
	eventually(t, 10*time.Second, "the peer sees it gone", func() error {
		if got := applied(); got != "" {
			return fmt.Errorf("applied stack %q", got)
		}
		return nil
	})
}
