package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// Timing of the fleet scenario. The script's own bounds end every guest
// before the lab kills it: each wait gives up at fleetDeadline seconds of
// guest uptime, and the guest's timeout leaves room for the checks and
// the agent's shutdown after that.
const (
	fleetGuests   = 3
	fleetDeadline = 300 // guest uptime, seconds
	fleetTimeout  = 7 * time.Minute
	// The canary's soak keeps the others' applies several seconds after
	// the canary's, more than the guests' boot offsets, so their uptimes
	// order them.
	fleetSoak   = 6 * time.Second
	fleetWindow = 2 * time.Second
)

// fleetScript is every guest's /lab/run.sh after scriptPrelude, with
// PUBLISHER (yes on the canary, which publishes) and DEADLINE set before
// it. Every wait is bounded; the results are marks, so the script always
// ends with 0 and powers off.
const fleetScript = `
sock=/run/splicefleet/control.sock
sfc() { splicefleet "$@" --control-socket $sock; }
now_s() { cut -d. -f1 /proc/uptime; }
oneline() { tr -d '\n'; }
# within SECONDS CMD...: run CMD every 0.25 s until it succeeds; give up
# after SECONDS, or at the script's deadline.
within() {
	lim=$(( $(now_s) + $1 )); shift
	[ $lim -gt $DEADLINE ] && lim=$DEADLINE
	until "$@"; do
		[ $(now_s) -ge $lim ] && return 1
		sleep 0.25
	done
}
at() { if within "$2" "$3"; then mark "$1" "$(uptime_s)"; else mark "$1" timeout; fi; }

# The agent runs as the systemd unit runs it (the guest has no systemd):
# the capability bounding set cut to CapabilityBoundingSet= and
# no_new_privs set; the unit's ExecStartPre check first, under the same.
# (Not through a shell function: backgrounded, it would run in a subshell
# and $! would name the subshell, not the agent.)
caps=CAP_SYS_MODULE,CAP_SYSLOG,CAP_DAC_READ_SEARCH
try check-config splicefleet exec-limited --keep-caps $caps -- splicefleet agent --check-config --config /etc/splicefleet/agent.yaml
splicefleet exec-limited --keep-caps $caps -- splicefleet agent --config /etc/splicefleet/agent.yaml > /tmp/agent.log 2>&1 &
agent=$!
mark agent-started "$(uptime_s)"
alive3() { [ "$(sfc members --status alive 2>/dev/null | grep -c ' alive ')" = 3 ]; }
at members-at 150 alive3
# The agent answers, so exec-limited has become the agent by now.
mark agent-privileges "$(grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/$agent/status | tr '\t\n' '  ')"

# Rollout 1: the cmdline patch, canary first, then everyone.
if [ "$PUBLISHER" = yes ]; then
	mark publish1-at "$(uptime_s)"
	try publish1 sfc publish /lab/bundles/cmdline-1.splice --plan /lab/fleet/lab-cmdline.yaml --key /lab/keys/release.sec.asc
fi
patched() { [ "$(cat /proc/cmdline)" = "splicefleet: cmdline patched" ]; }
at patched-at 180 patched
# What the gossip said about the other hosts when this one was patched.
mark patched-members "$(sfc members --json | oneline)"
done1() { sfc rollout status lab-cmdline --json 2>/dev/null | grep -q '"state": "done"'; }
at done1-at 120 done1
mark status1 "$(sfc rollout status lab-cmdline --json | oneline)"
state rollout1

# failing WHAT ID BUNDLE MODULE: the canary publishes a rollout that
# fails on it; every guest waits for the halt and for its own state in
# it, watching /proc/modules and /sys/kernel/livepatch for MODULE all the
# while. Marks are prefixed with WHAT. (Not $name: try sets that.)
failing() {
	what=$1 id=$2 bundle=$3 module=$4
	rm -f /tmp/seen
	( while :; do
		while read -r m rest; do
			[ "$m" = "$module" ] && echo yes > /tmp/seen
		done < /proc/modules
		[ -d /sys/kernel/livepatch/$module ] && echo yes > /tmp/seen
		sleep 0.2
	done ) &
	watcher=$!
	if [ "$PUBLISHER" = yes ]; then
		mark $what-publish-at "$(uptime_s)"
		try $what-publish sfc publish /lab/bundles/$bundle --plan /lab/fleet/$id.yaml --key /lab/keys/release.sec.asc
	fi
	halted() { sfc rollout status $id --json 2>/dev/null | grep -qE '"state": "(halted|rolled-back|revoked)"'; }
	at $what-halted-at 150 halted
	# This host's own state in the halted rollout: failed on the canary,
	# halted (never applied) everywhere else; and the canary's reason,
	# which the gossiped failure report carries and may bring a little
	# after the canary's failed state (until then the status says
	# "reported failed").
	settled() {
		# (exit 1: the rollout halted, which is what is waited for)
		sfc rollout status $id --json > /tmp/status 2>/dev/null
		grep -Eq '"state": (102|120)' /tmp/status && ! grep -q 'reported failed' /tmp/status
	}
	at $what-settled-at 60 settled
	mark $what-status "$(sfc rollout status $id --json | oneline)"
	kill $watcher
	mark $what-seen "$(cat /tmp/seen 2>/dev/null || echo no)"
	state $what
}

# Rollout 2: a patch whose pre_patch callback refuses, on the canary.
failing refuse lab-refuse refuse-1.splice lp_refuse
# Rollout 3: a patch that loads, but the canary's health command fails
# while it is live; the canary undoes it.
failing version lab-version version-1.splice lp_version

# Stay in the cluster until every guest is through: each says so with a
# tag (the agent reloads its tags on SIGHUP).
echo '  lab: finished' >> /etc/splicefleet/agent.yaml
kill -HUP $agent
finished3() { [ "$(sfc members --json 2>/dev/null | grep -o '"lab":"finished"' | wc -l)" = 3 ]; }
at finished-at 90 finished3
kill -TERM $agent
i=0; while kill -0 $agent 2>/dev/null && [ $i -lt 60 ]; do sleep 0.25; i=$((i+1)); done
if kill -0 $agent 2>/dev/null; then
	mark agent-stop killed
	kill -KILL $agent
else
	mark agent-stop "$(uptime_s)"
fi

state final
try view sfv view
mark dmesg-refuse "$(dmesg | grep -o 'lp_refuse: pre_patch callback refuses.*' | head -n 1)"
mark dmesg-refuse-count "$(dmesg | grep -c lp_refuse)"
mark dmesg-version-count "$(dmesg | grep -c lp_version)"
sed 's/^/agent: /' /tmp/agent.log
`

// fleetConfig is guest n's agent configuration; tags come last, so the
// script can add one.
func fleetConfig(n int, canary bool) string {
	join := ""
	if n != 1 {
		join = "join: [10.0.0.1:7946]\n"
	}
	ring := "fleet"
	if canary {
		ring = "canary"
	}
	return fmt.Sprintf(`node_name: guest%d
bind: 10.0.0.%d:7946
http: 10.0.0.%d:7947
%sgossip_key_file: /etc/splicefleet/gossip.key
keyring: /lab/keys/trusted.asc
state_dir: /var/lib/splicefleet
kernel: linux
control_socket: /run/splicefleet/control.sock
anti_entropy: 1s
log_level: info
health_command: [/lab/fleet/health.sh]
health_timeout: 10s
tags:
  ring: %s
`, n, n, n, join, ring)
}

// fleetPlan is a signed rollout's plan: the canary ring, a soak, then
// every host.
func fleetPlan(id, bundle string) []byte {
	return fmt.Appendf(nil, `id: %s
bundle: %s
description: lab fleet scenario, the canary first
stages:
  - ring: canary
    soak: %s
  - percent: 100
gates:
  health_window: %s
on_halt: rollback
`, id, bundle, fleetSoak, fleetWindow)
}

// manifestDigest is the digest a plan names a fixture bundle by.
func manifestDigest(t *testing.T, raw []byte) string {
	t.Helper()
	b, err := splice.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return splice.Digest(b.Manifest)
}

// markStatus decodes a rollout status a guest printed as a mark.
func markStatus(t *testing.T, r *Result, key string) rollout.Status {
	t.Helper()
	var st rollout.Status
	v, ok := r.Marks.Get(key)
	if !ok {
		t.Errorf("%s did not report %s", r.Name, key)
		return st
	}
	if err := json.Unmarshal([]byte(v), &st); err != nil {
		t.Errorf("%s: %s = %q: %v", r.Name, key, v, err)
	}
	return st
}

// markMembers decodes `splicefleet members --json` printed as a mark:
// member name -> tags.
func markMembers(t *testing.T, r *Result, key string) map[string]map[string]string {
	t.Helper()
	var ms []struct {
		Name string
		Tags map[string]string
	}
	v, _ := r.Marks.Get(key)
	if err := json.Unmarshal([]byte(v), &ms); err != nil {
		t.Errorf("%s: %s = %q: %v", r.Name, key, v, err)
	}
	out := map[string]map[string]string{}
	for _, m := range ms {
		out[m.Name] = m.Tags
	}
	return out
}

// uptimeMark reads a mark holding a guest uptime in seconds.
func uptimeMark(t *testing.T, r *Result, key string) float64 {
	t.Helper()
	v, _ := r.Marks.Get(key)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Errorf("%s: %s = %q, want a guest uptime (the wait timed out?)", r.Name, key, v)
		return -1
	}
	return f
}

// fleetHealth is every guest's health command: it stands in for a
// service check that the version patch breaks, so it fails while that
// patch is live, which only ever happens on the canary.
const fleetHealth = `#!/bin/sh
if grep -q 'splicefleet: version patched' /proc/version; then
	echo "the service is down: /proc/version reads $(cat /proc/version)"
	exit 1
fi
`

// failingRollout is a rollout that fails on the canary; the script's
// `failing` calls name the same rollouts.
type failingRollout struct {
	mark, id, bundle string
	// canaryReason is how the canary's failure reads in every host's
	// status, after "guest1: ".
	canaryReason string
	// canaryView is the patch's line in the canary's journal.
	canaryView string
}

// failedInJournal finds the failing rollouts' patches in `view` output.
var failedInJournal = regexp.MustCompile(`\|[-0-9]+ +(refuse|version) +1 `)

var failingRollouts = []failingRollout{
	{"refuse", "lab-refuse", "refuse-1.splice",
		`load lp_refuse: .*invalid argument`, `\|- +refuse +1 +failed +lp_refuse +not loaded `},
	{"version", "lab-version", "version-1.splice",
		// The class of the failure only, as the canary signed it: what
		// the command printed stays in the canary's log.
		`health check: health command failed: exit status 1$`,
		`\|- +version +1 +reverted +lp_version +not loaded `},
}

// TestScenarioFleetRollout: three guests on one network, each running the
// agent on its real kernel. The canary (guest1, ring=canary) publishes the
// cmdline patch with a plan of two stages, the canary ring and then every
// host: the canary's /proc/cmdline changes first, the others' only after
// it reported healthy and the soak passed, and the rollout ends done
// everywhere. Then the canary publishes two patches that fail on it: one
// whose pre_patch callback refuses, and one that loads but makes the
// health command fail, which the canary undoes. Each time the rollout
// halts on every guest naming the canary, no other guest ever loads the
// module, and the canary is left as it was (the cmdline patch still live,
// nothing of the failed one).
func TestScenarioFleetRollout(t *testing.T) {
	note := scenario(t)
	b := labFixture(t)
	k := fetchKernel(t)
	bin := splicefleetBinary(t)

	gossipKey := make([]byte, 32)
	if _, err := rand.Read(gossipKey); err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(b.dir, "release.sec.asc"))
	if err != nil {
		t.Fatal(err)
	}
	plans := []File{{Path: "lab/fleet/lab-cmdline.yaml", Data: fleetPlan("lab-cmdline", manifestDigest(t, b.files["cmdline-1.splice"]))}}
	for _, f := range failingRollouts {
		plans = append(plans, File{Path: "lab/fleet/" + f.id + ".yaml", Data: fleetPlan(f.id, manifestDigest(t, b.files[f.bundle]))})
	}

	guests := make([]Guest, fleetGuests)
	for i := range guests {
		n := i + 1
		canary := n == 1
		publisher := "no"
		files := []File{
			{Path: "etc/splicefleet/agent.yaml", Data: []byte(fleetConfig(n, canary))},
			{Path: "etc/splicefleet/gossip.key", Data: []byte(base64.StdEncoding.EncodeToString(gossipKey) + "\n"), Mode: 0o600},
			{Path: "lab/fleet/health.sh", Data: []byte(fleetHealth), Mode: 0o755},
		}
		if canary {
			publisher = "yes"
			files = append(files, File{Path: "lab/keys/release.sec.asc", Data: secret, Mode: 0o600})
			files = append(files, plans...)
		}
		vars := fmt.Sprintf("PUBLISHER=%s\nDEADLINE=%d\n", publisher, fleetDeadline)
		guests[i] = Guest{
			Name: fmt.Sprintf("guest%d", n), Kernel: k, Log: guestLog(t), Timeout: fleetTimeout,
			Net: &Net{Addr: fmt.Sprintf("10.0.0.%d/24", n)},
			Initramfs: Initramfs{
				Splicefleet: bin,
				Script:      scriptPrelude + vars + fleetScript,
				Files:       b.guestFiles(files...),
			},
		}
	}
	start := time.Now()
	res, err := BootAll(context.Background(), guests)
	t.Logf("three guests ran for %.1fs", time.Since(start).Seconds())
	if err != nil {
		*note = bootTimes(res...)
		t.Fatal(err)
	}
	for _, r := range res {
		if r.ExitCode != 0 {
			t.Fatalf("%s: script exit %d; console tail:\n%s", r.Name, r.ExitCode, r.ConsoleTail(40))
		}
	}
	canary, others := res[0], res[1:]

	// Every agent ran with the unit's capabilities alone, no_new_privs
	// set, and its configuration checked first under the same: what
	// follows shows the hardened agent applies, and undoes, livepatches
	// on a real kernel.
	for _, r := range res {
		want(t, r, "check-config-exit", "0")
		wantMatch(t, r, "agent-privileges", `^CapEff: +0000000400010004 +CapBnd: +0000000400010004 +NoNewPrivs: +1 *$`)
	}

	// Everyone joined; the canary published every rollout.
	for _, r := range res {
		uptimeMark(t, r, "members-at")
	}
	want(t, canary, "publish1-exit", "0")
	wantMatch(t, canary, "publish1-out", `rollout lab-cmdline started \(plan [0-9a-f]{64}\)`)
	for _, f := range failingRollouts {
		want(t, canary, f.mark+"-publish-exit", "0")
		wantMatch(t, canary, f.mark+"-publish-out", `rollout `+f.id+` started \(plan [0-9a-f]{64}\)`)
	}

	// Rollout 1: the canary's kernel first, then all three.
	canaryAt := uptimeMark(t, canary, "patched-at")
	for name, tags := range markMembers(t, canary, "patched-members") {
		if name != canary.Name && strings.Contains(tags["sf.ap"], "cmdline@") {
			t.Errorf("when the canary was patched, %s already reported cmdline applied (sf.ap %q)", name, tags["sf.ap"])
		}
	}
	for _, r := range others {
		at := uptimeMark(t, r, "patched-at")
		if at <= canaryAt {
			t.Errorf("%s was patched at %.2fs uptime, not after the canary (%.2fs)", r.Name, at, canaryAt)
		}
		// When this host saw its own kernel patched, the gossip already
		// carried the canary's applied patch.
		if ap := markMembers(t, r, "patched-members")[canary.Name]["sf.ap"]; !strings.Contains(ap, "cmdline@1") {
			t.Errorf("when %s was patched, the canary's applied stack was %q, want cmdline@1 in it", r.Name, ap)
		}
	}
	for _, r := range res {
		uptimeMark(t, r, "done1-at")
		st := markStatus(t, r, "status1")
		if st.State != rollout.Done || st.Self.State != rollout.StateHealthy {
			t.Errorf("%s: rollout lab-cmdline %s (this host %s): %s", r.Name, st.State, st.Self.State, st.Why)
		}
		if len(st.Stages) == 2 {
			if s := st.Stages[0]; s.Name != "ring canary" || s.Cohort != 1 || s.Healthy != 1 {
				t.Errorf("%s: stage 1 %+v, want the canary alone, healthy", r.Name, s)
			}
			if s := st.Stages[1]; s.Cohort != fleetGuests || s.Healthy != fleetGuests {
				t.Errorf("%s: stage 2 %+v, want all %d hosts healthy", r.Name, s, fleetGuests)
			}
		} else {
			t.Errorf("%s: %d stages", r.Name, len(st.Stages))
		}
		want(t, r, "rollout1-cmdline", "splicefleet: cmdline patched")
		want(t, r, "rollout1-livepatches", "lp_cmdline")
	}

	// Rollouts 2 and 3 fail on the canary and halt everywhere.
	for _, f := range failingRollouts {
		failed := regexp.MustCompile(`^guest1: ` + f.canaryReason)
		for _, r := range res {
			uptimeMark(t, r, f.mark+"-halted-at")
			uptimeMark(t, r, f.mark+"-settled-at")
			st := markStatus(t, r, f.mark+"-status")
			if !rollout.Ended(st.State) || !strings.Contains(st.Why, "1 host failed (guest1: ") {
				t.Errorf("%s: rollout %s %s: %s; want halted, naming the canary", r.Name, f.id, st.State, st.Why)
			}
			if len(st.Failed) != 1 || !failed.MatchString(st.Failed[0]) {
				t.Errorf("%s: rollout %s: failed hosts %q, want the canary alone, matching %s", r.Name, f.id, st.Failed, failed)
			}
			if st.Open != 0 || len(st.Stages) != 2 || st.Stages[1].Applied != 0 {
				t.Errorf("%s: rollout %s: open stage %d, stages %+v: the second stage must never open", r.Name, f.id, st.Open+1, st.Stages)
			}
			wantSelf := rollout.StateHalted
			if r == canary {
				wantSelf = rollout.StateFailed
			}
			if st.Self.State != wantSelf {
				t.Errorf("%s: this host's state in %s is %s, want %s", r.Name, f.id, st.Self.State, wantSelf)
			}
			// Right after the halt: the cmdline patch, nothing of this one.
			want(t, r, f.mark+"-livepatches", "lp_cmdline")
			want(t, r, f.mark+"-modules", "lp_cmdline")
			want(t, r, f.mark+"-cmdline", "splicefleet: cmdline patched")
			wantMatch(t, r, f.mark+"-version", stockVersion.String())
		}
		for _, r := range others {
			want(t, r, f.mark+"-seen", "no")
		}
		wantMatch(t, canary, "view-out", f.canaryView)
	}
	wantMatch(t, canary, "dmesg-refuse", `^lp_refuse: pre_patch callback refuses to patch vmlinux`)
	for _, r := range others {
		want(t, r, "dmesg-refuse-count", "0")
		want(t, r, "dmesg-version-count", "0")
		if out, _ := r.Marks.Get("view-out"); failedInJournal.MatchString(out) {
			t.Errorf("%s: the journal mentions a failed patch: %q", r.Name, out)
		}
	}

	// The end: every kernel runs the cmdline patch alone, every journal
	// says so, every agent stopped on SIGTERM.
	for _, r := range res {
		want(t, r, "final-livepatches", "lp_cmdline")
		want(t, r, "final-modules", "lp_cmdline")
		want(t, r, "final-cmdline", "splicefleet: cmdline patched")
		wantMatch(t, r, "final-version", stockVersion.String())
		wantMatch(t, r, "view-out", `\|1 +cmdline +1 +applied +lp_cmdline +enabled `)
		if v, _ := r.Marks.Get("finished-at"); v == "timeout" {
			t.Errorf("%s did not see every guest finish", r.Name)
		}
		if v, _ := r.Marks.Get("agent-stop"); v == "killed" {
			t.Errorf("%s: the agent did not stop on SIGTERM", r.Name)
		}
	}

	// The summary: uptimes on each guest's own clock.
	times := func(key string) string {
		var parts []string
		for _, r := range res {
			parts = append(parts, fmt.Sprintf("%s %.1fs", r.Name, uptimeMark(t, r, key)))
		}
		return strings.Join(parts, ", ")
	}
	*note = fmt.Sprintf("uptimes: cluster of 3 at %.1fs; cmdline published at %.1fs, patched %s, done on the canary at %.1fs",
		uptimeMark(t, canary, "members-at"), uptimeMark(t, canary, "publish1-at"), times("patched-at"), uptimeMark(t, canary, "done1-at"))
	for _, f := range failingRollouts {
		*note += fmt.Sprintf("; %s published at %.1fs, halt seen by %s", f.id, uptimeMark(t, canary, f.mark+"-publish-at"), times(f.mark+"-halted-at"))
	}
	*note += "; " + bootTimes(res...)
}
