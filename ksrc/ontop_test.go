package ksrc

import (
	"errors"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// showC is a small stand-in for fs/proc/cmdline.c.
const showC = `static int show(struct seq_file *m, void *v)
{
	seq_puts(m, saved_command_line);
	seq_putc(m, '\n');
	return 0;
}
`

// fix1 prints a marker before the command line; fix2, made on top of
// fix1, one after it: its context holds fix1's line, so it applies only
// on top of fix1.
const (
	fix1 = `--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -1,5 +1,6 @@
 static int show(struct seq_file *m, void *v)
 {
+	seq_puts(m, "fix1 ");
 	seq_puts(m, saved_command_line);
 	seq_putc(m, '\n');
 	return 0;
`
	fix2 = `--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -2,6 +2,7 @@
 {
 	seq_puts(m, "fix1 ");
 	seq_puts(m, saved_command_line);
+	seq_puts(m, " fix2");
 	seq_putc(m, '\n');
 	return 0;
 }
`
	// other changes a file fix2 does not touch.
	other = `--- a/fs/other.c
+++ b/fs/other.c
@@ -1 +1 @@
-int x;
+int y;
`
)

func TestUnitSourcesOnTop(t *testing.T) {
	src := testutil.TempTree(t, map[string]string{"fs/proc/cmdline.c": showC, "fs/other.c": "int x;\n"})
	tree := &Tree{Source: src}
	earlier := []Earlier{{Name: "fix1.patch", Patch: mustParse(t, fix1+other)}}
	got, err := tree.unitSources(earlier, mustParse(t, fix2))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].path != "fs/proc/cmdline.c" {
		t.Fatalf("units %+v: want fs/proc/cmdline.c alone (the earlier update's other file stays with it)", got)
	}
	before, after := string(got[0].before), string(got[0].after)
	if !strings.Contains(before, `"fix1 "`) || strings.Contains(before, `" fix2"`) {
		t.Errorf("before is not the source with fix1 only:\n%s", before)
	}
	if !strings.Contains(after, `"fix1 "`) || !strings.Contains(after, `" fix2"`) {
		t.Errorf("after does not carry both fixes:\n%s", after)
	}

	// Without the earlier update, fix2's context is not there.
	_, err = tree.unitSources(nil, mustParse(t, fix2))
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Earlier != "" || ae.OnTop {
		t.Fatalf("fix2 alone = %v, want an ApplyError of the patch", err)
	}

	// An earlier update that does not apply is named.
	_, err = tree.unitSources([]Earlier{{Name: "fix2.patch", Patch: mustParse(t, fix2)}}, mustParse(t, fix1))
	if !errors.As(err, &ae) || ae.Earlier != "fix2.patch" || !strings.Contains(err.Error(), "apply earlier update fix2.patch to fs/proc/cmdline.c: hunk #1") {
		t.Errorf("an earlier update that does not apply = %v", err)
	}

	// A patch that does not apply on top says so.
	_, err = tree.unitSources(earlier, mustParse(t, fix1))
	if !errors.As(err, &ae) || !ae.OnTop || !strings.Contains(err.Error(), "(on top of the earlier updates)") || !strings.Contains(err.Error(), "is the patch applied already?") {
		t.Errorf("fix1 on top of itself = %v", err)
	}

	// An earlier update to a header is refused like the patch's own.
	header := "--- a/include/x.h\n+++ b/include/x.h\n@@ -1 +1 @@\n-a\n+b\n"
	_, err = tree.unitSources([]Earlier{{Name: "h.patch", Patch: mustParse(t, header)}}, mustParse(t, fix1))
	if !errors.Is(err, ErrUnsupportedFile) || !strings.Contains(err.Error(), "earlier update h.patch") {
		t.Errorf("an earlier header update = %v", err)
	}
	// The source tree was only read.
	if b, err := readBounded(src+"/fs/proc/cmdline.c", MaxSourceSize); err != nil || string(b) != showC {
		t.Errorf("the source tree changed: %v\n%s", err, b)
	}
}

func TestPatchDigest(t *testing.T) {
	a := mustParse(t, fix1)
	// The same change as git format-patch writes it: a message, a diff
	// --git line, an index line, a timestamp and a section name.
	git := "From 1234 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] proc: fix1\n\n---\n" +
		"diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c\nindex 1111111..2222222 100644\n" +
		strings.Replace(strings.Replace(fix1, "--- a/fs/proc/cmdline.c", "--- a/fs/proc/cmdline.c\t2026-01-01 00:00:00", 1),
			"@@ -1,5 +1,6 @@", "@@ -1,5 +1,6 @@ static int show(struct seq_file *m, void *v)", 1) + "-- \n2.39.5\n"
	b := mustParse(t, git)
	if a.Digest() != b.Digest() {
		t.Errorf("one change, two digests: %s and %s", a.Digest(), b.Digest())
	}
	if len(a.Digest()) != 64 {
		t.Errorf("digest %q is not hex SHA-256", a.Digest())
	}
	if c := mustParse(t, fix2); c.Digest() == a.Digest() {
		t.Error("two changes, one digest")
	}
	if c := mustParse(t, strings.Replace(fix1, `"fix1 "`, `"fix1!"`, 1)); c.Digest() == a.Digest() {
		t.Error("a changed line does not change the digest")
	}
}
