package agent

import (
	"fmt"
	"testing"
)

// TestFetchQueueBudgets: one member's announced fetches stop at its
// budget, others' still queue, and the pulled pool is apart: a full
// announced pool never drops a pulled fetch.
func TestFetchQueueBudgets(t *testing.T) {
	q := newFetchQueue()
	for i := range maxAnnouncedPerMember {
		if ok, reason := q.admit(fmt.Sprintf("rogue-%d", i), "rogue", "r:1", false); !ok {
			t.Fatalf("fetch %d of the rogue's budget refused: %s", i, reason)
		}
	}
	if ok, reason := q.admit("rogue-more", "rogue", "r:1", false); ok || reason != dropMemberBudget {
		t.Fatalf("beyond its budget: %v %q", ok, reason)
	}
	if ok, _ := q.admit("revoke", "operator-host", "o:1", false); !ok {
		t.Fatal("another member's fetch was refused")
	}
	// The same digest again adds its source, not a fetch.
	if ok, reason := q.admit("revoke", "other", "x:1", false); ok || reason != "" {
		t.Fatalf("a second announcement: %v %q", ok, reason)
	}
	if got := q.sources("revoke"); len(got) != 2 || got[1] != "x:1" {
		t.Errorf("sources %v", got)
	}
	// Fill the announced pool with many members.
	for i := 0; ; i++ {
		if ok, reason := q.admit(fmt.Sprintf("d-%d", i), fmt.Sprintf("m-%d", i), "m:1", false); !ok {
			if reason != dropQueueFull {
				t.Fatalf("reason %q", reason)
			}
			break
		}
	}
	if announced, _ := q.counts(); announced != maxFetchesQueued {
		t.Fatalf("%d announced fetches queued, pool %d", announced, maxFetchesQueued)
	}
	if ok, reason := q.admit("pulled", "peer", "p:1", true); !ok {
		t.Fatalf("a pulled fetch refused while the announced pool is full: %s", reason)
	}
	q.done("rogue-0")
	if ok, _ := q.admit("rogue-again", "rogue", "r:1", false); !ok {
		t.Fatal("a finished fetch did not give its budget back")
	}
	if d := q.drops(); d[dropMemberBudget] != 1 || d[dropQueueFull] != 1 {
		t.Errorf("drops %v", d)
	}
}
