package rollout

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

const digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

type fleet struct {
	r       *Rollout
	members []Member
	// states and fails are the hosts' signed reports: states by node,
	// and failures with their reasons.
	states map[string]HostState
	fails  map[string]string
}

func newFleet(t *testing.T, plan string, n int, rings map[int]string) *fleet {
	t.Helper()
	p, err := DecodePlan([]byte(plan))
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{r: New(&VerifiedPlan{Plan: p, Digest: digest}, KernelTarget{Release: "6.1.0-56", Arch: "x86_64"}, t0), fails: map[string]string{}, states: map[string]HostState{}}
	for i := range n {
		m := Member{Name: fmt.Sprintf("host-%02d", i), Status: "alive", Kernel: "6.1.0-56", Arch: "x86_64",
			Tags: map[string]string{}}
		if ring, ok := rings[i]; ok {
			m.Tags[RingTag] = ring
		}
		f.members = append(f.members, m)
	}
	return f
}

func (f *fleet) eval(self string, now time.Time) Status {
	return f.r.Evaluate(View{Self: self, Members: f.members, Reports: f.reports()}, now)
}

func (f *fleet) reports() map[string]Evidence {
	out := map[string]Evidence{}
	for node, s := range f.states {
		out[node] = Evidence{State: s}
	}
	for node, reason := range f.fails {
		out[node] = Evidence{State: StateFailed, Reason: reason}
	}
	return out
}

// step lets every host that should apply report state, and returns who
// applied.
func (f *fleet) step(now time.Time, state HostState) []string {
	var did []string
	for i := range f.members {
		st := f.eval(f.members[i].Name, now)
		if st.Self.Apply {
			f.states[f.members[i].Name] = state
			did = append(did, f.members[i].Name)
		}
	}
	return did
}

func (f *fleet) set(state HostState) {
	for i := range f.members {
		if f.states[f.members[i].Name] != StateNone {
			f.states[f.members[i].Name] = state
		}
	}
}

const stagedPlan = `
id: staged
bundle: ` + digest + `
stages:
  - ring: canary
    soak: 1m
  - percent: 50
    soak: 5m
  - percent: 100
`

func TestStagedRolloutCompletes(t *testing.T) {
	f := newFleet(t, stagedPlan, 20, map[int]string{3: "canary"})
	did := f.step(t0, StateApplying)
	if strings.Join(did, ",") != "host-03" {
		t.Fatalf("first stage applied on %v, want only the canary host-03", did)
	}
	st := f.eval("host-00", t0)
	if st.Open != 0 || !strings.Contains(st.Why, "host-03 (applying)") {
		t.Errorf("while the canary is in its health window: open %d, why %q", st.Open, st.Why)
	}
	f.set(StateHealthy)
	st = f.eval("host-00", t0.Add(time.Second))
	if st.Open != 0 || !st.Stages[0].Passed || !strings.Contains(st.Why, "opens in 1m0s") {
		t.Fatalf("canary healthy: open %d passed %t why %q", st.Open, st.Stages[0].Passed, st.Why)
	}
	// Soak not over: nobody else applies.
	if did := f.step(t0.Add(59*time.Second), StateApplying); len(did) != 0 {
		t.Fatalf("applied during the canary's soak: %v", did)
	}
	did = f.step(t0.Add(62*time.Second), StateHealthy)
	if len(did) < 4 || len(did) > 16 {
		t.Fatalf("50%% stage applied on %d of 19 hosts: %v", len(did), did)
	}
	for _, n := range did {
		if b := Bucket("staged", n); b >= 5000 {
			t.Errorf("%s (bucket %d) applied in the 50%% stage", n, b)
		}
	}
	st = f.eval("host-00", t0.Add(63*time.Second))
	if st.Open != 1 || !st.Stages[1].Passed || st.Stages[1].Cohort != len(did)+1 {
		t.Fatalf("50%% stage: %+v", st.Stages[1])
	}
	f.step(t0.Add(63*time.Second+5*time.Minute), StateHealthy)
	st = f.eval("host-00", t0.Add(64*time.Second+5*time.Minute))
	if st.State != Done || st.Stages[2].Healthy != 20 {
		t.Fatalf("after the last stage: state %s, %+v, why %q", st.State, st.Stages[2], st.Why)
	}
}

func TestMissingReportsWait(t *testing.T) {
	f := newFleet(t, stagedPlan, 5, map[int]string{0: "canary", 1: "canary"})
	f.states[f.members[0].Name] = StateHealthy
	f.members[1].Status = "failed" // unreachable, never reported
	st := f.eval("host-04", t0.Add(time.Hour))
	if st.Open != 0 || st.Stages[0].Passed || st.Self.Apply {
		t.Fatalf("a stage with an unreported host opened: %+v", st)
	}
	if !strings.Contains(st.Why, "host-01 (unreachable)") {
		t.Errorf("why = %q, want it to name the unreachable host", st.Why)
	}
	// A host that left the cluster is no longer in the cohort.
	f.members[1].Status = "left"
	st = f.eval("host-04", t0.Add(time.Hour))
	if !st.Stages[0].Passed {
		t.Errorf("after the host left: %+v", st.Stages[0])
	}
}

func TestFailureHaltsAndRollsBack(t *testing.T) {
	f := newFleet(t, stagedPlan, 10, map[int]string{3: "canary", 4: "canary"})
	f.step(t0, StateApplying)
	f.states[f.members[4].Name] = StateHealthy
	f.fails["host-03"] = "health check: Oops in kernel log"
	st := f.eval("host-04", t0.Add(time.Second))
	if st.State != Halted || !st.Self.RollBack || st.Self.Apply {
		t.Fatalf("after a canary failure: state %s self %+v", st.State, st.Self)
	}
	if !strings.Contains(st.Why, "host-03: health check: Oops") {
		t.Errorf("why = %q, want the failing host and reason", st.Why)
	}
	// Sticky: even if the report disappears, it stays halted, and nobody
	// outside the canary applies, ever.
	delete(f.fails, "host-03")
	for _, d := range []time.Duration{time.Minute, time.Hour} {
		if did := f.step(t0.Add(d), StateApplying); len(did) != 0 {
			t.Fatalf("applied after the halt: %v", did)
		}
	}
	if st := f.eval("host-00", t0.Add(2*time.Hour)); st.State != Halted {
		t.Errorf("halt did not stick: %s", st.State)
	}
}

func TestHaltWithoutRollback(t *testing.T) {
	f := newFleet(t, stagedPlan+"on_halt: halt\n", 4, map[int]string{0: "canary", 1: "canary"})
	f.step(t0, StateHealthy)
	f.states[f.members[1].Name] = StateFailed
	st := f.eval("host-00", t0)
	if st.State != Halted || st.Self.RollBack {
		t.Errorf("on_halt: halt: state %s, roll back %t", st.State, st.Self.RollBack)
	}
}

func TestFailureRatioGate(t *testing.T) {
	plan := "id: ratio\nbundle: " + digest + "\nstages: [{percent: 100}]\ngates: {max_failures: -1, max_failure_ratio: 0.2}\n"
	f := newFleet(t, plan, 10, nil)
	f.step(t0, StateHealthy)
	f.states[f.members[0].Name] = StateFailed
	f.states[f.members[1].Name] = StateFailed
	if st := f.eval("host-05", t0); st.State == Halted {
		t.Fatalf("2 of 10 failed (not above 0.2) halted: %s", st.Why)
	}
	f.states[f.members[2].Name] = StateFailed
	if st := f.eval("host-05", t0); st.State != Halted {
		t.Fatalf("3 of 10 failed did not halt: %s", st.Why)
	}
}

func TestUntargetedHostsStayOut(t *testing.T) {
	plan := "id: t\nbundle: " + digest + "\ntarget: {tags: {role: web}}\nstages: [{percent: 100}]\n"
	f := newFleet(t, plan, 4, nil)
	f.members[0].Tags["role"] = "web"
	f.members[1].Tags["role"] = "db"
	f.members[2].Kernel = "6.1.0-55"
	f.members[3].Tags["role"] = "web"
	f.members[3].Arch = "aarch64"
	did := f.step(t0, StateApplying)
	if strings.Join(did, ",") != "host-00" {
		t.Errorf("applied on %v, want only host-00 (web, right kernel and arch)", did)
	}
}

func cmd(seq uint64, action string, stage int) Command {
	return Command{Plan: digest, Seq: seq, Action: action, Stage: stage, Issued: t0}
}

func TestCommands(t *testing.T) {
	t.Run("promote opens the next stage", func(t *testing.T) {
		f := newFleet(t, stagedPlan, 10, map[int]string{0: "canary"})
		if err := f.r.AddCommand(cmd(1, ActionPromote, 1)); err != nil {
			t.Fatal(err)
		}
		st := f.eval("host-09", t0)
		if st.Open != 1 {
			t.Errorf("after promote: open %d, want 1", st.Open)
		}
	})
	t.Run("pause and resume", func(t *testing.T) {
		f := newFleet(t, stagedPlan, 10, map[int]string{0: "canary"})
		_ = f.r.AddCommand(cmd(1, ActionPause, 0))
		if did := f.step(t0, StateApplying); len(did) != 0 {
			t.Fatalf("applied while paused: %v", did)
		}
		if st := f.eval("host-00", t0); st.State != Paused || !strings.Contains(st.Why, "seq 1") {
			t.Errorf("paused: %s %q", st.State, st.Why)
		}
		_ = f.r.AddCommand(cmd(2, ActionResume, 0))
		if did := f.step(t0, StateApplying); len(did) != 1 {
			t.Errorf("after resume applied on %v, want the canary", did)
		}
	})
	t.Run("replayed", func(t *testing.T) {
		f := newFleet(t, stagedPlan, 2, nil)
		_ = f.r.AddCommand(cmd(1, ActionPause, 0))
		if err := f.r.AddCommand(cmd(1, ActionPause, 0)); !errors.Is(err, ErrReplayed) {
			t.Errorf("replay: err = %v, want ErrReplayed", err)
		}
		if err := f.r.AddCommand(cmd(1, ActionResume, 0)); !errors.Is(err, ErrReplayed) {
			t.Errorf("another command with a used seq: err = %v, want ErrReplayed", err)
		}
		if st := f.eval("host-00", t0); st.State != Paused {
			t.Errorf("state %s after refused commands, want paused", st.State)
		}
	})
	t.Run("out of order ends as in order", func(t *testing.T) {
		in := newFleet(t, stagedPlan, 2, nil)
		out := newFleet(t, stagedPlan, 2, nil)
		seq := []Command{cmd(1, ActionPause, 0), cmd(2, ActionResume, 0), cmd(3, ActionPause, 0)}
		for _, c := range seq {
			_ = in.r.AddCommand(c)
		}
		for _, i := range []int{2, 0, 1} {
			if err := out.r.AddCommand(seq[i]); err != nil {
				t.Fatal(err)
			}
		}
		a, b := in.eval("host-00", t0), out.eval("host-00", t0)
		if a.State != Paused || b.State != a.State || b.Why != a.Why {
			t.Errorf("in order: %s %q; out of order: %s %q", a.State, a.Why, b.State, b.Why)
		}
	})
	t.Run("halt is final", func(t *testing.T) {
		f := newFleet(t, stagedPlan, 2, map[int]string{0: "canary"})
		f.step(t0, StateHealthy)
		_ = f.r.AddCommand(cmd(5, ActionHalt, 0))
		_ = f.r.AddCommand(cmd(6, ActionResume, 0))
		st := f.eval("host-00", t0)
		if st.State != Halted || st.Self.RollBack {
			t.Errorf("halt then resume: state %s rollback %t", st.State, st.Self.RollBack)
		}
	})
	t.Run("revoke rolls back", func(t *testing.T) {
		f := newFleet(t, stagedPlan+"on_halt: halt\n", 2, map[int]string{0: "canary"})
		f.step(t0, StateHealthy)
		_ = f.r.AddCommand(cmd(1, ActionRevoke, 0))
		if st := f.eval("host-00", t0); st.State != Revoked || !st.Self.RollBack {
			t.Errorf("revoke: state %s rollback %t", st.State, st.Self.RollBack)
		}
	})
	t.Run("wrong plan or stage", func(t *testing.T) {
		f := newFleet(t, stagedPlan, 2, nil)
		c := cmd(1, ActionHalt, 0)
		c.Plan = strings.Repeat("f", 64)
		if err := f.r.AddCommand(c); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("command for another plan: %v", err)
		}
		if err := f.r.AddCommand(cmd(2, ActionPromote, 7)); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("promote past the last stage: %v", err)
		}
	})
}

func TestPlanValidation(t *testing.T) {
	for _, tt := range []struct {
		name, yaml, want string
	}{
		{"no stages", "id: a\nbundle: " + digest + "\n", "needs stages"},
		{"empty stages", "id: a\nbundle: " + digest + "\nstages: []\n", "needs stages"},
		{"unknown key", "id: a\nbundle: " + digest + "\nstages: [{percent: 10}]\nstagez: 1\n", "stagez"},
		{"bad digest", "id: a\nbundle: abc\nstages: [{percent: 10}]\n", "manifest digest"},
		{"decreasing", "id: a\nbundle: " + digest + "\nstages: [{percent: 10}, {percent: 5}]\n", "above the stage before"},
		{"ring after percent", "id: a\nbundle: " + digest + "\nstages: [{percent: 10}, {ring: canary}]\n", "ring stages come before"},
		{"over 100", "id: a\nbundle: " + digest + "\nstages: [{percent: 101}]\n", "(0, 100]"},
		{"both", "id: a\nbundle: " + digest + "\nstages: [{percent: 10, ring: x}]\n", "not both"},
		{"on_halt", "id: a\nbundle: " + digest + "\nstages: [{percent: 10}]\non_halt: panic\n", "on_halt"},
		{"bad id", "id: A B\nbundle: " + digest + "\nstages: [{percent: 10}]\n", "id"},
		{"two documents", "id: a\nbundle: " + digest + "\nstages: [{percent: 10}]\n---\nid: b\n", "more than one"},
		{"cannot halt", "id: a\nbundle: " + digest + "\nstages: [{percent: 10}]\ngates: {max_failures: -1}\n", "must be able to halt"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodePlan([]byte(tt.yaml))
			if !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrInvalidPlan mentioning %q", err, tt.want)
			}
		})
	}
	p, err := DecodePlan([]byte(stagedPlan))
	if err != nil {
		t.Fatal(err)
	}
	if p.OnHalt != OnHaltRollback || p.Gates.MaxFailures != 1 || p.Gates.MinHealthy != 1 || p.Gates.HealthWindow != time.Minute {
		t.Errorf("defaults not filled: %+v %s", p.Gates, p.OnHalt)
	}
}

// testHostKey is a fixed Ed25519 key, as a host key.
type testKey struct{ priv ed25519.PrivateKey }

func (k testKey) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }
func (k testKey) Sign(m []byte) []byte      { return ed25519.Sign(k.priv, m) }

func testHostKey(t testing.TB, seed byte) testKey {
	t.Helper()
	return testKey{ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))}
}

func TestEventCodecs(t *testing.T) {
	key := testHostKey(t, 1)
	r := HostReport{Plan: digest, Node: strings.Repeat("n", 128), State: StateFailed, Seq: 7, Reason: strings.Repeat("é", 150)}
	b, err := EncodeReport(r, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(b)+len(ReportEvent) > 512 {
		t.Errorf("a report of %d bytes does not fit a serf user event", len(b))
	}
	got, err := DecodeReport(b)
	if err != nil || got.Node != r.Node || got.Plan != digest || got.Seq != 7 || got.State != StateFailed ||
		len(got.Reason) != 200 || !utf8.ValidString(got.Reason) || !bytes.Equal(got.Key, key.Public()) {
		t.Errorf("round trip: %+v %v", got, err)
	}
	for i := range b {
		if _, err := DecodeReport(b[:i]); err == nil {
			t.Fatalf("a report truncated to %d bytes decoded", i)
		}
		tampered := bytes.Clone(b)
		tampered[i] ^= 0x20
		if _, err := DecodeReport(tampered); !errors.Is(err, ErrReportSignature) && !errors.Is(err, ErrMalformedEvent) {
			t.Fatalf("a report with byte %d changed: %v", i, err)
		}
	}
	// Another key cannot sign for the same bytes: the key is part of them.
	other := testHostKey(t, 2)
	forged := append(bytes.Clone(b[:len(b)-96]), other.Public()...)
	forged = append(forged, b[len(b)-64:]...)
	if _, err := DecodeReport(forged); !errors.Is(err, ErrReportSignature) {
		t.Errorf("a signature moved under another key: %v", err)
	}
	// The unsigned failure report of earlier releases.
	if _, err := DecodeReport(append([]byte{1}, make([]byte, 120)...)); !errors.Is(err, ErrUnsignedReport) {
		t.Errorf("an unsigned report: %v", err)
	}
	a := DocAnnouncement{Kind: KindCommand, Digest: digest, Origin: "10.0.0.1:7947"}
	ab, err := EncodeDocAnnouncement(a)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeDocAnnouncement(ab); err != nil || got != a {
		t.Errorf("round trip: %+v %v", got, err)
	}
	if _, err := DecodeDocAnnouncement(append(ab, 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	tag := EncodeReports([]Report{{Plan: digest, State: StateHealthy}, {Plan: strings.Repeat("a", 64), State: StateFailed}})
	if tag != "0123456789=h,aaaaaaaaaa=f" {
		t.Errorf("reports tag = %q", tag)
	}
	if m := DecodeReports(tag + ",junk,bbbbbbbbbb=z"); len(m) != 2 || m["0123456789"] != StateHealthy {
		t.Errorf("decoded %v", m)
	}
}

// TestHaltRecordsStagesOpenedElsewhere: an agent that had not yet seen
// the canary's soak end when a host of the next stage failed halts when
// its own soak ends, before anything applies, and ends with that stage
// open like the agents that opened it. Until then the failure of a host
// in a stage it has not opened is no evidence: any host can sign one.
func TestHaltRecordsStagesOpenedElsewhere(t *testing.T) {
	f := newFleet(t, stagedPlan, 10, map[int]string{3: "canary"})
	f.step(t0, StateHealthy)
	var second []int
	for i, m := range f.members {
		if i != 3 && Bucket("staged", m.Name) < 5000 {
			second = append(second, i)
		}
	}
	if len(second) < 2 {
		t.Fatalf("50%% stage has %d hosts", len(second))
	}
	// Elsewhere the soak ended: one host of stage 2 applied, another failed.
	f.states[f.members[second[0]].Name] = StateHealthy
	f.fails[f.members[second[1]].Name] = "health check failed"
	st := f.eval("host-03", t0.Add(time.Second))
	if st.State != Running || st.Open != 0 || len(st.Regressed) != 1 {
		t.Fatalf("a failure in a stage this agent has not opened: state %s open %d regressed %v", st.State, st.Open+1, st.Regressed)
	}
	// Its soak ends: the stage it opens holds the failure, so it halts at
	// once, and no host of the stage is told to apply.
	for _, i := range second[2:] {
		if st := f.eval(f.members[i].Name, t0.Add(61*time.Second)); st.Self.Apply || st.State != Halted {
			t.Fatalf("%s when the soak ended: state %s apply %t", f.members[i].Name, st.State, st.Self.Apply)
		}
	}
	st = f.eval("host-03", t0.Add(62*time.Second))
	if st.State != Halted || st.Open != 1 || !st.Stages[1].Open || !strings.Contains(st.Why, "health check failed") {
		t.Fatalf("halted with a stage 2 host applied: state %s open %d why %q", st.State, st.Open+1, st.Why)
	}
	if !f.r.Changed() || f.r.Opened[1].IsZero() {
		t.Errorf("the opened stage is not recorded: %v", f.r.Opened)
	}
	// Kept when the reports are gone.
	delete(f.states, f.members[second[0]].Name)
	delete(f.fails, f.members[second[1]].Name)
	if st := f.eval("host-03", t0.Add(2*time.Minute)); st.Open != 1 || !Ended(st.State) {
		t.Errorf("later: state %s open %d", st.State, st.Open+1)
	}
}

// TestPeersCannotHalt: a host's own report that it halted or rolled
// back is no evidence of anything: the halt comes only from the signed
// failures or commands that caused it, which every agent holds too.
func TestPeersCannotHalt(t *testing.T) {
	f := newFleet(t, stagedPlan, 6, map[int]string{0: "canary", 1: "canary"})
	f.step(t0, StateHealthy)
	f.states[f.members[4].Name] = StateHalted
	f.states[f.members[5].Name] = StateRolledBack
	st := f.eval("host-00", t0)
	if st.State != Running || st.Self.RollBack {
		t.Fatalf("after peers' halted and rolled-back reports: state %s, roll back %t, why %q", st.State, st.Self.RollBack, st.Why)
	}
	f.fails["host-01"] = "health check: Oops"
	st = f.eval("host-00", t0)
	if st.State != Halted || !st.Self.RollBack || !strings.Contains(st.Why, "host-01: health check: Oops") {
		t.Errorf("the canary's own failure: state %s roll back %t why %q", st.State, st.Self.RollBack, st.Why)
	}
}

// TestDoneIsDone: once the last stage passed, no host's failure halts the
// rollout or rolls anything back; it shows as a regression. A signed
// revoke still does.
func TestDoneIsDone(t *testing.T) {
	f := newFleet(t, "id: quick\nbundle: "+digest+"\nstages: [{ring: canary, soak: 1m}, {percent: 100}]\n", 5, map[int]string{0: "canary"})
	f.step(t0, StateHealthy)
	f.step(t0.Add(2*time.Minute), StateHealthy)
	if st := f.eval("host-01", t0.Add(3*time.Minute)); st.State != Done {
		t.Fatalf("not done: %s %s", st.State, st.Why)
	}
	// A host that never reported healthy, and one that did, now fail.
	delete(f.states, "host-02")
	f.fails["host-02"] = "forged after the end"
	f.fails["host-03"] = "regressed"
	for _, n := range []string{"host-00", "host-01"} {
		st := f.eval(n, t0.Add(4*time.Minute))
		if st.State != Done || st.Self.RollBack || len(st.Failed) != 0 || len(st.Regressed) != 2 {
			t.Fatalf("%s: state %s roll back %t failed %v regressed %v", n, st.State, st.Self.RollBack, st.Failed, st.Regressed)
		}
	}
	// Done survives a restart.
	f.restart(t)
	if st := f.eval("host-01", t0.Add(5*time.Minute)); st.State != Done {
		t.Fatalf("after a restart: %s %s", st.State, st.Why)
	}
	if err := f.r.AddCommand(Command{Plan: digest, Seq: 1, Action: ActionRevoke, Reason: "regression"}); err != nil {
		t.Fatal(err)
	}
	st := f.eval("host-01", t0.Add(6*time.Minute))
	if st.State != Revoked || !st.Self.RollBack {
		t.Errorf("after a revoke: state %s roll back %t", st.State, st.Self.RollBack)
	}
}

// TestFailureAfterHealthyIsARegression: a host that signed healthy and
// later failed does not trip the gates of a running rollout; its stage
// waits instead.
func TestFailureAfterHealthyIsARegression(t *testing.T) {
	f := newFleet(t, stagedPlan, 6, map[int]string{0: "canary", 1: "canary"})
	f.step(t0, StateHealthy)
	reports := f.reports()
	reports["host-01"] = Evidence{State: StateFailed, Reason: "later", WasHealthy: true}
	st := f.r.Evaluate(View{Self: "host-00", Members: f.members, Reports: reports}, t0.Add(time.Second))
	if st.State != Running || st.Stages[0].Passed || len(st.Regressed) != 1 {
		t.Errorf("state %s passed %t regressed %v", st.State, st.Stages[0].Passed, st.Regressed)
	}
}

// TestSybilCanariesDoNotCount: members whose keys were pinned after the
// plan was accepted neither pass a canary stage by reporting healthy nor
// count in its share.
func TestSybilCanariesDoNotCount(t *testing.T) {
	f := newFleet(t, "id: syb\nbundle: "+digest+"\nstages: [{ring: canary, soak: 1m}, {percent: 100}]\ngates: {min_healthy: 0.5}\n", 6,
		map[int]string{0: "canary", 1: "canary", 2: "canary", 3: "canary"})
	for i := range f.members {
		f.members[i].KeySince = t0.Add(-time.Hour)
	}
	// Two of the four canaries appeared after the plan, and report healthy.
	f.members[2].KeySince, f.members[3].KeySince = t0.Add(time.Minute), t0.Add(time.Minute)
	f.states["host-02"], f.states["host-03"] = StateHealthy, StateHealthy
	eval := func(self string, at time.Time) Status {
		return f.r.Evaluate(View{Self: self, Members: f.members, Reports: f.reports(), KnownBy: t0}, at)
	}
	if st := eval("host-04", t0.Add(2*time.Minute)); st.Stages[0].Passed {
		t.Fatalf("the canary stage passed on made-up members: %s", st.Why)
	}
	f.states["host-00"] = StateHealthy
	if st := eval("host-04", t0.Add(3*time.Minute)); !st.Stages[0].Passed {
		t.Fatalf("one of two known canaries healthy (min_healthy 0.5) does not pass: %s", st.Why)
	}
}

// restart stands for an agent that stopped and started again: the
// rollout as it was persisted, read back.
func (f *fleet) restart(t *testing.T) {
	t.Helper()
	data, err := json.Marshal(f.r)
	if err != nil {
		t.Fatal(err)
	}
	var r Rollout
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	f.r = &r
}

// A restarted agent whose member list holds only itself (serf has not
// rejoined yet) sees an empty canary cohort. That is not a pass: the
// canary it saw before counts, as waiting, until it is heard of again,
// and the next stage opens only once the canary is healthy.
func TestViewWithoutTheCohortOpensNothing(t *testing.T) {
	for _, soak := range []string{"0s", "10m"} {
		t.Run("soak "+soak, func(t *testing.T) {
			f := newFleet(t, "id: restart\nbundle: "+digest+"\nstages:\n  - ring: canary\n    soak: "+soak+"\n  - percent: 100\n",
				3, map[int]string{0: "canary"})
			f.step(t0, StateApplying)
			if st := f.eval("host-01", t0); st.Open != 0 || st.Self.Apply {
				t.Fatalf("canary applying: open %d, apply %t", st.Open+1, st.Self.Apply)
			}
			f.restart(t)
			self := []Member{f.members[1]}
			for i, at := range []time.Duration{time.Second, 11 * time.Minute} {
				st := f.r.Evaluate(View{Self: "host-01", Members: self}, t0.Add(at))
				if st.Open != 0 || st.Self.Apply || st.Stages[0].Passed {
					t.Fatalf("view of itself only, %d: open %d, apply %t, stage 1 passed %t: %s", i, st.Open+1, st.Self.Apply, st.Stages[0].Passed, st.Why)
				}
				if st.Stages[0].Missing != 1 || !strings.Contains(st.Why, "host-00 (not seen since restart)") ||
					!strings.Contains(st.Why, "1 host not seen since restart") {
					t.Errorf("why = %q, want the canary named as not seen since restart", st.Why)
				}
			}
			// Rejoined: the canary is still in its health window.
			if st := f.eval("host-01", t0.Add(12*time.Minute)); st.Open != 0 || st.Self.Apply {
				t.Fatalf("full view, canary applying: open %d, apply %t: %s", st.Open+1, st.Self.Apply, st.Why)
			}
			f.set(StateHealthy)
			d, _ := time.ParseDuration(soak)
			now := t0.Add(13 * time.Minute)
			if st := f.eval("host-01", now); d > 0 && (st.Open != 0 || st.Self.Apply) {
				t.Fatalf("canary healthy, soak of %s not over: open %d", soak, st.Open+1)
			}
			if st := f.eval("host-01", now.Add(d)); st.Open != 1 || !st.Self.Apply {
				t.Fatalf("canary healthy and soaked: open %d, apply %t: %s", st.Open+1, st.Self.Apply, st.Why)
			}
		})
	}
}

// A host seen in a cohort that then leaves gracefully drops out of it,
// and stays out once serf forgot it (it is not "missing").
func TestSeenHostThatLeftDropsOut(t *testing.T) {
	f := newFleet(t, stagedPlan, 4, map[int]string{0: "canary", 1: "canary"})
	f.step(t0, StateApplying)
	f.states[f.members[0].Name] = StateHealthy
	f.members[1].Status = "left"
	if st := f.eval("host-03", t0.Add(time.Second)); !st.Stages[0].Passed || st.Stages[0].Cohort != 1 {
		t.Fatalf("the canary that left still counts: %+v", st.Stages[0])
	}
	f.members = append(f.members[:1], f.members[2:]...) // reaped
	f.restart(t)
	if st := f.eval("host-03", t0.Add(2*time.Second)); !st.Stages[0].Passed || st.Stages[0].Missing != 0 {
		t.Fatalf("after serf forgot the host that left: %+v", st.Stages[0])
	}
}

// The gate is checked again when the soak ends: a stage that passed once
// and then stopped passing (a host joined its cohort and has not
// reported) does not open the next; its soak starts again when it passes
// again.
func TestSoakEndChecksTheGateAgain(t *testing.T) {
	f := newFleet(t, stagedPlan, 6, map[int]string{0: "canary"})
	f.step(t0, StateHealthy)
	if st := f.eval("host-05", t0); !st.Stages[0].Passed {
		t.Fatalf("canary healthy: %s", st.Why)
	}
	// A second canary joins during the soak.
	f.members[1].Tags[RingTag] = "canary"
	st := f.eval("host-05", t0.Add(30*time.Second))
	if st.Stages[0].Passed || st.Stages[0].Cohort != 2 {
		t.Fatalf("with a canary that has not reported: %+v", st.Stages[0])
	}
	for _, at := range []time.Duration{61 * time.Second, 10 * time.Minute} {
		if st := f.eval("host-05", t0.Add(at)); st.Open != 0 || st.Self.Apply || !strings.Contains(st.Why, "host-01 (no report yet)") {
			t.Fatalf("at +%s, the soak of a pass that no longer holds ended: open %d, apply %t, why %q", at, st.Open+1, st.Self.Apply, st.Why)
		}
	}
	// It applies (its stage is open) and is healthy: the soak starts again.
	f.step(t0.Add(11*time.Minute), StateHealthy)
	st = f.eval("host-05", t0.Add(11*time.Minute))
	if st.Open != 0 || !st.Stages[0].Passed || !strings.Contains(st.Why, "opens in 1m0s") {
		t.Fatalf("both canaries healthy: open %d, why %q", st.Open+1, st.Why)
	}
	if st := f.eval("host-05", t0.Add(12*time.Minute)); st.Open != 1 {
		t.Fatalf("soaked again: open %d, why %q", st.Open+1, st.Why)
	}
}

// While the agent has not joined the cluster since it started, its view
// is no evidence: nothing passes, opens or applies, even a stage that
// would pass; once joined, the rollout goes on.
func TestJoiningViewOpensNothing(t *testing.T) {
	f := newFleet(t, "id: joining\nbundle: "+digest+"\nstages:\n  - ring: canary\n  - percent: 100\n", 3, map[int]string{0: "canary"})
	// A genuinely empty view of the canary ring would pass at once:
	// here there is a canary, healthy, and still nothing may open.
	f.states[f.members[0].Name] = StateHealthy
	v := View{Self: "host-01", Members: f.members, Joining: "not joined the cluster since start"}
	st := f.r.Evaluate(v, t0.Add(time.Hour))
	if st.Open != 0 || st.Self.Apply || !f.r.Passed[0].IsZero() || !strings.HasPrefix(st.Why, "waiting: not joined the cluster since start") {
		t.Fatalf("joining: open %d, apply %t, passed at %v, why %q", st.Open+1, st.Self.Apply, f.r.Passed[0], st.Why)
	}
	if st := f.eval("host-01", t0.Add(time.Hour)); st.Open != 1 || !st.Self.Apply {
		t.Fatalf("joined: open %d, apply %t, why %q", st.Open+1, st.Self.Apply, st.Why)
	}
}

// A host that runs the simulated kernel says so in its tags. A plan that
// does not allow simulated hosts leaves it out of every cohort: it
// applies nothing, and its health counts for nothing. A plan with
// allow_simulated takes it in like any other host.
func TestSimulatedHostsTakeNoPartUnlessAllowed(t *testing.T) {
	f := newFleet(t, stagedPlan, 20, map[int]string{3: "canary"})
	f.members[3].Simulated = true
	if did := f.step(t0, StateApplying); slices.Contains(did, "host-03") {
		t.Fatalf("the simulated canary applied a plan that does not allow simulated hosts: %v", did)
	}
	st := f.eval("host-03", t0)
	if st.Self.Targeted || st.Self.Apply {
		t.Errorf("the simulated host judges itself targeted %t, apply %t; want neither", st.Self.Targeted, st.Self.Apply)
	}
	if c := f.eval("host-00", t0).Stages[0].Cohort; c != 0 {
		t.Errorf("the canary stage counts %d hosts; the only canary is simulated, want 0", c)
	}

	allowed := newFleet(t, stagedPlan+"allow_simulated: true\n", 20, map[int]string{3: "canary"})
	allowed.members[3].Simulated = true
	if did := allowed.step(t0, StateApplying); strings.Join(did, ",") != "host-03" {
		t.Fatalf("with allow_simulated the canary stage applied on %v, want host-03", did)
	}
	if c := allowed.eval("host-00", t0).Stages[0].Cohort; c != 1 {
		t.Errorf("with allow_simulated the canary stage counts %d hosts, want 1", c)
	}
}

// TestRolledBackAfterHealthyCountsForItsStage: a host that signed a
// healthy report and rolled back since, by a halt, counts for its stage
// as it did for the agents that saw its healthy report then; an agent
// that missed that report (killed meanwhile) judges alike: its stage
// passes, the next one opens, and the failure there halts the rollout
// here too, instead of this agent waiting on the stage forever with the
// failure "outside the open stages".
func TestRolledBackAfterHealthyCountsForItsStage(t *testing.T) {
	f := newFleet(t, stagedPlan, 10, map[int]string{3: "canary"})
	f.step(t0, StateHealthy)
	reports := map[string]Evidence{"host-03": {State: StateHealthy}}
	var third string
	for i, m := range f.members {
		switch {
		case i == 3:
		case Bucket("staged", m.Name) < 5000:
			reports[m.Name] = Evidence{State: StateRolledBack, WasHealthy: true}
		case third == "":
			third = m.Name
			reports[m.Name] = Evidence{State: StateFailed, Reason: "health check failed"}
		default:
			reports[m.Name] = Evidence{State: StateRolledBack}
		}
	}
	eval := func(at time.Duration) Status {
		return f.r.Evaluate(View{Self: "host-03", Members: f.members, Reports: reports}, t0.Add(at))
	}
	eval(61 * time.Second)
	st := eval(61*time.Second + 5*time.Minute + time.Second)
	if st.State != Halted || !strings.Contains(st.Why, third+": health check failed") {
		t.Fatalf("state %s open %d: %s", st.State, st.Open+1, st.Why)
	}
}

// TestCloneSharesNoObservations: evaluating a clone records its
// observations in the clone only; the original stays as it was, and
// still has nothing to persist.
func TestCloneSharesNoObservations(t *testing.T) {
	p, err := DecodePlan([]byte("id: clone\nbundle: " + digest + "\nstages: [{percent: 100}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := New(&VerifiedPlan{Plan: p, Digest: digest}, KernelTarget{Release: "6.1.0-56", Arch: "x86_64"}, t0)
	r.Changed()
	members := []Member{{Name: "a", Status: "alive", Kernel: "6.1.0-56", Arch: "x86_64"}, {Name: "b", Status: "alive", Kernel: "6.1.0-56", Arch: "x86_64"}}
	v := View{Self: "a", Members: members, Reports: map[string]Evidence{"b": {State: StateHealthy}}}
	want := r.Evaluate(v, t0.Add(time.Minute))
	if !r.Changed() {
		t.Fatal("the test needs an evaluation that records something")
	}
	r2 := New(&VerifiedPlan{Plan: p, Digest: digest}, KernelTarget{Release: "6.1.0-56", Arch: "x86_64"}, t0)
	r2.Changed()
	c2 := r2.Clone()
	got := c2.Evaluate(v, t0.Add(time.Minute))
	if got.State != want.State || got.Open != want.Open {
		t.Errorf("the clone judged %s at stage %d, the rollout %s at stage %d", got.State, got.Open, want.State, want.Open)
	}
	if r2.Changed() || len(r2.Seen) != 0 || r2.DoneAt != (time.Time{}) {
		t.Errorf("evaluating the clone changed the rollout: seen %v, done at %v", r2.Seen, r2.DoneAt)
	}
	if !c2.Changed() {
		t.Error("the clone recorded nothing")
	}
}
