package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
)

// envInt reads a positive count from the environment (make soak sets
// them), or returns def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// netFleet is agents as processes, one per namespace of a netLab.
type netFleet struct {
	t     *testing.T
	c     *cli
	lab   *netLab
	procs []*agentProc
}

// startNetFleet starts one agent in each host namespace of lab, bound to
// its address there. Host 0 is tagged ring=canary. Every agent joins the
// first host of each side (a seed does not list itself).
func startNetFleet(t *testing.T, c *cli, lab *netLab) *netFleet {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keyFile := c.write("gossip.keys", []byte(base64.StdEncoding.EncodeToString(key)+"\n"))
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	seeds := map[int]string{}
	for _, h := range lab.hosts {
		if _, ok := seeds[h.side]; !ok {
			seeds[h.side] = h.addr + ":7946"
		}
	}
	f := &netFleet{t: t, c: c, lab: lab}
	for i, h := range lab.hosts {
		p := &agentProc{name: fmt.Sprintf("host-%d", i), dir: c.path(fmt.Sprintf("host-%d", i)), out: &syncBuffer{}}
		p.socket = filepath.Join(p.dir, "ctl.sock")
		var join []string
		for _, s := range seeds {
			if s != h.addr+":7946" {
				join = append(join, s)
			}
		}
		tags := "{role: web}"
		if i == 0 {
			tags = "{role: web, ring: canary}"
		}
		p.config = filepath.Join(c.dir, p.name+".yaml")
		conf := fmt.Sprintf(`node_name: %s
bind: %s:7946
http: %s:7947
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
`, p.name, h.addr, h.addr, strings.Join(join, ", "), keyFile, c.path("trusted.asc"),
			filepath.Join(p.dir, "state"), filepath.Join(p.dir, "kernel"), p.socket, tags)
		if err := os.WriteFile(p.config, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		p.cmd = lab.command(i, os.Args[0], "agent", "--config", p.config)
		p.cmd.Env = append(os.Environ(), "SPLICEFLEET_TEST_AS_CLI=1")
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		f.procs = append(f.procs, p)
		t.Cleanup(func() {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
			if t.Failed() {
				t.Logf("%s output:\n%s", p.name, lastLines(p.out.String(), 40))
			}
		})
	}
	f.waitMembers(60*time.Second, len(f.procs))
	return f
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// side lists the agents on one side.
func (f *netFleet) side(s int) []int {
	var out []int
	for i, h := range f.lab.hosts {
		if h.side == s {
			out = append(out, i)
		}
	}
	return out
}

// waitMembers waits until every agent sees n members alive.
func (f *netFleet) waitMembers(within time.Duration, n int) {
	f.t.Helper()
	waitFor(f.t, within, fmt.Sprintf("%d members alive everywhere", n), func() error {
		for _, p := range f.procs {
			code, out, errs := f.c.run("members", "--control-socket", p.socket)
			if code != 0 {
				return fmt.Errorf("%s: %s", p.name, errs)
			}
			if got := strings.Count(out, " alive"); got != n {
				return fmt.Errorf("%s sees %d alive:\n%s", p.name, got, out)
			}
		}
		return nil
	})
}

// bundle creates and signs a bundle of a livepatch module.
func (f *netFleet) bundle(module, id string) (path, digest string) {
	c := f.c
	mod := c.write(module+".ko", testModule(module, "cmdline_proc_show"))
	path = c.path(module + ".splice")
	c.ok("create", "--module", mod, "--id", id, "--version", "1", "--cve", id, "--description", "fault test", "-o", path)
	c.ok("sign", "--key", c.path("keya.sec.asc"), path)
	var in inspection
	if err := json.Unmarshal([]byte(c.ok("inspect", "--json", path)), &in); err != nil {
		f.t.Fatal(err)
	}
	return path, in.ManifestDigest
}

// start publishes a bundle with a plan at agent at.
func (f *netFleet) start(at int, bundle, id, plan string) {
	f.t.Helper()
	file := f.c.write(id+".yaml", []byte(plan))
	out := f.c.ok("publish", "--control-socket", f.procs[at].socket, "--plan", file, "--key", f.c.path("keya.sec.asc"), bundle)
	if !strings.Contains(out, "rollout "+id+" started") {
		f.t.Fatalf("publish --plan: %s", out)
	}
}

// statuses reads a rollout's status from the agents idx.
func (f *netFleet) statuses(id string, idx []int) (map[int]rollout.Status, error) {
	out := map[int]rollout.Status{}
	for _, i := range idx {
		st, err := f.c.rolloutStatus(f.procs[i].socket, id)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.procs[i].name, err)
		}
		out[i] = st
	}
	return out, nil
}

func (f *netFleet) all() []int {
	var out []int
	for i := range f.procs {
		out = append(out, i)
	}
	return out
}

// everLoaded says whether an agent's simulated kernel ever loaded the
// module: its log keeps the enable of every patch.
func (f *netFleet) everLoaded(i int, module string) bool {
	f.t.Helper()
	k, err := sim.Open(filepath.Join(f.procs[i].dir, "kernel"))
	if err != nil {
		f.t.Fatal(err)
	}
	recs, _, err := k.Log(0)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, r := range recs {
		if strings.Contains(r.Message, "enabling patch '"+module+"'") {
			return true
		}
	}
	return false
}

// converged checks that every agent reports the same state, open stage
// and failed hosts for a rollout, and that state is want.
func (f *netFleet) converged(id, want string) error {
	sts, err := f.statuses(id, f.all())
	if err != nil {
		return err
	}
	first := sts[0]
	for i, st := range sts {
		if !rollout.Is(st.State, want) {
			return fmt.Errorf("%s: %s: %s", f.procs[i].name, st.State, st.Why)
		}
		if st.Open != first.Open || strings.Join(st.Failed, ";") != strings.Join(first.Failed, ";") {
			return fmt.Errorf("%s: open %d failed %q, %s: open %d failed %q", f.procs[i].name, st.Open, st.Failed, f.procs[0].name, first.Open, first.Failed)
		}
	}
	return nil
}

// haltPlan is a canary ring then everyone, with a health window long
// enough that the canary is still watching when its fault is injected.
func haltPlan(id, digest string) string {
	return `id: ` + id + `
bundle: ` + digest + `
stages:
  - ring: canary
    soak: 1s
  - percent: 100
gates:
  health_window: 60s
allow_simulated: true
`
}

// stagedPlan is a canary ring, then 50%, then everyone.
func stagedPlan(id, digest string, window time.Duration) string {
	return `id: ` + id + `
bundle: ` + digest + `
stages:
  - ring: canary
    soak: 1s
  - percent: 50
    soak: 1s
  - percent: 100
gates:
  health_window: ` + window.String() + `
allow_simulated: true
`
}

// TestPartitionDuringRollout splits a fleet of agents in network
// namespaces into two sides during rollouts, then heals it. A canary that
// fails while split halts its side only; after healing the halt reaches
// the other side, every host agrees, nothing is left applied and no host
// outside the canary ever loaded the patch. A rollout with no failure
// goes on each side only as far as the plan allows (a stage waits for the
// hosts it cannot see) and completes after healing.
//
// SPLICEFLEET_PARTITION_HOSTS (per side, default 3) and
// SPLICEFLEET_PARTITION_CYCLES (default 1) make the long version.
func TestPartitionDuringRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs root and network namespaces")
	}
	perSide := envInt(t, "SPLICEFLEET_PARTITION_HOSTS", 3)
	cycles := envInt(t, "SPLICEFLEET_PARTITION_CYCLES", 1)
	var sides []int
	for i := range 2 * perSide {
		sides = append(sides, i/perSide)
	}
	c := newCLI(t)
	c.publish(1, 1)
	lab := newNetLab(t, sides)
	f := startNetFleet(t, c, lab)
	for cycle := range cycles {
		t.Logf("cycle %d: a canary fails while split", cycle+1)
		f.haltAcrossPartition(cycle)
		t.Logf("cycle %d: no failure while split", cycle+1)
		f.continueAcrossPartition(cycle)
	}
}

// haltAcrossPartition: the canary (side 0) fails after the split.
func (f *netFleet) haltAcrossPartition(cycle int) {
	t := f.t
	module := fmt.Sprintf("livepatch_bad%d", cycle)
	id := fmt.Sprintf("bad-%d", cycle)
	bundle, digest := f.bundle(module, fmt.Sprintf("cve-2026-1%03d", cycle))
	f.start(0, bundle, id, haltPlan(id, digest))
	waitFor(t, 60*time.Second, "every agent follows the rollout, the canary watches its patch", func() error {
		sts, err := f.statuses(id, f.all())
		if err != nil {
			return err
		}
		if st := sts[0]; st.Self.State != rollout.StateApplying || !simPatched(t, f.procs[0], module) {
			return fmt.Errorf("canary: %s", st.Self.State)
		}
		return nil
	})

	f.lab.partition()
	split := time.Now()
	if err := sim.SetFaults(filepath.Join(f.procs[0].dir, "kernel"), sim.Faults{module: {HealthFail: true}}); err != nil {
		t.Fatal(err)
	}
	a, b := f.side(0), f.side(1)
	// Within a side, gossip alone can take up to a push-pull interval
	// (30 s) to carry the halt: broadcasts made right after the split are
	// partly spent on the other side's hosts, not yet known unreachable.
	waitFor(t, 90*time.Second, "side 0 halts and the canary rolls back", func() error {
		sts, err := f.statuses(id, a)
		if err != nil {
			return err
		}
		for i, st := range sts {
			if !rollout.Ended(st.State) {
				return fmt.Errorf("%s: %s: %s", f.procs[i].name, st.State, st.Why)
			}
		}
		if simPatched(t, f.procs[0], module) {
			return fmt.Errorf("the canary still runs %s", module)
		}
		return nil
	})
	t.Logf("side 0 halted %s after the split", time.Since(split).Round(100*time.Millisecond))
	// Side 1 never heard it: it still runs the rollout and waits for the
	// canary, which it now sees unreachable.
	waitFor(t, 60*time.Second, "side 1 sees the canary unreachable", func() error {
		sts, err := f.statuses(id, b)
		if err != nil {
			return err
		}
		for i, st := range sts {
			if st.State != rollout.Running || st.Open != 0 {
				t.Fatalf("%s while split: %s, stage %d open: %s", f.procs[i].name, st.State, st.Open, st.Why)
			}
			if len(st.Stages) == 0 || !strings.Contains(strings.Join(st.Stages[0].WaitingFor, " "), f.procs[0].name+" (unreachable)") {
				return fmt.Errorf("%s: %+v", f.procs[i].name, st.Stages)
			}
		}
		return nil
	})

	f.lab.heal()
	healed := time.Now()
	waitFor(t, 120*time.Second, "the halt reaches side 1, every agent agrees", func() error {
		return f.converged(id, rollout.Halted)
	})
	t.Logf("after healing, the halt reached side 1 in %s", time.Since(healed).Round(100*time.Millisecond))
	sts, err := f.statuses(id, f.all())
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range sts {
		if !strings.Contains(st.Why, f.procs[0].name) {
			t.Errorf("%s: halted without naming the canary: %s", f.procs[i].name, st.Why)
		}
		if simPatched(t, f.procs[i], module) {
			t.Errorf("%s still runs %s", f.procs[i].name, module)
		}
		if i != 0 && f.everLoaded(i, module) {
			t.Errorf("%s loaded %s outside the plan", f.procs[i].name, module)
		}
	}
	if err := sim.SetFaults(filepath.Join(f.procs[0].dir, "kernel"), sim.Faults{}); err != nil {
		t.Fatal(err)
	}
	f.waitMembers(60*time.Second, len(f.procs))
}

// steadyPlanID picks a rollout id whose 50% stage takes at least one host
// of each side besides the canary and leaves at least one out, so the
// split shows on both sides.
func (f *netFleet) steadyPlanID(cycle int) (string, map[int]bool) {
	for k := range 1000 {
		id := fmt.Sprintf("steady-%d-%d", cycle, k)
		in := map[int]bool{0: true}
		var inA, inB, out bool
		for i := 1; i < len(f.procs); i++ {
			if rollout.Bucket(id, f.procs[i].name) < 5000 {
				in[i] = true
				inA = inA || f.lab.hosts[i].side == 0
				inB = inB || f.lab.hosts[i].side == 1
			} else {
				out = true
			}
		}
		if inA && inB && out {
			return id, in
		}
	}
	f.t.Fatal("no rollout id splits the fleet")
	return "", nil
}

// continueAcrossPartition: no failure; the split comes while the canary
// watches its patch.
func (f *netFleet) continueAcrossPartition(cycle int) {
	t := f.t
	module := fmt.Sprintf("livepatch_good%d", cycle)
	id, half := f.steadyPlanID(cycle)
	bundle, digest := f.bundle(module, fmt.Sprintf("cve-2026-2%03d", cycle))
	f.start(0, bundle, id, stagedPlan(id, digest, 6*time.Second))
	waitFor(t, 60*time.Second, "every agent follows the rollout", func() error {
		_, err := f.statuses(id, f.all())
		return err
	})
	f.lab.partition()
	a, b := f.side(0), f.side(1)
	// Side 0 sees its canary pass and opens 50%: its hosts there apply,
	// and the stage waits for side 1's, which it cannot see.
	waitFor(t, 60*time.Second, "side 0 opens 50% and waits for side 1", func() error {
		sts, err := f.statuses(id, a)
		if err != nil {
			return err
		}
		for i, st := range sts {
			if st.Open != 1 || len(st.Stages) < 2 || !strings.Contains(strings.Join(st.Stages[1].WaitingFor, " "), "(unreachable)") {
				return fmt.Errorf("%s: stage %d open: %s", f.procs[i].name, st.Open, st.Why)
			}
		}
		for _, i := range a {
			if half[i] && !simPatched(t, f.procs[i], module) {
				return fmt.Errorf("%s has not applied", f.procs[i].name)
			}
		}
		return nil
	})
	// Held split for a few seconds: nothing goes further than the plan
	// allows on either side.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		sa, err := f.statuses(id, a)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := f.statuses(id, b)
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range sa {
			if st.State != rollout.Running || st.Open != 1 {
				t.Fatalf("%s (side 0) while split: %s, stage %d open: %s", f.procs[i].name, st.State, st.Open, st.Why)
			}
		}
		for i, st := range sb {
			if st.State != rollout.Running || st.Open != 0 {
				t.Fatalf("%s (side 1) while split: %s, stage %d open: %s", f.procs[i].name, st.State, st.Open, st.Why)
			}
		}
		for i := range f.procs {
			if f.everLoaded(i, module) && (f.lab.hosts[i].side == 1 || !half[i]) {
				t.Fatalf("%s applied %s while its stage was not open on its side", f.procs[i].name, module)
			}
		}
	}

	f.lab.heal()
	healed := time.Now()
	waitFor(t, 120*time.Second, "the rollout completes everywhere after healing", func() error {
		if err := f.converged(id, rollout.Done); err != nil {
			return err
		}
		for i, p := range f.procs {
			if !simPatched(t, p, module) {
				return fmt.Errorf("%s is not patched", f.procs[i].name)
			}
		}
		return nil
	})
	t.Logf("after healing, the rollout completed in %s", time.Since(healed).Round(100*time.Millisecond))
}

// faultTimes are how long a staged rollout took to complete everywhere
// and a canary halt to reach every agent.
type faultTimes struct{ rollout, halt time.Duration }

// timeRollouts runs a staged rollout (canary, 50%, 100%, 2 s health
// window) to completion, then a rollout whose canary fails during its
// health window until every agent reports it halted, and returns the
// times. round names the rollouts; cve makes their bundles distinct.
func (f *netFleet) timeRollouts(round string, cve int) faultTimes {
	t := f.t
	t.Helper()
	var m faultTimes
	module := "livepatch_staged_" + round
	id := "staged-" + round
	bundle, digest := f.bundle(module, fmt.Sprintf("cve-2026-%d", 3000+cve))
	start := time.Now()
	f.start(0, bundle, id, stagedPlan(id, digest, 2*time.Second))
	// The last thing waited for says what held a slow rollout up.
	var last error
	waitFor(t, 180*time.Second, round+": the staged rollout completes everywhere", func() error {
		err := func() error {
			if err := f.converged(id, rollout.Done); err != nil {
				return err
			}
			for i, p := range f.procs {
				if !simPatched(t, p, module) {
					return fmt.Errorf("%s is not patched", f.procs[i].name)
				}
			}
			return nil
		}()
		if err != nil {
			last = err
		}
		return err
	})
	m.rollout = time.Since(start)
	t.Logf("%s: the staged rollout completed in %.1f s; last waited for: %v", round, m.rollout.Seconds(), last)

	module = "livepatch_bad_" + round
	id = "bad-" + round
	bundle, digest = f.bundle(module, fmt.Sprintf("cve-2026-%d", 4000+cve))
	f.start(0, bundle, id, haltPlan(id, digest))
	waitFor(t, 120*time.Second, round+": every agent follows the rollout, the canary watches its patch", func() error {
		sts, err := f.statuses(id, f.all())
		if err != nil {
			return err
		}
		if st := sts[0]; st.Self.State != rollout.StateApplying || !simPatched(t, f.procs[0], module) {
			return fmt.Errorf("canary: %s", st.Self.State)
		}
		return nil
	})
	start = time.Now()
	if err := sim.SetFaults(filepath.Join(f.procs[0].dir, "kernel"), sim.Faults{module: {HealthFail: true}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 180*time.Second, round+": the halt reaches every agent", func() error {
		return f.converged(id, rollout.Halted)
	})
	m.halt = time.Since(start)
	for i := range f.procs {
		if simPatched(t, f.procs[i], module) || (i != 0 && f.everLoaded(i, module)) {
			t.Errorf("%s: %s loaded outside the canary or left applied", f.procs[i].name, module)
		}
	}
	return m
}

// TestRolloutUnderPacketLoss runs a staged rollout and a canary halt on a
// fleet in network namespaces, first on clean links, then with 10% of
// the packets every host sends dropped at random, and compares the
// times. SPLICEFLEET_LOSS_HOSTS (default 6) makes the long version.
func TestRolloutUnderPacketLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs root and network namespaces")
	}
	n := envInt(t, "SPLICEFLEET_LOSS_HOSTS", 6)
	c := newCLI(t)
	c.publish(1, 1)
	lab := newNetLab(t, make([]int, n))
	f := startNetFleet(t, c, lab)
	clean := f.timeRollouts("clean", 0)
	lab.loss(10)
	lossy := f.timeRollouts("lossy", 1)
	for i := range lab.hosts {
		if d := lab.dropped(i); d == 0 {
			t.Errorf("%s: no packet dropped", f.procs[i].name)
		} else {
			t.Logf("%s: %d packets dropped", f.procs[i].name, d)
		}
	}
	t.Logf("%d agents: the staged rollout completes in %.1f s with 10%% loss vs %.1f s without; the halt reaches all in %.1f s vs %.1f s",
		n, lossy.rollout.Seconds(), clean.rollout.Seconds(), lossy.halt.Seconds(), clean.halt.Seconds())
}

// TestRolloutUnderLossAndDelay runs the rollouts of
// TestRolloutUnderPacketLoss on a fleet whose links go through the link
// emulator (emuLink), first clean, then with 200 ms of delay and 10% loss
// on every host's egress, as `tc qdisc add dev eth0 root netem delay
// 200ms loss 10%` in each host would do: 200 ms one way, 400 ms a round
// trip. It compares the times and logs how often the agents suspected a
// peer.
//
// The agents keep their gossip timers, memberlist's LAN profile (a probe
// every 1 s that times out after 500 ms, gossip every 200 ms, suspicion
// for at least 4 probe intervals, a full state sync every 30 s): the
// agent has no others. A 400 ms round trip fits the probe timeout, but
// when a ping or its ack is lost, the indirect and TCP probes that would
// rescue it take another 800 ms and come too late, so agents suspect
// peers now and then; the suspected refute it in time, and at the end
// every agent must see every other alive. SPLICEFLEET_DELAY_HOSTS
// (default 6) makes the long version.
func TestRolloutUnderLossAndDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs root, network namespaces and /dev/net/tun")
	}
	n := envInt(t, "SPLICEFLEET_DELAY_HOSTS", 6)
	c := newCLI(t)
	c.publish(1, 1)
	lab := newEmuNetLab(t, make([]int, n))
	f := startNetFleet(t, c, lab)
	clean := f.timeRollouts("clean", 10)
	before := make([]emuCounts, n)
	for i, h := range lab.hosts {
		before[i] = h.link.egress.snapshot()
	}
	impaired := time.Now()
	lab.impair(200*time.Millisecond, 0.10)
	slow := f.timeRollouts("slow", 11)
	f.waitMembers(30*time.Second, n)
	// How often the agents suspected a peer, and declared one failed,
	// from their logs (the agents stop first: their output is complete).
	var suspected, failed [2]int
	for _, p := range f.procs {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		s, fl := memberlistSuspicions(t, p.out.String(), impaired)
		for k := range 2 {
			suspected[k] += s[k]
			failed[k] += fl[k]
		}
	}
	t.Logf("agents suspected a peer %d times on clean links, %d times impaired; declared one failed %d and %d times",
		suspected[0], suspected[1], failed[0], failed[1])
	for i, h := range lab.hosts {
		got := h.link.egress.snapshot().minus(before[i])
		if got.Lost == 0 || got.Sent == 0 {
			t.Errorf("%s: egress %+v: nothing lost or nothing sent", f.procs[i].name, got)
		} else {
			t.Logf("%s: egress while impaired: %d frames, %d lost, %d over the delay line's limit", f.procs[i].name, got.Read, got.Lost, got.Overflow)
		}
	}
	t.Logf("%d agents: the staged rollout completes in %.1f s with 200 ms delay and 10%% loss vs %.1f s on clean links (%.1fx); the halt reaches all in %.1f s vs %.1f s (%.1fx)",
		n, slow.rollout.Seconds(), clean.rollout.Seconds(), slow.rollout.Seconds()/clean.rollout.Seconds(),
		slow.halt.Seconds(), clean.halt.Seconds(), slow.halt.Seconds()/clean.halt.Seconds())
}

// memberlistSuspicions counts memberlist's suspicions of a peer ("Suspect
// X has failed") and declarations that one failed ("Marking X as
// failed") in an agent's log, before and after a time.
func memberlistSuspicions(t *testing.T, log string, split time.Time) (suspected, failed [2]int) {
	t.Helper()
	for line := range strings.Lines(log) {
		s, ok := strings.CutPrefix(line, "time=")
		if !ok {
			continue
		}
		stamp, _, _ := strings.Cut(s, " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			t.Fatalf("agent log: %q: %v", line, err)
		}
		k := 0
		if at.After(split) {
			k = 1
		}
		switch {
		case strings.Contains(line, "memberlist: Suspect "):
			suspected[k]++
		case strings.Contains(line, "memberlist: Marking "):
			failed[k]++
		}
	}
	return suspected, failed
}
