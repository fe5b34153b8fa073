package lab

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// uuidPatch changes generate_random_uuid of lib/uuid.c, which the
// kernel builds without ftrace (lib/Makefile removes its flags), so
// livepatch cannot redirect it: every UUID it makes now begins with the
// byte 0x5f. The bundle carries it as a new function and replaces its
// callers: proc_do_uuid of drivers/char/random.c, what
// /proc/sys/kernel/random/uuid reads, and the callers in modules (btrfs,
// cifs, ...), patched when they load.
const uuidPatch = `--- a/lib/uuid.c
+++ b/lib/uuid.c
@@ -37,6 +37,7 @@ void generate_random_uuid(unsigned char uuid[16])
 	uuid[6] = (uuid[6] & 0x0F) | 0x40;
 	/* Set the UUID variant to DCE */
 	uuid[8] = (uuid[8] & 0x3F) | 0x80;
+	uuid[0] = 0x5f;
 }
 EXPORT_SYMBOL(generate_random_uuid);
 
`

// TestScenarioCreatePatchUnredirectable: a fix to a global function of
// a file built without ftrace goes through create --patch to a bundle
// that carries the function beside the kernel's copy and replaces every
// caller in vmlinux and the modules; in a guest, while it is applied,
// every UUID the kernel makes for /proc/sys/kernel/random/uuid begins
// with 5f, and undone, they are random again.
func TestScenarioCreatePatchUnredirectable(t *testing.T) {
	note := scenario(t)
	c := newPatchCreator(t)
	patch := c.writePatch("uuid.patch", uuidPatch)
	out := c.path("uuid.splice")
	log, took, err := c.create("--patch", patch, "--id", "uuid", "--version", "1",
		"--description", "lab: create --patch of lib/uuid.c", "-o", out)
	t.Logf("create --patch of a function built without ftrace took %s:\n%s", took.Round(time.Millisecond), log)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"generate_random_uuid cannot be redirected",
		"drivers/char/random.c: proc_do_uuid changed (refers to generate_random_uuid, which the bundle carries as a new function",
		"lib/uuid.c: generate_random_uuid cannot be redirected, and only functions the bundle replaces call it",
	} {
		if !strings.Contains(log, w) {
			t.Errorf("create --patch output lacks %q", w)
		}
	}
	// A module's caller is replaced too, in its own klp_object.
	if !regexp.MustCompile(`is built into module (btrfs|cifs|ext4|f2fs)`).MatchString(log) {
		t.Errorf("create --patch replaced no caller in a module:\n%s", log)
	}
	bundle := c.sign(out)
	r := bootScenario(t, note, Guest{}, `
uuids() { for i in 1 2 3 4 5 6 7 8; do cut -c1-2 /proc/sys/kernel/random/uuid; done | sort -u | tr '\n' ' '; }
mark uu-before "$(uuids)"
try uu-apply sf apply /lab/extra/uuid.splice
mark uu-enabled "$(cat /sys/kernel/livepatch/lp_uuid_v1/enabled) $(cat /sys/kernel/livepatch/lp_uuid_v1/transition)"
mark uu-applied "$(uuids)"
try uu-undo sfv undo uuid
mark uu-undone "$(uuids)"
mark uu-livepatches "$(ls /sys/kernel/livepatch)"
mark uu-oops "$(dmesg | grep -c 'BUG:\|Oops\|WARNING:\|not found in symbol table\|unresolvable ambiguity')"
`, File{Path: "lab/extra/uuid.splice", Data: bundle, Mode: 0o644})
	random := func(mark string) {
		t.Helper()
		got, _ := r.Marks.Get(mark)
		// Eight random UUIDs all begin with one byte once in 256^7.
		if len(strings.Fields(got)) < 2 {
			t.Errorf("%s: the UUIDs begin with %q: want random first bytes", mark, got)
		}
	}
	random("uu-before")
	want(t, r, "uu-apply-exit", "0")
	want(t, r, "uu-enabled", "1 0")
	want(t, r, "uu-applied", "5f")
	want(t, r, "uu-undo-exit", "0")
	random("uu-undone")
	want(t, r, "uu-livepatches", "")
	want(t, r, "uu-oops", "0")
	*note += fmt.Sprintf("; create --patch of lib/uuid.c %.1fs; bundle %d bytes", took.Seconds(), len(bundle))
}
