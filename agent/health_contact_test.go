package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/rollout"
)

// TestHealthLostContactFailsTheApply: a canary whose agent, inside the
// health window, can reach none of the members it reached before the
// apply (they stop answering without leaving, as when a patch breaks the
// host's networking) fails its health check, says why, and takes the
// patch off its kernel.
func TestHealthLostContactFailsTheApply(t *testing.T) {
	f := newTestFleet(t)
	canary := f.config("node-00")
	canary.Tags = map[string]string{"ring": "canary"}
	c := f.start(canary)
	others := []*Agent{f.start(f.config("node-01")), f.start(f.config("node-02"))}
	all := append([]*Agent{c}, others...)
	waitMembers(t, all, 3)
	_, st := f.publishWithPlan(c, "contact", 1, `id: ID
bundle: BUNDLE
stages:
  - ring: canary
  - percent: 100
gates:
  health_window: 30s
`)
	eventually(t, 30*time.Second, "the canary applies", func() error {
		if s := localState(c, st.Digest); s != rollout.StateApplying {
			return fmt.Errorf("local state %s", s)
		}
		if got := kernelState(t, c); len(got) != 1 {
			return fmt.Errorf("kernel %v", got)
		}
		return nil
	})
	for _, a := range others {
		if err := a.node.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 25*time.Second, "the canary fails its health check", func() error {
		if s := localState(c, st.Digest); s != rollout.StateFailed {
			return fmt.Errorf("local state %s", s)
		}
		return nil
	})
	c.ro.mu.Lock()
	reason := c.ro.recs[st.Digest].Local.Reason
	c.ro.mu.Unlock()
	if !strings.Contains(reason, "lost contact with the cluster") {
		t.Errorf("reason %q", reason)
	}
	eventually(t, 10*time.Second, "the canary's kernel is clean", func() error {
		if got := kernelState(t, c); len(got) != 0 {
			return fmt.Errorf("kernel %v", got)
		}
		return nil
	})
}
