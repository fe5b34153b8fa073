package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// fleetProc is an agent process that can be killed and started again
// with the same configuration and state directory.
type fleetProc struct {
	*agentProc
	log string // the agent's output, appended over restarts
}

// startFleet starts n agents as processes; every agent lists every other
// one to join, so any of them can be killed and come back. tags gives
// agent i's user tags as a YAML flow map.
func startFleet(t *testing.T, c *cli, n int, tags func(i int) string) []*fleetProc {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keyFile := c.path("gossip.keys")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	binds := make([]string, n)
	for i := range binds {
		binds[i] = freeAddr(t)
	}
	procs := make([]*fleetProc, n)
	for i := range n {
		name := fmt.Sprintf("host-%d", i)
		p := &fleetProc{agentProc: &agentProc{name: name, dir: c.path(name)}}
		p.socket = filepath.Join(p.dir, "ctl.sock")
		p.log = filepath.Join(c.dir, name+".log")
		p.config = filepath.Join(c.dir, name+".yaml")
		var join []string
		for j, b := range binds {
			if j != i {
				join = append(join, b)
			}
		}
		conf := fmt.Sprintf(`node_name: %s
bind: %s
http: %s
join: [%s]
gossip_key_file: %s
keyring: %s
state_dir: %s
kernel: sim:%s
unsafe_simulated_kernel: true
control_socket: %s
anti_entropy: 1s
log_level: info
tags: %s
`, name, binds[i], freeAddr(t), strings.Join(join, ", "), keyFile, c.path("trusted.asc"),
			filepath.Join(p.dir, "state"), filepath.Join(p.dir, "kernel"), p.socket, tags(i))
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.config, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		p.start(t)
		procs[i] = p
		t.Cleanup(func() { p.kill() })
	}
	return procs
}

// start runs the agent process.
func (p *fleetProc) start(t *testing.T) {
	t.Helper()
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	fmt.Fprintf(out, "=== start %s\n", time.Now().Format(time.StampMilli))
	p.cmd = exec.Command(os.Args[0], "agent", "--config", p.config)
	p.cmd.Env = append(os.Environ(), "SPLICEFLEET_TEST_AS_CLI=1")
	p.cmd.Stdout, p.cmd.Stderr = out, out
	// An agent outlives no test binary, even one that a timeout ends.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

// kill SIGKILLs the agent process and reaps it.
func (p *fleetProc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
	if f, err := os.OpenFile(p.log, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		fmt.Fprintf(f, "=== SIGKILL %s\n", time.Now().Format(time.StampMilli))
		f.Close()
	}
}

// tail is the end of the agent's output, for failure messages.
func (p *fleetProc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// journalRecords reads a host's journal as it is on disk (written
// atomically, so readable beside a running agent): patch id to state.
func journalRecords(t *testing.T, p *fleetProc) map[string]splice.State {
	t.Helper()
	var j struct {
		Patches []struct {
			ID    string       `json:"id"`
			State splice.State `json:"state"`
		} `json:"patches"`
	}
	b, err := os.ReadFile(filepath.Join(p.dir, "state", splice.JournalFile))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]splice.State{}
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatalf("%s: journal: %v", p.name, err)
	}
	out := map[string]splice.State{}
	for _, r := range j.Patches {
		out[r.ID] = r.State
	}
	return out
}

// simLive lists the livepatch modules a host's simulated kernel runs
// enabled, sorted.
func simLive(t *testing.T, p *fleetProc) []string {
	t.Helper()
	k, err := sim.Open(filepath.Join(p.dir, "kernel"))
	if err != nil {
		t.Fatal(err)
	}
	lps, err := k.Livepatches()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, lp := range lps {
		if lp.Enabled {
			names = append(names, lp.Name)
		}
	}
	slices.Sort(names)
	return names
}

// crashRound is one rollout of the crash loop.
type crashRound struct {
	id, module string
	faulty     int // the host with an injected fault, -1 none
	fault      string
	kills      []string
}

// settledRollout waits until every agent answers for the rollout, they
// agree on its state and open stage, it is done or halted, and every
// host's own part is over (healthy when done; not applying and nothing
// left to roll back when halted). It returns each host's status.
func settledRollout(t *testing.T, c *cli, procs []*fleetProc, id string, within time.Duration) ([]rollout.Status, error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		sts, err := func() ([]rollout.Status, error) {
			var sts []rollout.Status
			for _, p := range procs {
				st, err := c.rolloutStatus(p.socket, id)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", p.name, err)
				}
				switch {
				case st.State != rollout.Done && !rollout.Ended(st.State):
					return nil, fmt.Errorf("%s: %s: %s", p.name, st.State, st.Why)
				case st.Self.State == rollout.StateApplying || st.Self.RollBack || st.Self.Apply:
					return nil, fmt.Errorf("%s: own part %s (apply %t, roll back %t)", p.name, st.Self.State, st.Self.Apply, st.Self.RollBack)
				case st.State == rollout.Done && st.Self.State != rollout.StateHealthy:
					return nil, fmt.Errorf("%s: done, own part %s", p.name, st.Self.State)
				case rollout.Ended(st.State) && st.Self.State == rollout.StateNone:
					return nil, fmt.Errorf("%s: halted, own part not recorded yet", p.name)
				}
				if len(sts) > 0 && (st.State != sts[0].State || st.Open != sts[0].Open) {
					return nil, fmt.Errorf("%s sees %s stage %d, %s sees %s stage %d", p.name, st.State, st.Open+1, procs[0].name, sts[0].State, sts[0].Open+1)
				}
				sts = append(sts, st)
			}
			return sts, nil
		}()
		if err == nil {
			return sts, nil
		}
		last = err
		time.Sleep(150 * time.Millisecond)
	}
	return nil, last
}

// TestAgentCrashesDuringRollouts runs staged rollouts over five agent
// processes on simulated kernels and SIGKILLs random agents at random
// moments (sometimes twice, sometimes while the fleet rolls back), then
// starts them again with the same configuration and state. A third of
// the rounds inject a fault on a random host (a failing health check, an
// Oops after load, or a kernel that refuses the module), which must halt
// the rollout and roll it back everywhere. After every round: every agent
// agrees on the outcome; a fault-free round is done and a faulty one
// halted; every kernel runs exactly the patches of the done rollouts (none
// of a halted one, none lost), the journals say the same, and no host
// whose stage never opened ever journaled the patch.
// SPLICEFLEET_AGENT_CRASH_ROUNDS sets the number of rounds (default 20).
func TestAgentCrashesDuringRollouts(t *testing.T) {
	rounds := 20
	if s := os.Getenv("SPLICEFLEET_AGENT_CRASH_ROUNDS"); s != "" {
		var err error
		if rounds, err = strconv.Atoi(s); err != nil || rounds < 1 {
			t.Fatalf("SPLICEFLEET_AGENT_CRASH_ROUNDS=%q", s)
		}
	}
	if testing.Short() {
		rounds = 3
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d rounds", seed, rounds)
	rng := mrand.New(mrand.NewPCG(seed, seed>>7))

	c := newCLI(t)
	c.publish(1, 1) // keys and the trusted keyring
	key := c.path("keya.sec.asc")
	const n = 5
	procs := startFleet(t, c, n, func(i int) string {
		if i == 0 {
			return "{role: web, ring: canary}"
		}
		return "{role: web}"
	})
	alive := func(want int) func() error {
		return func() error {
			for _, p := range procs {
				code, out, errs := c.run("members", "--control-socket", p.socket)
				if code != 0 {
					return fmt.Errorf("%s: %s", p.name, errs)
				}
				if got := strings.Count(out, " alive"); got != want {
					return fmt.Errorf("%s sees %d alive", p.name, got)
				}
			}
			return nil
		}
	}
	dumped := false
	dump := func() {
		dumped = true
		for _, p := range procs {
			t.Logf("--- %s:\n%s", p.name, p.tail())
		}
	}
	t.Cleanup(func() {
		if t.Failed() && !dumped {
			dump()
		}
	})
	waitFor(t, 60*time.Second, "five members", alive(n))

	faults := []sim.Fault{{HealthFail: true}, {OopsAfterLoad: true}, {LoadErrno: "EPERM"}}
	faultNames := []string{"failing health check", "Oops after load", "kernel refuses the module"}
	expected := []string{}       // modules of done rollouts, sorted
	doneIDs := map[string]bool{} // their patch ids
	var done, halted, kills, rollbackKills int
	var slowest time.Duration
	start := time.Now()
	for r := range rounds {
		roundStart := time.Now()
		cr := crashRound{id: fmt.Sprintf("crash-%03d", r), faulty: -1}
		cr.module = "lp_crash_" + strconv.Itoa(r)
		if rng.IntN(3) == 0 {
			cr.faulty = rng.IntN(n)
			k := rng.IntN(len(faults))
			cr.fault = faultNames[k]
			if err := sim.SetFaults(filepath.Join(procs[cr.faulty].dir, "kernel"), sim.Faults{cr.module: faults[k]}); err != nil {
				t.Fatal(err)
			}
		}
		mod := c.write(cr.id+".ko", testModule(cr.module, "cmdline_proc_show"))
		bundle := c.path(cr.id + ".splice")
		c.ok("create", "--module", mod, "--id", cr.id, "--version", "1", "--description", "crash round", "-o", bundle)
		c.ok("sign", "--key", key, bundle)
		var in inspection
		if err := json.Unmarshal([]byte(c.ok("inspect", "--json", bundle)), &in); err != nil {
			t.Fatal(err)
		}
		plan := c.write(cr.id+".yaml", []byte(`id: `+cr.id+`
bundle: `+in.ManifestDigest+`
stages:
  - ring: canary
    soak: 200ms
  - percent: 50
    soak: 200ms
  - percent: 100
gates:
  health_window: 300ms
allow_simulated: true
`))
		at := procs[rng.IntN(n)]
		c.ok("publish", "--control-socket", at.socket, "--plan", plan, "--key", key, bundle)

		// Kill at a random moment, once or twice; in faulty rounds, half
		// of the second kills wait for the halt, to land in the rollback.
		crash := func(why string) {
			p := procs[rng.IntN(n)]
			p.kill()
			kills++
			cr.kills = append(cr.kills, p.name+" "+why)
			time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
			p.start(t)
		}
		time.Sleep(time.Duration(rng.IntN(2500)) * time.Millisecond)
		crash("at " + time.Since(roundStart).Round(time.Millisecond).String())
		switch {
		case cr.faulty >= 0 && rng.IntN(2) == 0:
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				p := procs[rng.IntN(n)]
				if st, err := c.rolloutStatus(p.socket, cr.id); err == nil && rollout.Ended(st.State) {
					crash("in the rollback")
					rollbackKills++
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		case rng.IntN(3) == 0:
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
			crash("again at " + time.Since(roundStart).Round(time.Millisecond).String())
		}

		sts, err := settledRollout(t, c, procs, cr.id, 90*time.Second)
		if err != nil {
			dump()
			t.Fatalf("round %d %+v: the rollout did not settle: %v", r, cr, err)
		}
		st := sts[0]
		switch {
		case cr.faulty < 0 && st.State != rollout.Done:
			dump()
			t.Fatalf("round %d %+v: a fault-free rollout ended %s: %s", r, cr, st.State, st.Why)
		case cr.faulty >= 0 && (!rollout.Ended(st.State) || !slices.ContainsFunc(st.Failed, func(f string) bool {
			return strings.HasPrefix(f, procs[cr.faulty].name+": ")
		})):
			dump()
			t.Fatalf("round %d %+v: a rollout with a fault on %s ended %s (%s), failed %v", r, cr, procs[cr.faulty].name, st.State, st.Why, st.Failed)
		}
		if st.State == rollout.Done {
			done++
			doneIDs[cr.id] = true
			expected = append(expected, cr.module)
			slices.Sort(expected)
		} else {
			halted++
		}
		for i, p := range procs {
			if got := simLive(t, p); !slices.Equal(got, expected) {
				dump()
				t.Fatalf("round %d %+v: %s's kernel runs %v, want the done rollouts' %v", r, cr, p.name, got, expected)
			}
			recs := journalRecords(t, p)
			for id, s := range recs {
				if (s == splice.StateApplied) != doneIDs[id] || s == splice.StateApplying || s == splice.StateReverting {
					dump()
					t.Fatalf("round %d %+v: %s journals %s %s", r, cr, p.name, id, s)
				}
			}
			if rollout.Ended(st.State) && sts[i].Self.Stage > st.Open {
				if s, ok := recs[cr.id]; ok {
					dump()
					t.Fatalf("round %d %+v: %s is in stage %d, the rollout halted with stage %d open, and yet it journaled %s (%s)",
						r, cr, p.name, sts[i].Self.Stage+1, st.Open+1, cr.id, s)
				}
			}
		}
		if cr.faulty >= 0 {
			if err := sim.SetFaults(filepath.Join(procs[cr.faulty].dir, "kernel"), nil); err != nil {
				t.Fatal(err)
			}
		}
		took := time.Since(roundStart)
		slowest = max(slowest, took)
		t.Logf("round %d: %s stage %d, fault %q on %d, kills %v, %s", r, st.State, st.Open+1, cr.fault, cr.faulty, cr.kills, took.Round(time.Millisecond))
	}
	// Every agent agrees on every rollout at the end: gossip carries the
	// last reports within a few seconds, and an agent that missed one
	// asks the host for it.
	var disagree []string
	agreeBy := time.Now().Add(30 * time.Second)
	for {
		disagree = disagree[:0]
		var first []string
		for i, p := range procs {
			_, out, _ := c.run("rollout", "list", "--control-socket", p.socket)
			// Rollout, plan, state and open stage (the counts beside them
			// are each agent's gossip view at that instant).
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(l)
				lines = append(lines, strings.Join(f[:min(len(f), 5)], " "))
			}
			if i == 0 {
				first = lines
			} else if !slices.Equal(lines, first) {
				disagree = append(disagree, fmt.Sprintf("%s lists\n%s\nhost-0 lists\n%s", p.name, strings.Join(lines, "\n"), strings.Join(first, "\n")))
			}
		}
		if len(disagree) == 0 || time.Now().After(agreeBy) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, d := range disagree {
		t.Errorf("30 s after the last round: %s", d)
	}
	t.Logf("%d rounds (%d done, %d halted and rolled back), %d SIGKILLs (%d in a rollback), %s in all, %s per round, slowest %s",
		rounds, done, halted, kills, rollbackKills, time.Since(start).Round(time.Second),
		(time.Since(start) / time.Duration(rounds)).Round(time.Millisecond), slowest.Round(time.Millisecond))
}
