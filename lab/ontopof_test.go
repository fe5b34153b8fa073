package lab

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fix1Patch is a first update to cmdline_proc_show of fs/proc/cmdline.c,
// through a new helper: /proc/cmdline starts with "fix1 ".
const fix1Patch = `--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -4,8 +4,14 @@
 #include <linux/proc_fs.h>
 #include <linux/seq_file.h>
 
+static noinline void cmdline_fix1(struct seq_file *m)
+{
+	seq_puts(m, "fix1 ");
+}
+
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
+	cmdline_fix1(m);
 	seq_puts(m, saved_command_line);
 	seq_putc(m, '\n');
 	return 0;
`

// fix2Patch is a later update to the same function, made on the source
// with fix1 applied (its context holds fix1's line): /proc/cmdline ends
// with " fix2" as well. Its new cmdline_proc_show still calls fix1's
// helper, which is not in the kernel but in fix1's module: the bundle
// carries a copy of its own.
const fix2Patch = `--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -13,6 +13,7 @@
 {
 	cmdline_fix1(m);
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
	c := newPatchCreator(t)
	p := c.path
	for name, text := range map[string]string{"fix1.patch": fix1Patch, "fix2.patch": fix2Patch} {
		c.writePatch(name, text)
	}
	create := func(id string, args ...string) (string, time.Duration, error) {
		return c.create(append([]string{"--id", id, "--version", "1", "--description", "lab: " + id + " of cmdline_proc_show",
			"-o", p(id + ".splice")}, args...)...)
	}
	sign := func(id string) []byte {
		t.Helper()
		return c.sign(p(id + ".splice"))
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
	for _, w := range []string{"built on top of " + p("fix1.patch") + " (fs/proc/cmdline.c, source patch ", "cmdline_proc_show changed",
		"cmdline_fix1 is not in the kernel (an earlier update added it): the module carries its own copy", "replaces cmdline_proc_show"} {
		if !strings.Contains(out, w) {
			t.Errorf("create --on-top-of output lacks %q", w)
		}
	}
	fix2 := sign("fix2")
	// fix2's manifest names fix1's by the digest fix1's manifest records.
	var inspect1, inspect2 bytes.Buffer
	if err := sfRun(c.bin, &inspect1, "inspect", p("fix1.splice")); err != nil {
		t.Fatal(err)
	}
	if err := sfRun(c.bin, &inspect2, "inspect", p("fix2.splice")); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`source patch\s+sha256 ([0-9a-f]{64})`).FindStringSubmatch(inspect1.String())
	if m == nil {
		t.Fatalf("inspect shows no source patch for fix1:\n%s", inspect1.String())
	}
	if !regexp.MustCompile(`on top of\s+fix1\.patch \(source patch ` + m[1] + `\)`).MatchString(inspect2.String()) {
		t.Errorf("inspect does not show fix2 built on top of fix1's source patch %s:\n%s", m[1], inspect2.String())
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
mark oops "$(dmesg | grep -c 'Oops\|BUG:\|WARNING:\|Call Trace')"
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
	want(t, r, "oops", "0")
	*note += fmt.Sprintf("; create fix1 %.1fs, fix2 --on-top-of fix1 %.1fs; bundles %d and %d bytes", took1.Seconds(), took2.Seconds(), len(fix1), len(fix2))
}
