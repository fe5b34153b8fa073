package agent

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
)

// journalMentions reports whether a host's journal ever recorded the
// patch: an apply leaves it there even after an undo.
func journalMentions(t testing.TB, a *Agent, id string) bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(a.cfg.StateDir, "journal.json"))
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), `"id": "`+id+`"`) || strings.Contains(string(data), `"id":"`+id+`"`)
}

// TestFiftyAgentRollouts runs staged rollouts over 50 agents: one clean
// rollout completes on every host, then 20 randomized runs each inject a
// fault (a failing health check, an Oops, or a kernel that refuses the
// module) on one host of the first stage. Every run must halt on all 50,
// no host outside the first stage may ever apply the patch, and the
// rollback must leave every kernel clean.
func TestFiftyAgentRollouts(t *testing.T) {
	if testing.Short() {
		t.Skip("fifty agents take a minute; make test runs them")
	}
	const n = 50
	runs := 20
	f := newTestFleet(t)
	agents := f.startN(n)
	waitMembers(t, agents, n)
	byName := map[string]*Agent{}
	for _, a := range agents {
		byName[a.Name()] = a
	}

	plan := func(id string, first float64) string {
		return fmt.Sprintf(`id: %s
bundle: BUNDLE
stages:
  - percent: %g
    soak: 200ms
  - percent: 30
    soak: 200ms
  - percent: 100
gates:
  health_window: 300ms
`, id, first)
	}

	// A clean rollout completes everywhere.
	_, st := f.publishWithPlan(agents[0], "clean", 1, plan("clean", 10))
	waitRollout(t, agents, st.Digest, rollout.Done, 120*time.Second)
	for _, a := range agents {
		if got := kernelState(t, a); len(got) != 1 || got[0] != "lp_clean" {
			t.Fatalf("%s runs %v after the clean rollout", a.Name(), got)
		}
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	faults := []struct {
		name  string
		fault sim.Fault
		want  string
	}{
		{"health", sim.Fault{HealthFail: true}, "health command failed"},
		{"oops", sim.Fault{OopsAfterLoad: true}, "oops in the kernel log"},
		{"refused", sim.Fault{LoadErrno: "ENOEXEC"}, "ENOEXEC"},
	}
	for run := range runs {
		// A random rollout ID shuffles the buckets; draw again until the
		// first stage holds at least one host to fail.
		var id string
		var first float64
		var cohort []string
		for len(cohort) == 0 {
			id = fmt.Sprintf("run-%02d-%d", run, rng.IntN(100000))
			first = []float64{4, 6, 10}[rng.IntN(3)]
			for _, a := range agents {
				if rollout.Bucket(id, a.Name()) < int(first*100) {
					cohort = append(cohort, a.Name())
				}
			}
		}
		bad := byName[cohort[rng.IntN(len(cohort))]]
		fault := faults[rng.IntN(len(faults))]
		if err := sim.SetFaults(strings.TrimPrefix(bad.cfg.Kernel, "sim:"), sim.Faults{"lp_" + id: fault.fault}); err != nil {
			t.Fatal(err)
		}
		publisher := agents[rng.IntN(n)]
		_, st := f.publishWithPlan(publisher, id, 1, plan(id, first))
		waitRollout(t, agents, st.Digest, rollout.Halted, 120*time.Second)
		// The halt may come from the failed host's tags before its report
		// arrives; the reason follows (the report, or asking the host).
		eventually(t, 30*time.Second, "the publisher knows why", func() error {
			s, _ := publisher.Rollout(st.Digest)
			if !strings.Contains(s.Why, bad.Name()) || !strings.Contains(s.Why, fault.want) {
				return fmt.Errorf("run %d (%s on %s): why = %q", run, fault.name, bad.Name(), s.Why)
			}
			return nil
		})
		inFirst := map[string]bool{}
		for _, c := range cohort {
			inFirst[c] = true
		}
		eventually(t, 60*time.Second, "every kernel clean after the rollback", func() error {
			for _, a := range agents {
				for _, lp := range kernelState(t, a) {
					if lp == "lp_"+id {
						return fmt.Errorf("%s still runs %s", a.Name(), lp)
					}
				}
			}
			return nil
		})
		applied := 0
		for _, a := range agents {
			ever := journalMentions(t, a, id)
			if ever {
				applied++
			}
			if !inFirst[a.Name()] && (ever || localState(a, st.Digest) == rollout.StateRolledBack) {
				t.Errorf("run %d: %s (bucket %d) is outside the first stage (%g%%) but applied %s",
					run, a.Name(), rollout.Bucket(id, a.Name()), first, id)
			}
			if got := kernelState(t, a); len(got) != 1 || got[0] != "lp_clean" {
				t.Errorf("run %d: %s runs %v; the clean patch must stay", run, a.Name(), got)
			}
		}
		t.Logf("run %d: %s fault on %s, first stage %g%% (%d hosts), %d applied before the halt", run, fault.name, bad.Name(), first, len(cohort), applied)
	}
}
