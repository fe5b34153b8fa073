package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// rolloutStatus reads a rollout's status through the CLI (which exits 1
// for a halted, rolled back or revoked one).
func (c *cli) rolloutStatus(socket, id string) (rollout.Status, error) {
	var st rollout.Status
	code, out, errs := c.run("rollout", "status", id, "--json", "--control-socket", socket)
	if code != 0 && code != 1 {
		return st, fmt.Errorf("rollout status: exit %d: %s", code, errs)
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// simPatched says whether an agent process's simulated kernel runs the
// module.
func simPatched(t *testing.T, p *agentProc, module string) bool {
	t.Helper()
	k, err := sim.Open(filepath.Join(p.dir, "kernel"))
	if err != nil {
		t.Fatal(err)
	}
	lps, err := k.Livepatches()
	if err != nil {
		t.Fatal(err)
	}
	for _, lp := range lps {
		if lp.Name == module && lp.Enabled {
			return true
		}
	}
	return false
}

// TestRolloutAsProcesses drives a rollout with the CLI against three agent
// processes: publish --plan, rollout list and status, a refused plan and
// refused commands, then revoke, which rolls the patch back everywhere.
func TestRolloutAsProcesses(t *testing.T) {
	c := newCLI(t)
	bundle := c.publish(1, 1)
	procs := startAgents(t, c, 3)
	waitFor(t, 60*time.Second, "three members", func() error {
		_, out, _ := c.run("members", "--control-socket", procs[2].socket)
		if n := strings.Count(out, " alive"); n != 3 {
			return fmt.Errorf("%d alive", n)
		}
		return nil
	})
	var in inspection
	if err := json.Unmarshal([]byte(c.ok("inspect", "--json", bundle)), &in); err != nil {
		t.Fatal(err)
	}
	key := c.path("keya.sec.asc")

	// Refused: no stages; no signature; a plan for another bundle.
	noStages := c.write("nostages.yaml", []byte("id: fix\nbundle: "+in.ManifestDigest+"\n"))
	code, _, errs := c.run("publish", "--control-socket", procs[0].socket, "--plan", noStages, "--key", key, bundle)
	if code != 1 || !strings.Contains(errs, "needs stages") {
		t.Errorf("plan without stages: exit %d: %s", code, errs)
	}
	plan := c.write("plan.yaml", []byte(`id: fix
bundle: `+in.ManifestDigest+`
stages:
  - percent: 34
    soak: 200ms
  - percent: 100
gates:
  health_window: 200ms
allow_simulated: true
`))
	code, _, errs = c.run("publish", "--control-socket", procs[0].socket, "--plan", plan, bundle)
	if code != 2 || !strings.Contains(errs, "--key") {
		t.Errorf("unsigned plan: exit %d: %s", code, errs)
	}
	other := c.write("other.yaml", []byte(strings.Replace(string(c.read("plan.yaml")), in.ManifestDigest, strings.Repeat("ab", 32), 1)))
	code, _, errs = c.run("publish", "--control-socket", procs[0].socket, "--plan", other, "--key", key, bundle)
	if code != 1 || !strings.Contains(errs, "names bundle abab") {
		t.Errorf("plan for another bundle: exit %d: %s", code, errs)
	}

	out := c.ok("publish", "--control-socket", procs[0].socket, "--plan", plan, "--key", key, bundle)
	if !strings.Contains(out, "rollout fix started") {
		t.Fatalf("publish --plan: %s", out)
	}
	waitFor(t, 60*time.Second, "every host patched, rollout done", func() error {
		for _, p := range procs {
			st, err := c.rolloutStatus(p.socket, "fix")
			if err != nil {
				return err
			}
			if st.State != rollout.Done {
				return fmt.Errorf("%s: %s: %s", p.name, st.State, st.Why)
			}
			if !simPatched(t, p, "livepatch_fix") {
				return fmt.Errorf("%s is not patched", p.name)
			}
		}
		return nil
	})
	out = c.ok("rollout", "status", "fix", "--control-socket", procs[1].socket)
	for _, want := range []string{"rollout fix (plan ", "state:   done", "2 100%  yes   3       3        3        0       0"} {
		if !strings.Contains(out, want) {
			t.Errorf("rollout status lacks %q:\n%s", want, out)
		}
	}
	if out := c.ok("rollout", "list", "--control-socket", procs[2].socket); !strings.Contains(out, "fix") || !strings.Contains(out, "done") {
		t.Errorf("rollout list:\n%s", out)
	}
	// Completion offers the live values: rollout ids from the agent, the
	// patches applied on the host, nothing (and no file names) when the
	// agent does not answer.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "status", "--control-socket", procs[1].socket, ""}, "fix"},
		{[]string{"rollout", "halt", "--control-socket", procs[1].socket, "f"}, "fix"},
		{[]string{"view", "--state-dir", filepath.Join(procs[0].dir, "state"), ""}, "cve-2026-0001"},
		{[]string{"undo", "--state-dir", filepath.Join(procs[0].dir, "state"), "cve"}, "cve-2026-0001"},
		{[]string{"undo", "--state-dir", filepath.Join(procs[0].dir, "state"), "x"}, ""},
		{[]string{"rollout", "status", "--control-socket", c.path("nobody.sock"), ""}, ""},
		{[]string{"rollout", "status", "--control-socket", procs[1].socket, "x"}, ""},
	} {
		out := c.ok(append([]string{"__complete"}, tc.args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if last := lines[len(lines)-1]; last != ":4" {
			t.Errorf("complete %v: directive %q, want :4 (no file names)\n%s", tc.args, last, out)
		}
		var values []string
		for _, l := range lines[:len(lines)-1] {
			if l != "" && !strings.HasPrefix(l, "Completion ended") {
				values = append(values, l)
			}
		}
		if got := strings.Join(values, ","); got != tc.want {
			t.Errorf("complete %v offers %q, want %q", tc.args, got, tc.want)
		}
	}

	// Every --json output has one style: snake_case keys (the tags' own
	// keys aside).
	for _, args := range [][]string{
		{"members", "--json", "--control-socket", procs[0].socket},
		{"fleet", "status", "--json", "--control-socket", procs[0].socket},
		{"rollout", "list", "--json", "--control-socket", procs[0].socket},
		{"rollout", "status", "fix", "--json", "--control-socket", procs[0].socket},
		{"view", "--json", "--state-dir", filepath.Join(procs[0].dir, "state")},
		{"inspect", "--json", bundle},
	} {
		var v any
		if err := json.Unmarshal([]byte(c.ok(args...)), &v); err != nil {
			t.Errorf("%v: %v", args, err)
			continue
		}
		if bad := notSnakeCase(v, ""); len(bad) > 0 {
			t.Errorf("%v: keys not in snake_case: %v", args, bad)
		}
	}

	// Stages are numbered from 1 in JSON as in the text: the done
	// two-stage rollout has stage 2 open, and every host is in stage 1
	// or 2.
	var raw struct {
		Open int `json:"open"`
		Self struct {
			Stage int `json:"stage"`
		} `json:"self"`
	}
	if err := json.Unmarshal([]byte(c.ok("rollout", "status", "fix", "--json", "--control-socket", procs[0].socket)), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Open != 2 || raw.Self.Stage < 1 || raw.Self.Stage > 2 {
		t.Errorf("rollout status --json: open %d, self.stage %d; want 2 and 1 or 2", raw.Open, raw.Self.Stage)
	}

	// Publishing the same plan again starts nothing and says so.
	if out := c.ok("publish", "--control-socket", procs[0].socket, "--plan", plan, "--key", key, bundle); !strings.Contains(out, "rollout fix (plan ") || !strings.Contains(out, "is already done") {
		t.Errorf("publish of a finished plan: %s", out)
	}

	// Halt of a done rollout is refused before anything is signed, with
	// what to do instead (exit 1); so is a forget of its bundle, which
	// hosts that join later apply.
	code, out, errs = c.run("rollout", "halt", "fix", "--key", key, "--control-socket", procs[1].socket)
	if code != 1 || !strings.Contains(errs, "rollout fix is done: every stage passed") || !strings.Contains(errs, "revoke it") {
		t.Errorf("halt of a done rollout: exit %d: %s%s", code, out, errs)
	}
	for _, args := range [][]string{{"forget", in.ManifestDigest}, {"forget", in.ManifestDigest[:10], "--key", key}} {
		code, out, errs = c.run(append(args, "--control-socket", procs[1].socket)...)
		if code != 1 || !strings.Contains(errs, "rollout fix is done") {
			t.Errorf("%s of a done rollout's bundle: exit %d: %s%s", strings.Join(args, " "), code, out, errs)
		}
	}
	// A command signed by a key nobody trusts is refused (exit 1).
	c.ok("signing-key", "generate", "--uid", "Stranger <x@example.com>", "--out", c.path("stranger"))
	code, _, errs = c.run("rollout", "revoke", "fix", "--key", c.path("stranger.sec.asc"), "--control-socket", procs[1].socket)
	if code != 1 || !strings.Contains(errs, "not a trusted key") {
		t.Errorf("untrusted revoke: exit %d: %s", code, errs)
	}
	// Stages are counted as status counts them; stage 1 opens by itself.
	code, _, errs = c.run("rollout", "promote", "fix", "--stage", "1", "--key", key, "--control-socket", procs[1].socket)
	if code != 1 || !strings.Contains(errs, "--stage 1: rollout fix has stages 1 to 2, and stage 1 opens when it starts") {
		t.Errorf("promote --stage 1: exit %d: %s", code, errs)
	}
	// Done is final: pause (or resume, promote, halt) changes nothing, and
	// is refused before anything is signed.
	code, _, errs = c.run("rollout", "pause", "fix", "--key", key, "--control-socket", procs[1].socket)
	if code != 1 || !strings.Contains(errs, "rollout fix is done") || !strings.Contains(errs, "revoke it") {
		t.Errorf("pause of a done rollout: exit %d: %s", code, errs)
	}
	// A command signed elsewhere: its bytes written out, signed by GnuPG
	// with the trusted key, sent with the detached signature.
	g := newGPG(t)
	g.must("--import", key)
	cmdFile := c.path("revoke.cmd")
	out = c.ok("rollout", "revoke", "fix", "--reason", "regression", "--body-out", cmdFile, "--control-socket", procs[1].socket)
	if !strings.Contains(out, "wrote revoke fix (seq 1)") {
		t.Errorf("--body-out: %s", out)
	}
	g.must("--armor", "--detach-sign", "-o", cmdFile+".asc", cmdFile)
	code, _, errs = c.run("rollout", "halt", "fix", "--body", cmdFile, "--signature", cmdFile+".asc", "--control-socket", procs[1].socket)
	if code != 1 || !strings.Contains(errs, "is a revoke of plan") {
		t.Errorf("a revoke sent as halt: exit %d: %s", code, errs)
	}
	out = c.ok("rollout", "revoke", "fix", "--body", cmdFile, "--signature", cmdFile+".asc", "--control-socket", procs[1].socket)
	if !strings.Contains(out, "revoke fix (seq 1)") {
		t.Errorf("revoke signed by GnuPG: %s", out)
	}
	// The same sequence number again is refused.
	code, _, errs = c.run("rollout", "revoke", "fix", "--seq", "1", "--key", key, "--control-socket", procs[1].socket)
	if code != 1 || !strings.Contains(errs, "sequence number already used") {
		t.Errorf("replayed seq: exit %d: %s", code, errs)
	}
	waitFor(t, 60*time.Second, "every host rolled back", func() error {
		for _, p := range procs {
			st, err := c.rolloutStatus(p.socket, "fix")
			if err != nil {
				return err
			}
			if st.State != rollout.Revoked || !strings.Contains(st.Why, "revoke by operator (seq 1): regression") {
				return fmt.Errorf("%s: %s: %s", p.name, st.State, st.Why)
			}
			if simPatched(t, p, "livepatch_fix") {
				return fmt.Errorf("%s still runs the patch", p.name)
			}
		}
		return nil
	})
	// On a host, view names why the patch was reverted.
	waitFor(t, 60*time.Second, "view names the revoke", func() error {
		code, out, errs := c.run("view", "cve-2026-0001", "--state-dir", filepath.Join(procs[0].dir, "state"), "--kernel", "sim:"+filepath.Join(procs[0].dir, "kernel"))
		if code != 0 || !regexp.MustCompile(`(?m)^state:\s+reverted$`).MatchString(out) ||
			!regexp.MustCompile(`(?m)^reason:\s+rolled back: rollout fix revoked: revoke by operator \(seq 1\): regression$`).MatchString(out) {
			return fmt.Errorf("exit %d: %s%s", code, out, errs)
		}
		return nil
	})
	// A host's key, and an operators' re-key of it: one signed by a key
	// nobody trusts is refused (exit 1), a trusted one reaches the agent.
	out = c.ok("hosts", "key", "--control-socket", procs[0].socket)
	fields := strings.Fields(out)
	if len(fields) != 2 || fields[0] != procs[0].name || len(fields[1]) != 43 {
		t.Fatalf("hosts key: %q", out)
	}
	code, _, errs = c.run("hosts", "rekey", fields[0], "--host-key", fields[1], "--key", c.path("stranger.sec.asc"), "--control-socket", procs[1].socket)
	if code != 1 || !strings.Contains(errs, "not a trusted key") {
		t.Errorf("untrusted re-key: exit %d: %s", code, errs)
	}
	code, _, errs = c.run("hosts", "rekey", fields[0], "--host-key", "not-a-key", "--key", key, "--control-socket", procs[1].socket)
	if code != 1 || !strings.Contains(errs, "is not a host key") {
		t.Errorf("re-key to junk: exit %d: %s", code, errs)
	}
	if out := c.ok("hosts", "rekey", fields[0], "--host-key", fields[1], "--key", key, "--reason", "reinstalled", "--control-socket", procs[1].socket); !strings.Contains(out, "the fleet takes host key "+fields[1]) {
		t.Errorf("re-key: %s", out)
	}
	// Resume of a revoked rollout is refused (exit 1): a halt is final.
	code, out, errs = c.run("rollout", "resume", "fix", "--key", key, "--control-socket", procs[2].socket)
	if code != 1 || !strings.Contains(errs, "a halt is final and resume only undoes a pause") {
		t.Errorf("resume of a revoked rollout: exit %d: %s%s", code, out, errs)
	}

	// Its bundle can go now: on one host, then on every host by a signed
	// forget.
	out = c.ok("forget", "cve-2026-0001@2", "--control-socket", procs[2].socket)
	if !strings.Contains(out, "forgot cve-2026-0001@2 (manifest "+in.ManifestDigest+") on this host") {
		t.Errorf("local forget: %s", out)
	}
	held := func(p *agentProc) int {
		var entries []splice.Entry
		if err := agent.NewControlClient(p.socket).Do("GET", "/v1/bundles", nil, &entries); err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	if held(procs[2]) != 0 || held(procs[0]) != 1 {
		t.Errorf("after a local forget on %s: %d and %d held", procs[2].name, held(procs[2]), held(procs[0]))
	}
	code, out, errs = c.run("forget", in.ManifestDigest, "--key", c.path("stranger.sec.asc"), "--control-socket", procs[0].socket)
	if code != 1 || !strings.Contains(errs, "not a trusted key") {
		t.Errorf("untrusted forget: exit %d: %s%s", code, out, errs)
	}
	out = c.ok("forget", in.ManifestDigest[:12], "--key", key, "--reason", "revoked", "--control-socket", procs[0].socket)
	if !strings.Contains(out, "forget of cve-2026-0001@2 accepted here and sent to the fleet") {
		t.Errorf("fleet-wide forget: %s", out)
	}
	waitFor(t, 60*time.Second, "every agent dropped the bundle", func() error {
		for _, p := range procs {
			if n := held(p); n != 0 {
				return fmt.Errorf("%s holds %d bundles", p.name, n)
			}
		}
		return nil
	})
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// notSnakeCase lists the keys of a decoded JSON value that are not
// snake_case, with their paths; the keys of "tags" maps are the
// operators' own and are left alone.
func notSnakeCase(v any, path string) []string {
	var bad []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if !snakeCase.MatchString(k) {
				bad = append(bad, path+"."+k)
			}
			if k == "tags" {
				continue
			}
			bad = append(bad, notSnakeCase(x, path+"."+k)...)
		}
	case []any:
		for i, x := range v {
			bad = append(bad, notSnakeCase(x, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return bad
}
