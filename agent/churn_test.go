package agent

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/rollout"
)

// TestChurnDuringRollout checks what docs/rollouts.md promises when the
// membership changes during a rollout: a host that is unreachable stays
// in its stage's cohort and holds it back (the status names it) until a
// signed promote goes on without it; a host that left gracefully drops
// out and never applies; a host that joins while its stage is open
// applies; and the unreachable host, once back, applies and lets the
// rollout finish.
func TestChurnDuringRollout(t *testing.T) {
	f := newTestFleet(t)
	var names []string
	for i := range 6 {
		names = append(names, fmt.Sprintf("node-%02d", i))
	}
	// A rollout id that puts node-00 (the publisher) and two more in the
	// first stage, and at least two others in the second.
	var id string
	var first, second []string
	for i := 0; ; i++ {
		id = fmt.Sprintf("churn-%d", i)
		first, second = nil, nil
		for _, n := range names {
			if rollout.Bucket(id, n) < 5000 {
				first = append(first, n)
			} else {
				second = append(second, n)
			}
		}
		if len(first) >= 3 && len(second) >= 2 && slices.Contains(first, "node-00") {
			break
		}
	}
	agents := map[string]*Agent{}
	var all []*Agent
	for _, n := range names {
		agents[n] = f.start(f.config(n))
		all = append(all, agents[n])
	}
	waitMembers(t, all, 6)

	// Unreachable: a first-stage host whose gossip stops without a leave.
	gone := first[1]
	goneCfg := agents[gone].cfg
	if err := agents[gone].node.Shutdown(); err != nil {
		t.Fatal(err)
	}
	f.stop(gone)
	// Left: a second-stage host that leaves the cluster gracefully.
	left := second[0]
	f.stop(left)
	var live []*Agent
	for _, n := range names {
		if n != gone && n != left {
			live = append(live, agents[n])
		}
	}
	eventually(t, 60*time.Second, "the others see one host failed and one left", func() error {
		for _, a := range live {
			status := map[string]string{}
			for _, m := range a.Members() {
				status[m.Name] = m.Status
			}
			if status[gone] != "failed" || (status[left] != "left" && status[left] != "") {
				return fmt.Errorf("%s sees %s %q and %s %q", a.Name(), gone, status[gone], left, status[left])
			}
		}
		return nil
	})

	_, st := f.publishWithPlan(agents["node-00"], id, 1, `id: ID
bundle: BUNDLE
stages:
  - percent: 50
    soak: 300ms
  - percent: 100
gates:
  health_window: 200ms
`)
	// The first stage waits for the unreachable host and says so.
	eventually(t, 60*time.Second, "the first stage waits for the unreachable host", func() error {
		s, _ := agents["node-00"].Rollout(st.Digest)
		if s.Open != 0 || !strings.Contains(s.Why, gone+" (unreachable)") || s.Stages[0].Healthy != len(first)-1 {
			return fmt.Errorf("open %d: %s", s.Open+1, s.Why)
		}
		return nil
	})
	time.Sleep(time.Second) // longer than the soak: the stage still must not open
	for _, n := range second[1:] {
		if got := localState(agents[n], st.Digest); got != rollout.StateNone {
			t.Fatalf("%s (second stage) is %s while the first stage waits", n, got)
		}
	}

	// A signed promote goes on without it.
	if _, err := agents["node-00"].Command(f.command(f.signer, rollout.Command{Plan: st.Digest, Seq: 1, Action: rollout.ActionPromote, Stage: 1, Reason: gone + " is down"})); err != nil {
		t.Fatal(err)
	}
	// A host joins while the last stage is open: it applies.
	late := f.start(f.config("node-late"))
	live = append(live, late)
	eventually(t, 60*time.Second, "every reachable host applied, the late joiner too", func() error {
		for _, a := range live {
			if got := localState(a, st.Digest); got != rollout.StateHealthy {
				return fmt.Errorf("%s is %s", a.Name(), got)
			}
		}
		return nil
	})
	s, _ := agents["node-00"].Rollout(st.Digest)
	if s.State != rollout.Running || !strings.Contains(s.Why, gone+" (unreachable)") {
		t.Errorf("with %s down the rollout is %s: %s", gone, s.State, s.Why)
	}
	// The last stage's cohort: the six first hosts, without the one that
	// left, with the unreachable one, and with the late joiner.
	if c := s.Stages[len(s.Stages)-1].Cohort; c != len(names) {
		t.Errorf("the last stage counts %d hosts, want %d (%s left, %s unreachable, node-late joined)", c, len(names), left, gone)
	}

	// The unreachable host comes back, applies, and the rollout is done.
	back := f.start(goneCfg)
	live = append(live, back)
	waitRollout(t, live, st.Digest, rollout.Done, 90*time.Second)
	if got := kernelState(t, back); !slices.Equal(got, []string{"lp_" + id}) {
		t.Errorf("%s runs %v after coming back", gone, got)
	}
}
