package lab

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/ksrc"
	"github.com/splicefleet/splicefleet/splice"
)

// cmdlinePatch changes cmdline_proc_show (fs/proc/cmdline.c of the lab
// kernel) to append a marker after the command line, through a new static
// helper. The new code reads saved_command_line, which vmlinux does not
// export: the generated module reaches it through a livepatch relocation.
const cmdlinePatch = `--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -4,10 +4,16 @@
 #include <linux/proc_fs.h>
 #include <linux/seq_file.h>
 
+static noinline void cmdline_mark(struct seq_file *m)
+{
+	seq_puts(m, " splicefleet.patched=1");
+}
+
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
 	seq_puts(m, saved_command_line);
+	cmdline_mark(m);
 	seq_putc(m, '\n');
 	return 0;
 }
 
`

// counterPatch adds a static variable only the new code knows: the
// module carries its only copy, so /proc/cmdline counts its reads while
// the patch is applied.
const counterPatch = `--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -4,10 +4,13 @@
 #include <linux/proc_fs.h>
 #include <linux/seq_file.h>
 
+static unsigned long cmdline_reads = 100;
+
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
 	seq_puts(m, saved_command_line);
+	seq_printf(m, " reads=%lu", ++cmdline_reads);
 	seq_putc(m, '\n');
 	return 0;
 }
 
`

// statePatch changes an existing table's contents. Only functions of
// fs/proc/array.c read it (through the inline get_task_state), so the
// bundle carries the new table and replaces every one of them:
// /proc/PID/status then says "R (runnable)".
const statePatch = `--- a/fs/proc/array.c
+++ b/fs/proc/array.c
@@ -125,7 +125,7 @@
 static const char * const task_state_array[] = {
 
 	/* states in TASK_REPORT: */
-	"R (running)",		/* 0x00 */
+	"R (runnable)",		/* 0x00 */
 	"S (sleeping)",		/* 0x01 */
 	"D (disk sleep)",	/* 0x02 */
 	"T (stopped)",		/* 0x04 */
`

// opsPatch points an ops table at other code: children_seq_open stores
// the table's address in every open file, which would keep calling
// through the kernel's copy, so it is refused.
const opsPatch = `--- a/fs/proc/array.c
+++ b/fs/proc/array.c
@@ -795,7 +795,7 @@
 static const struct seq_operations children_seq_ops = {
 	.start	= children_seq_start,
 	.next	= children_seq_next,
-	.stop	= children_seq_stop,
+	.stop	= NULL,
 	.show	= children_seq_show,
 };
 
`

// inlinePatch changes task_core_dumping, a static inline function of
// fs/proc/array.c that lives only in its caller proc_pid_status: the
// bundle carries the change by replacing the caller.
const inlinePatch = `--- a/fs/proc/array.c
+++ b/fs/proc/array.c
@@ -416,6 +416,7 @@
 static inline void task_core_dumping(struct seq_file *m, struct task_struct *task)
 {
 	seq_put_decimal_ull(m, "CoreDumping:\t", !!task->signal->core_state);
+	seq_puts(m, " splicefleet-inline");
 	seq_putc(m, '\n');
 }
 
`

// fdinfoPatch changes seq_show of fs/proc/fd.c (what /proc/PID/fdinfo/N
// reads), a static function whose name another unit of vmlinux uses too
// (netfilter's nf_log): the bundle must replace the first seq_show in
// kallsyms order, the one among fs/proc's symbols.
const fdinfoPatch = `--- a/fs/proc/fd.c
+++ b/fs/proc/fd.c
@@ -64,6 +64,7 @@
 	if (seq_has_overflowed(m))
 		goto out;
 
+	seq_puts(m, "splicefleet:\t1\n");
 	if (file->f_op->show_fdinfo)
 		file->f_op->show_fdinfo(m, file);
 
`

// warnPatch adds a WARN_ON_ONCE that fires on the first read of
// /proc/cmdline: its __bug_table entry must go into the module, or the
// kernel would take the ud2 for an invalid opcode and kill the reader.
const warnPatch = `--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -7,6 +7,7 @@
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
 	seq_puts(m, saved_command_line);
+	WARN_ON_ONCE(m->count > 0);
 	seq_putc(m, '\n');
 	return 0;
 }
`

// binfmtPatch changes bm_status_read of fs/binfmt_misc.c, which the
// cloud kernel builds into the module binfmt_misc: what
// /proc/sys/fs/binfmt_misc/status reads once the module is loaded.
const binfmtPatch = `--- a/fs/binfmt_misc.c
+++ b/fs/binfmt_misc.c
@@ -847,7 +847,7 @@
 static ssize_t
 bm_status_read(struct file *file, char __user *buf, size_t nbytes, loff_t *ppos)
 {
-	char *s = enabled ? "enabled\n" : "disabled\n";
+	char *s = enabled ? "enabled splicefleet\n" : "disabled\n";
 
 	return simple_read_from_buffer(buf, nbytes, ppos, s, strlen(s));
 }
`

// reschedPatch adds a cond_resched(), which the cloud kernel's dynamic
// preemption makes a static call: the new code's .static_call_sites
// entry names the vmlinux key __SCK__cond_resched, which the kernel must
// find when it registers the livepatch module's static calls.
const reschedPatch = `--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -7,6 +7,8 @@
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
 	seq_puts(m, saved_command_line);
+	cond_resched();
+	seq_puts(m, " splicefleet.resched=1");
 	seq_putc(m, '\n');
 	return 0;
 }
`

// TestScenarioCreatePatch: a source patch to the lab kernel's own
// fs/proc/cmdline.c goes through create --patch (the Debian source package
// of exactly the lab kernel, prepared once, the one unit compiled before
// and after, the objects diffed, a livepatch module generated) to a signed
// bundle; applied in a guest, /proc/cmdline says what the patch says, and
// undo restores it. A changed inline function, an ambiguously named
// function and a new variable are carried (each applied in the guest);
// a patch that changes the kernel's data is refused with the reason.
func TestScenarioCreatePatch(t *testing.T) {
	note := scenario(t)
	c := newPatchCreator(t)
	p := c.path
	for name, text := range map[string]string{
		"cmdline.patch": cmdlinePatch,
		"counter.patch": counterPatch,
		"state.patch":   statePatch,
		"ops.patch":     opsPatch,
		"warn.patch":    warnPatch,
		"binfmt.patch":  binfmtPatch,
		"resched.patch": reschedPatch,
		// Two files in one patch: one of vmlinux, one of a module.
		"both.patch":   cmdlinePatch + binfmtPatch,
		"inline.patch": inlinePatch,
		"fdinfo.patch": fdinfoPatch,
	} {
		c.writePatch(name, text)
	}
	create := func(patch, id, out string) (string, time.Duration, error) {
		return c.create("--patch", patch, "--id", id, "--version", "1",
			"--description", "lab: create --patch of fs/proc/cmdline.c", "-o", out)
	}
	out, took, err := create(p("cmdline.patch"), "cmdline-patch", p("cmdline-patch.splice"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("create --patch took %s:\n%s", took.Round(time.Millisecond), out)
	prep := "?"
	if m := regexp.MustCompile(`tree preparation ([0-9.]+)s`).FindStringSubmatch(out); m != nil {
		prep = m[1] + "s"
	}
	for _, w := range []string{"cmdline_proc_show changed", "cmdline_mark added", "reaches saved_command_line of vmlinux through a livepatch relocation", "replaces cmdline_proc_show"} {
		if !strings.Contains(out, w) {
			t.Errorf("create --patch output lacks %q", w)
		}
	}
	bundle := c.sign(p("cmdline-patch.splice"))
	var inspect bytes.Buffer
	if err := sfRun(c.bin, &inspect, "inspect", p("cmdline-patch.splice")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(inspect.String(), "cmdline_proc_show") || !strings.Contains(inspect.String(), "lp_cmdline_patch_v1") {
		t.Errorf("the bundle does not list the replaced function and module:\n%s", inspect.String())
	}

	// The module finds saved_command_line through a livepatch relocation,
	// and its new code carries ORC unwind entries (objtool ran), so the
	// kernel can check the stacks of tasks inside it.
	parsed, err := splice.Decode(bytes.NewReader(bundle))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := elf.NewFile(bytes.NewReader(parsed.Module))
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range []string{".klp.rela.vmlinux..text.cmdline_proc_show", ".orc_unwind_ip"} {
		if mod.Section(sec) == nil {
			t.Errorf("the module has no %s section", sec)
		}
	}
	syms, err := mod.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(syms, func(s elf.Symbol) bool {
		return s.Name == ".klp.sym.vmlinux.saved_command_line,0" && s.Section == elf.SectionIndex(0xff20)
	}) {
		t.Error("the module has no livepatch symbol for saved_command_line")
	}

	// Warm: the prepared tree is reused.
	_, warm, err := create(p("cmdline.patch"), "cmdline-patch", p("again.splice"))
	if err != nil {
		t.Fatal(err)
	}

	// A changed table only the file's functions read is carried, with
	// every function that reads it replaced.
	out, _, err = create(p("state.patch"), "state", p("state.splice"))
	if err != nil {
		t.Fatalf("a patch changing task_state_array was refused: %v\n%s", err, out)
	}
	for _, w := range []string{"task_state_array: constant changed", "new variable task_state_array", "proc_pid_status"} {
		if !strings.Contains(out, w) {
			t.Errorf("create --patch output lacks %q:\n%s", w, out)
		}
	}
	stateBundle := c.sign(p("state.splice"))

	// A change to an ops table is refused, with the reason, and no
	// bundle is written.
	out, _, err = create(p("ops.patch"), "ops", p("ops.splice"))
	if err == nil {
		t.Fatalf("a patch changing children_seq_ops was accepted:\n%s", out)
	}
	if !strings.Contains(out, "children_seq_ops") || !strings.Contains(out, "cannot be carried by a livepatch") || !strings.Contains(out, "as an ops table does") {
		t.Errorf("the refusal does not name the variable and the reason:\n%s", out)
	}
	if !strings.Contains(out, "refused: data children_seq_ops (hunk 1 of fs/proc/array.c, @@ -795,7 +795,7 @@)") {
		t.Errorf("the refusal does not name its kind and the hunk that caused it:\n%s", out)
	}
	if _, err := os.Stat(p("ops.splice")); err == nil {
		t.Error("a refused patch left a bundle behind")
	}

	// Ksplice's --diffext: the same change kept as cmdline.c.new beside
	// cmdline.c in the source tree gives the same replaced functions. The
	// .new file is removed again (the tree is shared with other tests).
	cmdline := filepath.Join(c.src, "fs", "proc", "cmdline.c")
	orig, err := os.ReadFile(cmdline)
	if err != nil {
		t.Fatal(err)
	}
	fix, err := ksrc.ParsePatch([]byte(cmdlinePatch))
	if err != nil {
		t.Fatal(err)
	}
	changed, err := ksrc.Apply(orig, fix.File("fs/proc/cmdline.c"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cmdline+".new", changed, 0o644); err != nil {
		t.Fatal(err)
	}
	extLog, _, err := c.create("--diffext", "new", "--id", "cmdline-ext", "--version", "1", "-o", p("cmdline-ext.splice"))
	_ = os.Remove(cmdline + ".new")
	if err != nil {
		t.Fatalf("create --diffext: %v\n%s", err, extLog)
	}
	for _, w := range []string{"derived from 1 changed file: fs/proc/cmdline.c", "cmdline_proc_show changed", "cmdline_mark added", "replaces cmdline_proc_show"} {
		if !strings.Contains(extLog, w) {
			t.Errorf("create --diffext output lacks %q:\n%s", w, extLog)
		}
	}

	// A new variable only the new code knows is carried by the module.
	out, _, err = create(p("counter.patch"), "counter", p("counter.splice"))
	if err != nil {
		t.Fatalf("a patch adding a static variable was refused: %v\n%s", err, out)
	}
	if !strings.Contains(out, "new variable cmdline_reads (8 bytes): the module carries its only copy") {
		t.Errorf("create --patch does not say it carries the new variable:\n%s", out)
	}
	counterBundle := c.sign(p("counter.splice"))

	// A new WARN is carried with its bug table entry.
	out, _, err = create(p("warn.patch"), "warn", p("warn.splice"))
	if err != nil {
		t.Fatalf("a patch adding a WARN_ON_ONCE was refused: %v\n%s", err, out)
	}
	warnBundle := c.sign(p("warn.splice"))

	// A file built into a module: the bundle patches the module when it
	// is loaded, before or after the patch.
	out, _, err = create(p("binfmt.patch"), "binfmt", p("binfmt.splice"))
	if err != nil {
		t.Fatalf("a patch to a module's file was refused: %v\n%s", err, out)
	}
	for _, w := range []string{"built into module binfmt_misc", "reaches enabled of binfmt_misc through a livepatch relocation"} {
		if !strings.Contains(out, w) {
			t.Errorf("create --patch output lacks %q:\n%s", w, out)
		}
	}
	binfmtBundle := c.sign(p("binfmt.splice"))
	binfmtKO, err := os.ReadFile(filepath.Join(c.modules, "kernel", "fs", "binfmt_misc.ko"))
	if err != nil {
		t.Fatal(err)
	}

	// Two files, two objects: one module with a klp_object for each.
	out, _, err = create(p("both.patch"), "both", p("both.splice"))
	if err != nil {
		t.Fatalf("a patch to two files was refused: %v\n%s", err, out)
	}
	if !strings.Contains(out, "replaces cmdline_proc_show, bm_status_read in fs/proc/cmdline.c, fs/binfmt_misc.c") {
		t.Errorf("create --patch does not say it replaces both functions:\n%s", out)
	}
	bothBundle := c.sign(p("both.splice"))

	// A static call site goes with the new code, its key in vmlinux.
	out, _, err = create(p("resched.patch"), "resched", p("resched.splice"))
	if err != nil {
		t.Fatalf("a patch adding a cond_resched was refused: %v\n%s", err, out)
	}
	if !strings.Contains(out, "reaches __SCK__cond_resched of vmlinux through a livepatch relocation") {
		t.Errorf("create --patch does not say how it reaches the static call's key:\n%s", out)
	}
	reschedBundle := c.sign(p("resched.splice"))

	// A changed inline function is carried by its caller.
	out, _, err = create(p("inline.patch"), "inline-patch", p("inline-patch.splice"))
	if err != nil {
		t.Fatalf("a patch to an inline function was refused: %v\n%s", err, out)
	}
	if !strings.Contains(out, "inline task_core_dumping changed: carried by replacing proc_pid_status") {
		t.Errorf("create --patch does not say how the inline change is carried:\n%s", out)
	}
	inlineBundle := c.sign(p("inline-patch.splice"))
	// An ambiguous static name is replaced at its kallsyms position.
	out, _, err = create(p("fdinfo.patch"), "fdinfo-patch", p("fdinfo-patch.splice"))
	if err != nil {
		t.Fatalf("a patch to an ambiguously named function was refused: %v\n%s", err, out)
	}
	if !strings.Contains(out, "replaces seq_show at kallsyms position 1") {
		t.Errorf("create --patch does not say which seq_show it replaces:\n%s", out)
	}
	fdinfoBundle := c.sign(p("fdinfo-patch.splice"))

	r := bootScenario(t, note, Guest{}, `
state before
try apply sf apply /lab/extra/cmdline-patch.splice
state applied
mark sysfs-enabled "$(cat /sys/kernel/livepatch/lp_cmdline_patch_v1/enabled)"
try undo sfv undo cmdline-patch
state undone
mark inline-before "$(grep CoreDumping /proc/self/status | tr '\t' ' ')"
try inline-apply sf apply /lab/extra/inline-patch.splice
mark inline-applied "$(grep CoreDumping /proc/self/status | tr '\t' ' ')"
try inline-undo sfv undo inline-patch
mark inline-undone "$(grep CoreDumping /proc/self/status | tr '\t' ' ')"
mark state-before "$(grep State /proc/self/status | tr '\t' ' ')"
try state-apply sf apply /lab/extra/state.splice
mark state-applied "$(grep State /proc/self/status | tr '\t' ' ')"
try state-undo sfv undo state
mark state-undone "$(grep State /proc/self/status | tr '\t' ' ')"
try fdinfo-apply sf apply /lab/extra/fdinfo-patch.splice
mark fdinfo-applied "$(grep -c splicefleet /proc/self/fdinfo/0)"
try fdinfo-undo sfv undo fdinfo-patch
mark fdinfo-undone "$(grep -c splicefleet /proc/self/fdinfo/0)"
try counter-apply sf apply /lab/extra/counter.splice
mark counter-first "$(grep -o 'reads=[0-9]*' /proc/cmdline)"
mark counter-second "$(grep -o 'reads=[0-9]*' /proc/cmdline)"
try counter-undo sfv undo counter
mark counter-undone "$(grep -c 'reads=' /proc/cmdline)"
try warn-apply sf apply /lab/extra/warn.splice
try warn-read cat /proc/cmdline
mark warn-logged "$(dmesg | grep -c 'WARNING: CPU: .* at fs/proc/cmdline.c')"
mark warn-oops "$(dmesg | grep -c 'invalid opcode')"
try warn-undo sfv undo warn
try bm-apply sf apply /lab/extra/binfmt.splice
mark bm-waiting "$(cat /sys/kernel/livepatch/lp_binfmt_v1/enabled)"
try bm-load insmod /lab/extra/binfmt_misc.ko
mkdir -p /bm
try bm-mount mount -t binfmt_misc none /bm
mark bm-after "$(cat /bm/status)"
try bm-undo sfv undo binfmt
mark bm-undone "$(cat /bm/status)"
try bm-apply2 sf apply /lab/extra/binfmt.splice
mark bm-before "$(cat /bm/status)"
try bm-undo2 sfv undo binfmt
mark bm-undone2 "$(cat /bm/status)"
try both-apply sf apply /lab/extra/both.splice
mark both-objects "$(ls -d /sys/kernel/livepatch/lp_both_v1/*/ | xargs -n1 basename | sort | tr '\n' ' ')"
mark both-cmdline "$(grep -c splicefleet.patched=1 /proc/cmdline)"
mark both-status "$(cat /bm/status)"
try both-undo sfv undo both
try resched-apply sf apply /lab/extra/resched.splice
mark resched-cmdline "$(grep -c splicefleet.resched=1 /proc/cmdline)"
mark resched-oops "$(dmesg | grep -c 'static_call\|BUG:\|Oops')"
try resched-undo sfv undo resched
mark both-undone "$(grep -c splicefleet.patched=1 /proc/cmdline) $(cat /bm/status)"
`, File{Path: "lab/extra/cmdline-patch.splice", Data: bundle, Mode: 0o644},
		File{Path: "lab/extra/inline-patch.splice", Data: inlineBundle, Mode: 0o644},
		File{Path: "lab/extra/fdinfo-patch.splice", Data: fdinfoBundle, Mode: 0o644},
		File{Path: "lab/extra/state.splice", Data: stateBundle, Mode: 0o644},
		File{Path: "lab/extra/counter.splice", Data: counterBundle, Mode: 0o644},
		File{Path: "lab/extra/warn.splice", Data: warnBundle, Mode: 0o644},
		File{Path: "lab/extra/binfmt.splice", Data: binfmtBundle, Mode: 0o644},
		File{Path: "lab/extra/binfmt_misc.ko", Data: binfmtKO, Mode: 0o644},
		File{Path: "lab/extra/both.splice", Data: bothBundle, Mode: 0o644},
		File{Path: "lab/extra/resched.splice", Data: reschedBundle, Mode: 0o644})
	before, _ := r.Marks.Get("before-cmdline")
	want(t, r, "apply-exit", "0")
	want(t, r, "applied-cmdline", strings.TrimSpace(before)+" splicefleet.patched=1")
	want(t, r, "sysfs-enabled", "1")
	want(t, r, "undo-exit", "0")
	want(t, r, "undone-cmdline", strings.TrimSpace(before))
	want(t, r, "undone-livepatches", "")
	want(t, r, "inline-before", "CoreDumping: 0")
	want(t, r, "inline-apply-exit", "0")
	want(t, r, "inline-applied", "CoreDumping: 0 splicefleet-inline")
	want(t, r, "inline-undo-exit", "0")
	want(t, r, "inline-undone", "CoreDumping: 0")
	want(t, r, "state-before", "State: R (running)")
	want(t, r, "state-apply-exit", "0")
	want(t, r, "state-applied", "State: R (runnable)")
	want(t, r, "state-undo-exit", "0")
	want(t, r, "state-undone", "State: R (running)")
	want(t, r, "fdinfo-apply-exit", "0")
	want(t, r, "fdinfo-applied", "1")
	want(t, r, "fdinfo-undo-exit", "0")
	want(t, r, "fdinfo-undone", "0")
	want(t, r, "counter-apply-exit", "0")
	want(t, r, "counter-first", "reads=101")
	want(t, r, "counter-second", "reads=102")
	want(t, r, "counter-undo-exit", "0")
	want(t, r, "counter-undone", "0")
	want(t, r, "warn-apply-exit", "0")
	want(t, r, "warn-read-exit", "0")
	want(t, r, "warn-logged", "1")
	want(t, r, "warn-oops", "0")
	want(t, r, "warn-undo-exit", "0")
	// Patched when it is loaded after the patch...
	want(t, r, "bm-apply-exit", "0")
	want(t, r, "bm-waiting", "1")
	want(t, r, "bm-load-exit", "0")
	want(t, r, "bm-mount-exit", "0")
	want(t, r, "bm-after", "enabled splicefleet")
	want(t, r, "bm-undo-exit", "0")
	want(t, r, "bm-undone", "enabled")
	// ... and at once when it is loaded already.
	want(t, r, "bm-apply2-exit", "0")
	want(t, r, "bm-before", "enabled splicefleet")
	want(t, r, "bm-undo2-exit", "0")
	want(t, r, "bm-undone2", "enabled")
	want(t, r, "both-apply-exit", "0")
	want(t, r, "both-objects", "binfmt_misc vmlinux")
	want(t, r, "both-cmdline", "1")
	want(t, r, "both-status", "enabled splicefleet")
	want(t, r, "both-undo-exit", "0")
	want(t, r, "both-undone", "0 enabled")
	want(t, r, "resched-apply-exit", "0")
	want(t, r, "resched-cmdline", "1")
	want(t, r, "resched-oops", "0")
	want(t, r, "resched-undo-exit", "0")
	*note += fmt.Sprintf("; create --patch %.1fs (tree preparation %s), again %.1fs; bundle %d bytes", took.Seconds(), prep, warm.Seconds(), len(bundle))
}
