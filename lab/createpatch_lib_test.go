package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nextArgPatch changes next_arg of lib/cmdline.c, which the kernel
// builds without ftrace (lib/Makefile removes its flags), so livepatch
// cannot redirect it: it now logs every parameter it splits off. The
// bundle carries it as a new function and replaces its callers, among
// them parse_args of kernel/params.c, which splits a module's
// parameters at every load.
const nextArgPatch = `--- a/lib/cmdline.c
+++ b/lib/cmdline.c
@@ -269,6 +269,7 @@
 	} else
 		args += i;
 
+	pr_info("splicefleet: next_arg %s\n", *param);
 	/* Chew up trailing spaces. */
 	return skip_spaces(args);
 }
`

// paramsPatch is an earlier update to kernel/params.c, whose parse_args
// calls next_arg: it logs every module's parameters.
const paramsPatch = `--- a/kernel/params.c
+++ b/kernel/params.c
@@ -176,7 +176,7 @@
 	args = skip_spaces(args);
 
 	if (*args)
-		pr_debug("doing %s, parsing ARGS: '%s'\n", doing, args);
+		pr_info("doing %s, parsing ARGS: '%s'\n", doing, args);
 
 	while (*args) {
 		int ret;
`

// TestScenarioCreatePatchUnredirectable: a fix to a global function of
// a file built without ftrace goes through create --patch to a bundle
// that carries the function beside the kernel's copy and replaces every
// caller; in a guest, while it is applied, loading a module with a
// parameter runs the new code (the kernel logs the parameter), and
// undone, it does not. On top of an earlier update to a caller's file,
// it is refused.
func TestScenarioCreatePatchUnredirectable(t *testing.T) {
	note := scenario(t)
	c := newPatchCreator(t)
	patch := c.writePatch("nextarg.patch", nextArgPatch)
	out := c.path("nextarg.splice")
	log, took, err := c.create("--patch", patch, "--id", "nextarg", "--version", "1",
		"--description", "lab: create --patch of lib/cmdline.c", "-o", out)
	t.Logf("create --patch of a function built without ftrace took %s:\n%s", took.Round(time.Millisecond), log)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"next_arg cannot be redirected",
		"kernel/params.c: parse_args changed (refers to next_arg, which the bundle carries as a new function",
		"lib/cmdline.c: next_arg cannot be redirected, and only functions the bundle replaces call it",
	} {
		if !strings.Contains(log, w) {
			t.Errorf("create --patch output lacks %q", w)
		}
	}
	// On top of an earlier update that changes a caller's file, the
	// callers, compiled from the pristine tree, would undo it: refused.
	earlier := c.writePatch("params.patch", paramsPatch)
	log, _, err = c.create("--patch", patch, "--on-top-of", earlier, "--id", "nextarg2", "--version", "1", "-o", c.path("nextarg2.splice"))
	if err == nil || !strings.Contains(log, "kernel/params.c calls next_arg, which cannot be redirected, and the earlier update") {
		t.Errorf("create --patch on top of an update to a caller's file: %v, want refused naming kernel/params.c:\n%s", err, log)
	}
	bundle := c.sign(out)
	ko, err := os.ReadFile(filepath.Join(c.modules, "kernel", "fs", "binfmt_misc.ko"))
	if err != nil {
		t.Fatal(err)
	}
	r := bootScenario(t, note, Guest{}, `
logged() { dmesg | grep -c 'splicefleet: next_arg splicefleet_lab'; }
try na-load0 insmod /lab/extra/binfmt_misc.ko splicefleet_lab=1
rmmod binfmt_misc
mark na-before "$(logged)"
try na-apply sf apply /lab/extra/nextarg.splice
mark na-enabled "$(cat /sys/kernel/livepatch/lp_nextarg_v1/enabled) $(cat /sys/kernel/livepatch/lp_nextarg_v1/transition)"
try na-load insmod /lab/extra/binfmt_misc.ko splicefleet_lab=1
rmmod binfmt_misc
mark na-applied "$(logged)"
try na-undo sfv undo nextarg
try na-load2 insmod /lab/extra/binfmt_misc.ko splicefleet_lab=1
mark na-undone "$(logged)"
mark na-livepatches "$(ls /sys/kernel/livepatch)"
mark na-oops "$(dmesg | grep -c 'BUG:\|Oops\|WARNING:\|not found in symbol table\|unresolvable ambiguity')"
`, File{Path: "lab/extra/nextarg.splice", Data: bundle, Mode: 0o644},
		File{Path: "lab/extra/binfmt_misc.ko", Data: ko, Mode: 0o644})
	want(t, r, "na-load0-exit", "0")
	want(t, r, "na-before", "0")
	want(t, r, "na-apply-exit", "0")
	want(t, r, "na-enabled", "1 0")
	want(t, r, "na-load-exit", "0")
	want(t, r, "na-applied", "1")
	want(t, r, "na-undo-exit", "0")
	want(t, r, "na-load2-exit", "0")
	want(t, r, "na-undone", "1")
	want(t, r, "na-livepatches", "")
	want(t, r, "na-oops", "0")
	*note += fmt.Sprintf("; create --patch of lib/cmdline.c %.1fs; bundle %d bytes", took.Seconds(), len(bundle))
}
