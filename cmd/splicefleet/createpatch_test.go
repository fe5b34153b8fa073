package main

import (
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/ksrc"
)

// TestCreatePatchRefusesBadArguments: the flag combinations create --patch
// needs, and a patch that is not a patch, are refused before any kernel
// tree is touched. The whole path, on the lab kernel's own source, is
// lab's TestScenarioCreatePatch.
func TestCreatePatchRefusesBadArguments(t *testing.T) {
	c := newCLI(t)
	good := c.write("fix.patch", []byte("--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -1,1 +1,1 @@\n-a\n+b\n"))
	bad := c.write("bad.patch", []byte("this is not a patch\n"))
	base := []string{"create", "--id", "x", "--version", "1", "-o", c.path("out.splice")}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no kernel source", []string{"--patch", good, "--kernel-build", c.dir}, exitError, "--kernel-source is required with --patch and --diffext"},
		{"no kernel build", []string{"--patch", good, "--kernel-source", c.dir}, exitError, "--kernel-build is required with --source and --patch"},
		{"a System.map without a patch", []string{"--module", good, "--system-map", good}, exitError, "only apply with --patch"},
		{"patch and source", []string{"--patch", good, "--source", c.dir, "--kernel-source", c.dir, "--kernel-build", c.dir}, exitError, "none of the others can be"},
		{"not a patch", []string{"--patch", bad, "--kernel-source", c.dir, "--kernel-build", c.dir}, exitRefused, "bad.patch: "},
		{"diffext without a kernel source", []string{"--diffext", "new", "--kernel-build", c.dir}, exitError, "--kernel-source is required with --patch and --diffext"},
		{"diffext and patch", []string{"--diffext", "new", "--patch", good, "--kernel-source", c.dir, "--kernel-build", c.dir}, exitError, "none of the others can be"},
		{"diffext finds nothing", []string{"--diffext", "new", "--kernel-source", c.dir, "--kernel-build", c.dir}, exitRefused, "no changed files: " + c.dir + " holds no FILE.new beside its FILE"},
		{"on-top-of without a patch", []string{"--module", good, "--on-top-of", good}, exitError, "--on-top-of only apply with --patch"},
		{"on-top-of and replace", []string{"--patch", good, "--on-top-of", good, "--replace", "--kernel-source", c.dir, "--kernel-build", c.dir}, exitError,
			"--on-top-of and --replace: an atomic-replace bundle takes every earlier livepatch off"},
		{"on-top-of and diffext", []string{"--diffext", "new", "--on-top-of", good, "--kernel-source", c.dir, "--kernel-build", c.dir}, exitError, "--on-top-of only applies with --patch"},
		{"on-top-of not a patch", []string{"--patch", good, "--on-top-of", bad, "--kernel-source", c.dir, "--kernel-build", c.dir}, exitRefused, "--on-top-of " + bad + ": "},
		{"on-top-of itself", []string{"--patch", good, "--on-top-of", good, "--kernel-source", c.dir, "--kernel-build", c.dir}, exitRefused, "--on-top-of " + good + ": the same change as " + good},
		{"no header units", []string{"--patch", good, "--kernel-source", c.dir, "--kernel-build", c.dir, "--max-header-units", "0"}, exitError, "--max-header-units 0: give a count of at least 1"},
		{"diffext with a slash", []string{"--diffext", "a/b", "--kernel-source", c.dir, "--kernel-build", c.dir}, exitRefused, "want a file name suffix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.snapshot()
			code, _, errs := c.run(append(append([]string{}, base...), tc.args...)...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, want %d; stderr %q, want it to contain %q", code, tc.code, errs, tc.want)
			}
			if !sameFiles(before, c.snapshot()) {
				t.Error("a refused create wrote files")
			}
		})
	}
}

// TestHunkOf: a refusal names the hunk that caused it: by a changed line,
// by the function diff names after @@, by its context, or none.
func TestHunkOf(t *testing.T) {
	p, err := ksrc.ParsePatch([]byte(`--- a/fs/x.c
+++ b/fs/x.c
@@ -10,3 +10,3 @@ static int show(struct seq_file *m)
 	int a;
-	a = counter;
+	a = counter + 1;
 	return a;
@@ -40,4 +40,4 @@
 static const char * const names[] = {
 	"zero",
-	"one",
+	"uno",
 	"two",
`))
	if err != nil {
		t.Fatal(err)
	}
	fp := p.File("fs/x.c")
	for name, want := range map[string]string{
		"counter": "hunk 1 of fs/x.c, @@ -10,3 +10,3 @@ static int show(struct seq_file *m)",
		"show":    "hunk 1 of fs/x.c, @@ -10,3 +10,3 @@ static int show(struct seq_file *m)",
		"names":   "hunk 2 of fs/x.c, @@ -40,4 +40,4 @@",
		"other":   "no hunk of fs/x.c names it; the change reaches it another way",
	} {
		if got := hunkOf(fp, name); got != want {
			t.Errorf("hunkOf(%s) = %q, want %q", name, got, want)
		}
	}
}

// TestHunkOfAny: a unit compiled for a changed header names the header's
// hunk, and a refusal of the header as a whole names its first hunk.
func TestHunkOfAny(t *testing.T) {
	p, err := ksrc.ParsePatch([]byte(`--- a/fs/proc/fd.h
+++ b/fs/proc/fd.h
@@ -15,3 +15,3 @@ extern int proc_fd_permission(struct user_namespace *mnt_userns,
 {
-	return PROC_I(inode)->fd;
+	return PROC_I(inode)->fd + 0;
 }
@@ -30,3 +30,3 @@
 struct x {
-	int a;
+	long a;
 };
`))
	if err != nil {
		t.Fatal(err)
	}
	fps := []*ksrc.FilePatch{p.File("fs/proc/fd.h")}
	if got, want := hunkOfAny(fps, "PROC_I"), "hunk 1 of fs/proc/fd.h, @@ -15,3 +15,3 @@ extern int proc_fd_permission(struct user_namespace *mnt_userns,"; got != want {
		t.Errorf("hunkOfAny(PROC_I) = %q, want %q", got, want)
	}
	if got, want := hunkOfAny(fps, "struct x"), "hunk 2 of fs/proc/fd.h, @@ -30,3 +30,3 @@"; got != want {
		t.Errorf("hunkOfAny(struct x) = %q, want %q", got, want)
	}
	if got := hunkOf(fps[0], ""); !strings.HasPrefix(got, "hunk 1 of fs/proc/fd.h") {
		t.Errorf("hunkOf of the whole file = %q", got)
	}
	if got := hunkOfAny(nil, "x"); got != "no hunk of the patch names it" {
		t.Errorf("hunkOfAny(nil) = %q", got)
	}
}

// TestDebugModulesDir: the unstripped modules are sought in the debug tree
// of the vmlinux create read when it has the -dbg package's layout, and
// at the package's own place otherwise: never in /lib/modules, whose
// modules are stripped, for a System.map or vmlinux in /boot.
func TestDebugModulesDir(t *testing.T) {
	const r = "6.1.0-53-cloud-amd64"
	for _, tc := range []struct{ vmlinux, want string }{
		{"/cache/dbg/usr/lib/debug/boot/vmlinux-" + r, "/cache/dbg/usr/lib/debug/lib/modules/" + r},
		{"/boot/vmlinux-" + r, "/usr/lib/debug/lib/modules/" + r},
		{"/src/linux/vmlinux", "/usr/lib/debug/lib/modules/" + r},
		{"", "/usr/lib/debug/lib/modules/" + r},
	} {
		if got := debugModulesDir(tc.vmlinux, r); got != tc.want {
			t.Errorf("debugModulesDir(%q) = %q, want %q", tc.vmlinux, got, tc.want)
		}
	}
}
