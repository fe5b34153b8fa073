package lab

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fdHeaderPatch changes proc_fd, the static inline of the private header
// fs/proc/fd.h, so that fd 2 of /proc/PID/fd names fd 1. Two units of
// the lab kernel read the header: fs/proc/fd.c, whose callers of proc_fd
// change, and fs/proc/base.c, which never mentions proc_fd and so is not
// even compiled.
const fdHeaderPatch = `--- a/fs/proc/fd.h
+++ b/fs/proc/fd.h
@@ -15,7 +15,9 @@ extern int proc_fd_permission(struct user_namespace *mnt_userns,
 
 static inline unsigned int proc_fd(struct inode *inode)
 {
-	return PROC_I(inode)->fd;
+	unsigned int fd = PROC_I(inode)->fd;
+
+	return fd == 2 ? 1 : fd;
 }
 
 #endif /* __PROCFS_FD_H__ */
`

// TestScenarioCreatePatchHeader builds a bundle from a patch to a header
// alone and applies it in a guest of the lab kernel: while it is
// applied, /proc/self/fd/2 of a process whose fd 2 is /dev/null and fd 1
// a pipe reads as the pipe; undone, as /dev/null again.
func TestScenarioCreatePatchHeader(t *testing.T) {
	note := scenario(t)
	c := newPatchCreator(t)
	patch := c.writePatch("fdheader.patch", fdHeaderPatch)
	out := c.path("fdheader.splice")
	log, took, err := c.create("--patch", patch,
		"--id", "fdheader", "--version", "1", "--description", "lab: create --patch of fs/proc/fd.h", "-o", out)
	t.Logf("create --patch of a header took %s:\n%s", took.Round(time.Millisecond), log)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`fs/proc/fd\.h: [2-9] units read it; 1 use proc_fd \(the changed definitions\)`).MatchString(log) {
		t.Errorf("create --patch output does not say that one of the units that read fs/proc/fd.h uses proc_fd")
	}
	if strings.Contains(log, "fs/proc/base.c reads") {
		t.Errorf("create --patch compiled fs/proc/base.c, which never mentions proc_fd")
	}
	for _, w := range []string{
		"fs/proc/fd.c reads fs/proc/fd.h: compiled before and after the patch",
		"fs/proc/fd.c: proc_fd_link changed",
		"inline proc_fd changed: carried by replacing",
	} {
		if !strings.Contains(log, w) {
			t.Errorf("create --patch output lacks %q", w)
		}
	}
	if regexp.MustCompile(`fs/proc/base\.c: \S+ changed`).MatchString(log) {
		t.Errorf("create --patch changed functions of fs/proc/base.c, which does not call proc_fd")
	}
	bundle := c.sign(out)
	r := bootScenario(t, note, Guest{}, `
mark hdr-before "$(readlink /proc/self/fd/2 2>/dev/null | sed 's/\[.*//')"
try hdr-apply sf apply /lab/extra/fdheader.splice
mark hdr-enabled "$(cat /sys/kernel/livepatch/lp_fdheader_v1/enabled)"
mark hdr-applied "$(readlink /proc/self/fd/2 2>/dev/null | sed 's/\[.*//')"
try hdr-undo sfv undo fdheader
mark hdr-undone "$(readlink /proc/self/fd/2 2>/dev/null | sed 's/\[.*//')"
mark hdr-oops "$(dmesg | grep -c 'BUG:\|Oops\|WARNING:')"
`, File{Path: "lab/extra/fdheader.splice", Data: bundle, Mode: 0o644})
	want(t, r, "hdr-before", "/dev/null")
	want(t, r, "hdr-apply-exit", "0")
	want(t, r, "hdr-enabled", "1")
	want(t, r, "hdr-applied", "pipe:")
	want(t, r, "hdr-undo-exit", "0")
	want(t, r, "hdr-undone", "/dev/null")
	want(t, r, "hdr-oops", "0")
	*note += fmt.Sprintf("; create --patch of a header %.1fs; bundle %d bytes", took.Seconds(), len(bundle))
}
