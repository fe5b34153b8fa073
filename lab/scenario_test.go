package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// bundles are the signed bundles the scenarios apply, built once per test
// binary from the sources in testdata/patches with the real splicefleet
// binary (create --source against the fetched kernel's headers, then
// sign).
type bundles struct {
	dir      string
	trusted  []byte            // armored public key of the lab's publisher
	files    map[string][]byte // guest file name -> bundle bytes
	buildLog bytes.Buffer
}

var labBundles struct {
	once sync.Once
	b    *bundles
	err  error
}

func sfRun(bin string, log *bytes.Buffer, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("splicefleet %s: %v\n%s", strings.Join(args, " "), err, log.String())
	}
	return nil
}

func labFixture(t *testing.T) *bundles {
	t.Helper()
	k := fetchKernel(t)
	bin := splicefleetBinary(t)
	labBundles.once.Do(func() {
		labBundles.b, labBundles.err = buildBundles(k, bin)
	})
	if labBundles.err != nil {
		t.Fatalf("lab bundles: %v", labBundles.err)
	}
	return labBundles.b
}

func buildBundles(k *DebianKernel, bin string) (*bundles, error) {
	dir, err := os.MkdirTemp("", "splicefleet-lab-bundles-")
	if err != nil {
		return nil, err
	}
	b := &bundles{dir: dir, files: map[string][]byte{}}
	run := func(args ...string) error { return sfRun(bin, &b.buildLog, args...) }
	p := func(name string) string { return filepath.Join(dir, name) }
	if err := run("signing-key", "generate", "--uid", "Lab Release <lab@example.com>", "--out", p("release")); err != nil {
		return nil, err
	}
	if err := run("signing-key", "generate", "--uid", "Stranger <stranger@example.com>", "--out", p("stranger")); err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	srcs := filepath.Join(root, "lab", "testdata", "patches")
	specs := []struct {
		src, id string
		version int
		extra   []string
	}{
		{"lp_cmdline", "cmdline", 1, nil},
		{"lp_version", "version", 1, nil},
		{"lp_cumulative_v1", "cumulative", 1, []string{"--replace"}},
		{"lp_cumulative_v2", "cumulative", 2, []string{"--replace"}},
		{"lp_refuse", "refuse", 1, nil},
		{"lp_stall", "stall", 1, nil},
	}
	for _, s := range specs {
		out := p(fmt.Sprintf("%s-%d.splice", s.id, s.version))
		args := append([]string{"create", "--source", filepath.Join(srcs, s.src), "--kernel-build", k.HeadersDir,
			"--id", s.id, "--version", strconv.Itoa(s.version), "--description", "lab scenario " + s.src, "-o", out}, s.extra...)
		if err := run(args...); err != nil {
			return nil, err
		}
		if err := run("sign", "--key", p("release.sec.asc"), out); err != nil {
			return nil, err
		}
		raw, err := os.ReadFile(out)
		if err != nil {
			return nil, err
		}
		b.files[filepath.Base(out)] = raw
	}
	if b.trusted, err = os.ReadFile(p("release.pub.asc")); err != nil {
		return nil, err
	}

	// Bad bundles, each derived from the good cmdline bundle.
	good, err := splice.Decode(bytes.NewReader(b.files["cmdline-1.splice"]))
	if err != nil {
		return nil, err
	}
	tampered := *good
	tampered.Module = append([]byte(nil), good.Module...)
	tampered.Module[len(tampered.Module)/2] ^= 0x20
	if b.files["tampered.splice"], err = tampered.Bytes(); err != nil {
		return nil, err
	}
	release, err := os.ReadFile(p("release.sec.asc"))
	if err != nil {
		return nil, err
	}
	stranger, err := os.ReadFile(p("stranger.sec.asc"))
	if err != nil {
		return nil, err
	}
	m, err := splice.ParseManifest(good.Manifest)
	if err != nil {
		return nil, err
	}
	other := *m
	other.ID, other.Target.Release = "other-kernel", "6.1.0-0-other-amd64"
	if b.files["other-kernel.splice"], err = signedBundle(other, good.Module, release); err != nil {
		return nil, err
	}
	unknown := *m
	unknown.ID = "unknown-signer"
	if b.files["unknown-signer.splice"], err = signedBundle(unknown, good.Module, stranger); err != nil {
		return nil, err
	}
	return b, nil
}

// signedBundle makes a bundle with the library, for bundles the CLI would
// refuse to create.
func signedBundle(m splice.Manifest, module, secretKey []byte) ([]byte, error) {
	nb, err := splice.New(m, module)
	if err != nil {
		return nil, err
	}
	s, err := signing.ReadSigner(secretKey, nil, time.Now())
	if err != nil {
		return nil, err
	}
	sig, err := s.Sign(nb.Manifest, time.Now())
	if err != nil {
		return nil, err
	}
	if _, err := nb.AddSignature(sig); err != nil {
		return nil, err
	}
	return nb.Bytes()
}

// guestFiles puts the keyring and every bundle into the guest under /lab.
func (b *bundles) guestFiles(extra ...File) []File {
	files := []File{{Path: "lab/keys/trusted.asc", Data: b.trusted, Mode: 0o644}}
	for name, data := range b.files {
		files = append(files, File{Path: "lab/bundles/" + name, Data: data, Mode: 0o644})
	}
	return append(files, extra...)
}

// scriptPrelude defines helpers for scenario scripts:
//
//	sf ARGS      splicefleet on the real kernel with the lab's state dir
//	try NAME CMD runs CMD, marks NAME-exit and NAME-out (output on one line)
//	state        marks the kernel's livepatch and module state
const scriptPrelude = `
mkdir -p /var/lib/splicefleet
sf() { splicefleet "$@" --kernel linux --state-dir /var/lib/splicefleet --keyring /lab/keys/trusted.asc 2>&1; }
sfv() { splicefleet "$@" --kernel linux --state-dir /var/lib/splicefleet 2>&1; }
try() { name=$1; shift; "$@" >/tmp/try.out 2>&1; code=$?; cat /tmp/try.out; mark "$name-exit" "$code"; mark "$name-out" "$(tr '\n' '|' </tmp/try.out)"; }
state() {
	mark "$1-livepatches" "$(ls /sys/kernel/livepatch | tr '\n' ' ')"
	mark "$1-modules" "$(grep -o '^lp_[a-z0-9_]*' /proc/modules | tr '\n' ' ')"
	mark "$1-cmdline" "$(cat /proc/cmdline)"
	mark "$1-version" "$(cat /proc/version)"
}
uptime_s() { cut -d' ' -f1 /proc/uptime; }
`

// bootScenario boots one guest with the lab bundles and script, failing
// the test when the guest does not finish.
func bootScenario(t *testing.T, note *string, g Guest, script string, extra ...File) *Result {
	t.Helper()
	b := labFixture(t)
	g.Kernel = fetchKernel(t)
	g.Log = guestLog(t)
	if g.Name == "" {
		g.Name = strings.TrimPrefix(t.Name(), "TestScenario")
	}
	g.Initramfs.Splicefleet = splicefleetBinary(t)
	g.Initramfs.Script = scriptPrelude + script
	g.Initramfs.Files = b.guestFiles(extra...)
	res, err := Boot(context.Background(), g)
	if res != nil {
		if *note != "" {
			*note += "; "
		}
		*note += bootTimes(res)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("guest script exit %d; console tail:\n%s", res.ExitCode, res.ConsoleTail(30))
	}
	return res
}

// want asserts that a mark has exactly this value.
func want(t *testing.T, r *Result, key, value string) {
	t.Helper()
	got, ok := r.Marks.Get(key)
	if !ok {
		t.Errorf("guest did not report %s", key)
		return
	}
	if strings.TrimSpace(got) != value {
		t.Errorf("%s = %q, want %q", key, got, value)
	}
}

// wantMatch asserts that a mark matches a regular expression.
func wantMatch(t *testing.T, r *Result, key, pattern string) {
	t.Helper()
	got, ok := r.Marks.Get(key)
	if !ok {
		t.Errorf("guest did not report %s", key)
		return
	}
	if !regexp.MustCompile(pattern).MatchString(got) {
		t.Errorf("%s = %q, want a match for %s", key, got, pattern)
	}
}

var appliedLog = regexp.MustCompile(`msg=applied .*total_ms=([0-9.]+) finit_module_ms=([0-9.]+) transition_ms=([0-9.]+) agent_ms=([0-9.]+)`)

// timings reads the apply's log line: total, finit_module, transition and
// the agent's own share, in milliseconds.
func timings(t *testing.T, out string) []float64 {
	t.Helper()
	m := appliedLog.FindStringSubmatch(out)
	if m == nil {
		t.Errorf("no timing line in apply output %q", out)
		return make([]float64, 4)
	}
	var v []float64
	for _, s := range m[1:] {
		f, _ := strconv.ParseFloat(s, 64)
		v = append(v, f)
	}
	return v
}

// applyNote is the summary note of the apply whose output is mark key.
func applyNote(t *testing.T, r *Result, key string) string {
	t.Helper()
	out, _ := r.Marks.Get(key)
	tm := timings(t, out)
	return fmt.Sprintf("apply %.0fms (finit_module %.0fms, transition %.0fms, agent %.0fms)", tm[0], tm[1], tm[2], tm[3])
}

// The original texts of /proc/cmdline and /proc/version in a lab guest.
var (
	stockCmdline = regexp.MustCompile(`^console=ttyS0 `)
	stockVersion = regexp.MustCompile(`^Linux version 6\.1\.`)
)

// TestScenarioApply: a signed bundle that patches cmdline_proc_show is
// applied to the real kernel; /proc/cmdline, view and sysfs agree; undo
// restores the text and removes the module.
func TestScenarioApply(t *testing.T) {
	note := scenario(t)
	r := bootScenario(t, note, Guest{}, `
state before
start=$(uptime_s)
try apply sf apply -v /lab/bundles/cmdline-1.splice
mark patched-at "$(uptime_s)"
mark apply-started "$start"
state applied
mark sysfs-enabled "$(cat /sys/kernel/livepatch/lp_cmdline/enabled)"
mark sysfs-transition "$(cat /sys/kernel/livepatch/lp_cmdline/transition)"
try view sfv view
try undo sfv undo cmdline
state undone
try view2 sfv view
`)
	wantMatch(t, r, "before-cmdline", stockCmdline.String())
	want(t, r, "apply-exit", "0")
	want(t, r, "applied-cmdline", "splicefleet: cmdline patched")
	want(t, r, "applied-livepatches", "lp_cmdline")
	want(t, r, "applied-modules", "lp_cmdline")
	want(t, r, "sysfs-enabled", "1")
	want(t, r, "sysfs-transition", "0")
	wantMatch(t, r, "view-out", `^kernel 6\.1\.\S+ x86_64 build [0-9a-f]+, livepatch supported\|.*\|1 +cmdline +1 +applied +lp_cmdline +enabled `)
	want(t, r, "undo-exit", "0")
	wantMatch(t, r, "undone-cmdline", stockCmdline.String())
	want(t, r, "undone-livepatches", "")
	want(t, r, "undone-modules", "")
	wantMatch(t, r, "view2-out", `\|- +cmdline +1 +reverted +lp_cmdline +not loaded `)

	out, _ := r.Marks.Get("apply-out")
	tm := timings(t, out)
	patchedAt, _ := r.Marks.Get("patched-at")
	*note += fmt.Sprintf("; patched at %ss uptime; apply %.0fms (finit_module %.0fms, transition %.0fms, agent %.0fms)", patchedAt, tm[0], tm[1], tm[2], tm[3])
}

// TestScenarioStacking: two patches to different functions; the lower one
// cannot be undone first; both texts come back.
func TestScenarioStacking(t *testing.T) {
	note := scenario(t)
	r := bootScenario(t, note, Guest{}, `
try a sf apply -v /lab/bundles/cmdline-1.splice
try b sf apply -v /lab/bundles/version-1.splice
state both
try undo-low sfv undo cmdline
state refused
try undo-top sfv undo version
try undo-low2 sfv undo cmdline
state none
`)
	want(t, r, "a-exit", "0")
	want(t, r, "b-exit", "0")
	want(t, r, "both-cmdline", "splicefleet: cmdline patched")
	want(t, r, "both-version", "splicefleet: version patched")
	want(t, r, "both-livepatches", "lp_cmdline lp_version")
	want(t, r, "undo-low-exit", "1")
	wantMatch(t, r, "undo-low-out", `cmdline is not on top of the stack; undo version version 1 first`)
	want(t, r, "refused-livepatches", "lp_cmdline lp_version")
	want(t, r, "refused-cmdline", "splicefleet: cmdline patched")
	want(t, r, "undo-top-exit", "0")
	want(t, r, "undo-low2-exit", "0")
	wantMatch(t, r, "none-cmdline", stockCmdline.String())
	wantMatch(t, r, "none-version", stockVersion.String())
	want(t, r, "none-livepatches", "")
	want(t, r, "none-modules", "")
	*note += "; first " + applyNote(t, r, "a-out") + ", second " + applyNote(t, r, "b-out")
}

// TestScenarioAtomicReplace: version 2 of a cumulative patch replaces
// version 1 in one transition.
func TestScenarioAtomicReplace(t *testing.T) {
	note := scenario(t)
	r := bootScenario(t, note, Guest{}, `
try v1 sf apply -v /lab/bundles/cumulative-1.splice
state v1
try v2 sf apply -v /lab/bundles/cumulative-2.splice
state v2
try view sfv view
`)
	want(t, r, "v1-exit", "0")
	want(t, r, "v1-cmdline", "splicefleet: cumulative v1")
	want(t, r, "v2-exit", "0")
	want(t, r, "v2-cmdline", "splicefleet: cumulative v2")
	want(t, r, "v2-livepatches", "lp_cumulative_v2")
	want(t, r, "v2-modules", "lp_cumulative_v2")
	wantMatch(t, r, "view-out", `\|2 +cumulative +2 +applied +lp_cumulative_v2 +enabled .*\|- +cumulative +1 +replaced +lp_cumulative_v1 +not loaded .*\|  cumulative version 1: replaced by cumulative version 2\|`)
	*note += "; v1 " + applyNote(t, r, "v1-out") + ", v2 replacing it " + applyNote(t, r, "v2-out")
}

// TestScenarioRefusals: bad bundles are refused on a real kernel and leave
// it untouched; a kernel that enforces module signatures refuses the
// module with a clear message.
func TestScenarioRefusals(t *testing.T) {
	note := scenario(t)
	const script = `
state before
try tampered sf apply /lab/bundles/tampered.splice
try other sf apply /lab/bundles/other-kernel.splice
try unknown sf apply /lab/bundles/unknown-signer.splice
state after
`
	r := bootScenario(t, note, Guest{}, script)
	want(t, r, "tampered-exit", "1")
	wantMatch(t, r, "tampered-out", `module does not match the manifest: module sha256 [0-9a-f]{64}, manifest says`)
	want(t, r, "other-exit", "1")
	wantMatch(t, r, "other-out", `bundle does not target this kernel: other-kernel version 1 is for kernel 6\.1\.0-0-other-amd64; this host runs 6\.1\.`)
	want(t, r, "unknown-exit", "1")
	wantMatch(t, r, "unknown-out", `signature check failed: verification failed: 0 of 1 required signatures valid; signature 1 by [0-9A-F]{40}: signer is not a trusted key`)
	for _, k := range []string{"livepatches", "modules", "cmdline"} {
		b, _ := r.Marks.Get("before-" + k)
		a, _ := r.Marks.Get("after-" + k)
		if a != b {
			t.Errorf("%s changed: %q -> %q", k, b, a)
		}
	}
	want(t, r, "after-modules", "")

	enforced := bootScenario(t, note, Guest{Name: "sig-enforce", Append: "module.sig_enforce=1"}, `
try apply sf apply /lab/bundles/cmdline-1.splice
state after
try view sfv view
`)
	want(t, enforced, "apply-exit", "2")
	wantMatch(t, enforced, "apply-out", `load lp_cmdline: .*the kernel requires signed modules and refused this one \(EKEYREJECTED: module\.sig_enforce or lockdown\)`)
	want(t, enforced, "after-livepatches", "")
	want(t, enforced, "after-modules", "")
	wantMatch(t, enforced, "after-cmdline", stockCmdline.String())
	wantMatch(t, enforced, "view-out", `\|- +cmdline +1 +failed +lp_cmdline +not loaded `)
}

// TestScenarioPrePatchRefuses: a patch whose pre_patch callback fails is
// not applied; nothing stays loaded and the state says why.
func TestScenarioPrePatchRefuses(t *testing.T) {
	note := scenario(t)
	r := bootScenario(t, note, Guest{}, `
try apply sf apply /lab/bundles/refuse-1.splice
state after
try view sfv view
mark dmesg "$(dmesg | grep -o 'lp_refuse: pre_patch callback refuses.*' | head -n 1)"
`)
	want(t, r, "apply-exit", "2")
	wantMatch(t, r, "apply-out", `load lp_refuse: .*invalid argument`)
	want(t, r, "after-livepatches", "")
	want(t, r, "after-modules", "")
	wantMatch(t, r, "after-cmdline", stockCmdline.String())
	wantMatch(t, r, "view-out", `\|- +refuse +1 +failed +lp_refuse +not loaded .*\|  refuse version 1: load lp_refuse: `)
	wantMatch(t, r, "dmesg", `^lp_refuse: pre_patch callback refuses to patch vmlinux`)
}

// TestScenarioReboot: the state directory is an ext4 file system on a
// virtual disk, mounted before the apply; after the apply the guest
// syncs and powers off without unmounting, the same kernel boots again,
// and splicefleet boot re-applies the patch from the state on the disk.
func TestScenarioReboot(t *testing.T) {
	note := scenario(t)
	disk := filepath.Join(t.TempDir(), "state.img")
	if err := os.WriteFile(disk, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	first := bootScenario(t, note, Guest{Name: "reboot-1", Disk: disk, Initramfs: Initramfs{Modules: DiskModules}}, `
mke2fs -q /dev/vda 2>&1
mark mkfs "$?"
mkdir -p /var/lib/splicefleet && mount -t ext4 /dev/vda /var/lib/splicefleet
mark mounted "$?"
try apply sf apply -v /lab/bundles/cmdline-1.splice
state applied
sync
mark synced "$?"
`)
	want(t, first, "mkfs", "0")
	want(t, first, "mounted", "0")
	want(t, first, "apply-exit", "0")
	want(t, first, "applied-cmdline", "splicefleet: cmdline patched")
	want(t, first, "synced", "0")
	second := bootScenario(t, note, Guest{Name: "reboot-2", Disk: disk, Initramfs: Initramfs{Modules: DiskModules}}, `
mkdir -p /var/lib/splicefleet && mount -t ext4 /dev/vda /var/lib/splicefleet
mark mounted "$?"
state booted
try boot sf boot -v
mark reapplied-at "$(uptime_s)"
state reapplied
try view sfv view
`)
	want(t, second, "mounted", "0")
	wantMatch(t, second, "booted-cmdline", stockCmdline.String())
	want(t, second, "boot-exit", "0")
	wantMatch(t, second, "boot-out", `re-applied cmdline version 1 \(module lp_cmdline\)`)
	want(t, second, "reapplied-cmdline", "splicefleet: cmdline patched")
	want(t, second, "reapplied-livepatches", "lp_cmdline")
	wantMatch(t, second, "view-out", `\|1 +cmdline +1 +applied +lp_cmdline +enabled `)
	at, _ := second.Marks.Get("reapplied-at")
	*note += "; first boot " + applyNote(t, first, "apply-out") + "; second boot re-patched by splicefleet boot at " + at + "s uptime"
}

// TestScenarioStalledTransition: a task asleep in pause(2) keeps
// __x64_sys_pause on its stack, so the lp_stall transition cannot finish
// while it sleeps. With short timeouts, splicefleet sees the stall, leaves
// the kernel its chance to signal the task (6.1 has no signal file: the
// kernel signals blocking tasks itself every 15 s), then reverses the
// transition, unloads the module, and names the task that blocked it. The
// kernel ends unpatched and the task never noticed.
func TestScenarioStalledTransition(t *testing.T) {
	note := scenario(t)
	pauser := filepath.Join(t.TempDir(), "pauser")
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", pauser, "./lab/testdata/pauser")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build pauser: %v\n%s", err, out)
	}
	pf, err := HostFile(pauser, "bin/pauser")
	if err != nil {
		t.Fatal(err)
	}
	r := bootScenario(t, note, Guest{}, `
pauser > /tmp/pauser.out 2>&1 &
pid=$!
i=0; until grep -q pausing /tmp/pauser.out || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done
sleep 0.5
mark pauser-pid "$pid"
mark pauser-state "$(grep '^State:' /proc/$pid/status | tr -s '\t ' ' ')"
start=$(uptime_s)
try apply sf apply -v --transition-timeout 2s --signal-timeout 3s /lab/bundles/stall-1.splice
mark apply-seconds "$(echo "$(uptime_s) $start" | awk '{print $1 - $2}')"
state after
mark pauser-alive "$(kill -0 $pid 2>/dev/null && echo yes || echo no)"
try view sfv view
`, pf)
	pid, _ := r.Marks.Get("pauser-pid")
	wantMatch(t, r, "pauser-state", `State: S \(sleeping\)`)
	want(t, r, "apply-exit", "2")
	wantMatch(t, r, "apply-out", `level=WARN msg="transition stalled; the kernel signals blocking tasks itself" patch=lp_stall after=2s`)
	wantMatch(t, r, "apply-out", `enable lp_stall: enabling lp_stall: transition did not complete in 5\.\d+s; blocked by pauser\[`+pid+`\]; reversed`)
	want(t, r, "after-livepatches", "")
	want(t, r, "after-modules", "")
	want(t, r, "pauser-alive", "yes")
	wantMatch(t, r, "view-out", `\|- +stall +1 +failed +lp_stall +not loaded `)
	secs, _ := r.Marks.Get("apply-seconds")
	*note += "; stalled apply reversed after " + secs + "s"
}
