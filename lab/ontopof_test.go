package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fix1Patch is a first update to cmdline_proc_show of fs/proc/cmdline.c:
// /proc/cmdline starts with "fix1 ".
const fix1Patch = `--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,6 +6,7 @@
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
+	seq_puts(m, "fix1 ");
 	seq_puts(m, saved_command_line);
 	seq_putc(m, '\n');
 	return 0;
`

// fix2Patch is a later update to the same function, made on the source
// with fix1 applied (its context holds fix1's line): /proc/cmdline ends
// with " fix2" as well.
const fix2Patch = `--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -7,7 +7,8 @@
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
 	seq_puts(m, "fix1 ");
 	seq_puts(m, saved_command_line);
+	seq_puts(m, " fix2");
 	seq_putc(m, '\n');
 	return 0;
 }
`

// TestScenarioCreatePatchOnTopOf: two updates to one function of the lab
// kernel, the second made with create --patch --on-top-of the first, are
// applied in order in a guest: /proc/cmdline shows fix 1, then fixes 1
// and 2; undoing the second brings fix 1's behaviour back, undoing the
// first the original. The first cannot be undone from under the second,
// and the second is refused on a host without the first.
func TestScenarioCreatePatchOnTopOf(t *testing.T) {
	note := scenario(t)
	k := fetchKernel(t)
	bin := splicefleetBinary(t)
	b := labFixture(t)
	src, err := FetchSource(context.Background(), FetchOptions{Log: logWriter{t}}, k)
	if err != nil {
		t.Fatal(err)
	}
	sysmap, err := FetchSystemMap(context.Background(), FetchOptions{Log: logWriter{t}}, k)
	if err != nil {
		t.Fatal(err)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	for name, text := range map[string]string{"fix1.patch": fix1Patch, "fix2.patch": fix2Patch} {
		if err := os.WriteFile(p(name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	modules := filepath.Join(k.Root, "lib", "modules", k.Release)
	create := func(id string, args ...string) (string, time.Duration, error) {
		var log bytes.Buffer
		start := time.Now()
		err := sfRun(bin, &log, append([]string{"create", "--kernel-source", src, "--kernel-build", k.HeadersDir,
			"--system-map", sysmap, "--modules", modules, "--cache-dir", filepath.Join(root, ".cache", "ksrc"),
			"--id", id, "--version", "1", "--description", "lab: " + id + " of cmdline_proc_show", "-o", p(id + ".splice")}, args...)...)
		return log.String(), time.Since(start), err
	}
	sign := func(id string) []byte {
		t.Helper()
		if err := sfRun(bin, &bytes.Buffer{}, "sign", "--key", filepath.Join(b.dir, "release.sec.asc"), p(id+".splice")); err != nil {
			t.Fatal(err)
		}
		bundle, err := os.ReadFile(p(id + ".splice"))
		if err != nil {
			t.Fatal(err)
		}
		return bundle
	}

	out, took1, err := create("fix1", "--patch", p("fix1.patch"))
	if err != nil {
		t.Fatalf("create fix1: %v\n%s", err, out)
	}
	fix1 := sign("fix1")

	// fix2 alone does not apply to the kernel's source: it is made on
	// top of fix1.
	out, _, err = create("fix2-alone", "--patch", p("fix2.patch"))
	if err == nil || !strings.Contains(out, "apply patch to fs/proc/cmdline.c: hunk #1") {
		t.Fatalf("fix2 without --on-top-of: %v\n%s", err, out)
	}

	out, took2, err := create("fix2", "--patch", p("fix2.patch"), "--on-top-of", p("fix1.patch"))
	if err != nil {
		t.Fatalf("create fix2 --on-top-of fix1: %v\n%s", err, out)
	}
	t.Logf("create fix2 --on-top-of fix1 took %s:\n%s", took2.Round(time.Millisecond), out)
	for _, w := range []string{"built on top of " + p("fix1.patch") + " (fs/proc/cmdline.c, source patch ", "cmdline_proc_show changed", "replaces cmdline_proc_show"} {
		if !strings.Contains(out, w) {
			t.Errorf("create --on-top-of output lacks %q", w)
		}
	}
	fix2 := sign("fix2")
	var inspect bytes.Buffer
	if err := sfRun(bin, &inspect, "inspect", p("fix2.splice")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(inspect.String(), "on top of") || !strings.Contains(inspect.String(), "fix1.patch (source patch ") {
		t.Errorf("inspect does not show what the bundle is built on top of:\n%s", inspect.String())
	}

	r := bootScenario(t, note, Guest{}, `
mark orig "$(cat /proc/cmdline)"
try alone sf apply /lab/extra/fix2.splice
mark alone "$(cat /proc/cmdline)"
try fix1-apply sf apply /lab/extra/fix1.splice
mark fix1 "$(cat /proc/cmdline)"
try fix2-apply sf apply /lab/extra/fix2.splice
mark fix12 "$(cat /proc/cmdline)"
mark livepatches "$(ls /sys/kernel/livepatch | sort | tr '\n' ' ')"
try early sfv undo fix1
mark early "$(cat /proc/cmdline)"
try fix2-undo sfv undo fix2
mark fix2-undone "$(cat /proc/cmdline)"
try fix1-undo sfv undo fix1
mark fix1-undone "$(cat /proc/cmdline)"
mark undone-livepatches "$(ls /sys/kernel/livepatch | tr '\n' ' ')"
`, File{Path: "lab/extra/fix1.splice", Data: fix1, Mode: 0o644},
		File{Path: "lab/extra/fix2.splice", Data: fix2, Mode: 0o644})
	orig, _ := r.Marks.Get("orig")
	orig = strings.TrimSpace(orig)
	if orig == "" {
		t.Fatal("the guest reported no /proc/cmdline")
	}
	// Without fix1, fix2 is refused and nothing changes.
	wantMatch(t, r, "alone-exit", `^[1-9]`)
	wantMatch(t, r, "alone-out", `fix2 version 1 is built on top of fix1\.patch \(source patch [0-9a-f]{64}\), which is not applied on this host`)
	want(t, r, "alone", orig)
	want(t, r, "fix1-apply-exit", "0")
	want(t, r, "fix1", "fix1 "+orig)
	want(t, r, "fix2-apply-exit", "0")
	want(t, r, "fix12", "fix1 "+orig+" fix2")
	want(t, r, "livepatches", "lp_fix1_v1 lp_fix2_v1")
	// fix1 cannot be undone from under fix2, which carries it.
	wantMatch(t, r, "early-exit", `^[1-9]`)
	wantMatch(t, r, "early-out", `fix1 is not on top of the stack; undo fix2 version 1 first .*fix2 version 1 is built on top of it`)
	want(t, r, "early", "fix1 "+orig+" fix2")
	want(t, r, "fix2-undo-exit", "0")
	want(t, r, "fix2-undone", "fix1 "+orig)
	want(t, r, "fix1-undo-exit", "0")
	want(t, r, "fix1-undone", orig)
	want(t, r, "undone-livepatches", "")
	*note += fmt.Sprintf("; create fix1 %.1fs, fix2 --on-top-of fix1 %.1fs; bundles %d and %d bytes", took1.Seconds(), took2.Seconds(), len(fix1), len(fix2))
}
