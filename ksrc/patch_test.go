package ksrc

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// cmdlinePatch is what `git format-patch` writes: a mail header and
// message, then a git section.
const cmdlinePatch = `From 1234 Mon Sep 17 00:00:00 2001
Subject: [PATCH] proc: say hello

Some explanation.
---
 fs/proc/cmdline.c | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c
index 8b8f3e3..e6f9e1a 100644
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,7 +6,7 @@
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
 	seq_puts(m, saved_command_line);
-	seq_putc(m, '\n');
+	seq_puts(m, " patched\n");
 	return 0;
 }
 
-- 
2.39.5
`

func TestParseGitPatch(t *testing.T) {
	p, err := ParsePatch([]byte(cmdlinePatch))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"fs/proc/cmdline.c"}, p.Files()); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	fp := p.File("fs/proc/cmdline.c")
	if fp == nil || len(fp.Hunks) != 1 {
		t.Fatalf("File = %+v", fp)
	}
	h := fp.Hunks[0]
	if h.OldStart != 6 || h.OldLines != 7 || h.NewStart != 6 || h.NewLines != 7 || len(h.Lines) != 8 {
		t.Errorf("hunk = %+v", h)
	}
	if h.Lines[3] != (Line{'-', "\tseq_putc(m, '\\n');\n"}) || h.Lines[4] != (Line{'+', "\tseq_puts(m, \" patched\\n\");\n"}) {
		t.Errorf("changed lines = %q", h.Lines[3:5])
	}
	if h.Lines[7] != (Line{' ', "\n"}) {
		t.Errorf("empty context line = %q", h.Lines[7])
	}
}

func TestParsePlainMultiFileMultiHunk(t *testing.T) {
	in := "--- a/x/one.c\t2024-01-01 00:00:00.000000000 +0000\n" +
		"+++ b/x/one.c\t2024-01-02 00:00:00.000000000 +0000\n" +
		"@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n" +
		"@@ -10 +10,2 @@ int f(void)\n j\n+k\n" +
		"--- a/y/two.c\n+++ b/y/two.c\n" +
		"@@ -2,0 +3 @@\n+new\n"
	p, err := ParsePatch([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"x/one.c", "y/two.c"}, p.Files()); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	one := p.File("x/one.c")
	if len(one.Hunks) != 2 {
		t.Fatalf("x/one.c hunks = %d", len(one.Hunks))
	}
	if h := one.Hunks[1]; h.OldStart != 10 || h.OldLines != 1 || h.NewLines != 2 || h.Section != "int f(void)" {
		t.Errorf("second hunk = %+v", h)
	}
	if h := p.File("y/two.c").Hunks[0]; h.OldStart != 2 || h.OldLines != 0 || h.NewStart != 3 || h.NewLines != 1 {
		t.Errorf("insertion hunk = %+v", h)
	}
	if p.File("z.c") != nil {
		t.Error("File of an untouched path is not nil")
	}
}

func TestParseNoNewlineAtEOF(t *testing.T) {
	in := "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n"
	p, err := ParsePatch([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Line{{' ', "a\n"}, {'-', "b"}, {'+', "c"}}
	if diff := cmp.Diff(want, p.File("f.c").Hunks[0].Lines); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	got, err := Apply([]byte("a\nb"), p.File("f.c"))
	if err != nil || string(got) != "a\nc" {
		t.Errorf("Apply = %q, %v; want %q", got, err, "a\nc")
	}
	// "b" without a newline does not match "b\n".
	if _, err := Apply([]byte("a\nb\n"), p.File("f.c")); err == nil {
		t.Error("a no-newline line matched a line with a newline")
	}
}

// TestParseRefusals has one case per refusal, with the sentinel and the
// patch line the error must name.
func TestParseRefusals(t *testing.T) {
	hunk := "@@ -1 +1 @@\n-a\n+b\n"
	tests := []struct {
		name, in string
		want     error
		line     int
		text     string // a substring of the message
	}{
		{"git rename", "diff --git a/f.c b/g.c\nsimilarity index 90%\nrename from f.c\nrename to g.c\n", ErrRename, 2, "similarity index"},
		{"git copy", "diff --git a/f.c b/g.c\ncopy from f.c\ncopy to g.c\n", ErrRename, 2, "copy from"},
		{"plain rename", "--- a/f.c\n+++ b/g.c\n" + hunk, ErrRename, 1, "--- names f.c and +++ names g.c"},
		{"git binary", "diff --git a/f.bin b/f.bin\nindex 1..2 100644\nGIT binary patch\nliteral 3\n", ErrBinaryPatch, 3, "GIT binary patch"},
		{"binary files differ", "diff --git a/f.bin b/f.bin\nindex 1..2 100644\nBinary files a/f.bin and b/f.bin differ\n", ErrBinaryPatch, 3, "Binary files"},
		{"plain binary", "Binary files a/f.bin and b/f.bin differ\n", ErrBinaryPatch, 1, ""},
		{"git new file", "diff --git a/n.c b/n.c\nnew file mode 100644\nindex 0..1\n--- /dev/null\n+++ b/n.c\n@@ -0,0 +1 @@\n+x\n", ErrNewFile, 2, "n.c"},
		{"plain new file", "--- /dev/null\n+++ b/n.c\n@@ -0,0 +1 @@\n+x\n", ErrNewFile, 1, "/dev/null"},
		{"git deleted file", "diff --git a/d.c b/d.c\ndeleted file mode 100644\n--- a/d.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n", ErrDeletedFile, 2, ""},
		{"plain deleted file", "--- a/d.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n", ErrDeletedFile, 2, ""},
		{"mode change", "diff --git a/f.sh b/f.sh\nold mode 100644\nnew mode 100755\n", ErrModeChange, 2, "old mode"},
		{"dot dot", "--- a/../etc/passwd\n+++ b/../etc/passwd\n" + hunk, ErrUnsafePath, 1, "leaves the tree"},
		{"dot dot inside", "--- a/fs/../../x.c\n+++ b/fs/../../x.c\n" + hunk, ErrUnsafePath, 1, "leaves the tree"},
		{"absolute", "--- /etc/passwd\n+++ /etc/passwd\n" + hunk, ErrUnsafePath, 1, "absolute"},
		{"no prefix", "--- f.c\n+++ f.c\n" + hunk, ErrUnsafePath, 1, "prefix"},
		{"unclean", "--- a/fs//f.c\n+++ b/fs//f.c\n" + hunk, ErrUnsafePath, 1, "not clean"},
		{"quoted", "--- \"a/f g.c\"\n+++ \"b/f g.c\"\n" + hunk, ErrUnsafePath, 1, "quoted"},
		{"empty", "just some text\n", ErrEmptyPatch, 0, ""},
		{"hunk without header", hunk, ErrMalformedPatch, 1, "without a ---/+++"},
		{"no hunks", "--- a/f.c\n+++ b/f.c\n", ErrMalformedPatch, 1, "no hunks"},
		{"truncated hunk", "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n a\n-b\n", ErrMalformedPatch, 3, "ends early"},
		{"junk in hunk", "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n a\n-b\n+c\nxyz\n", ErrMalformedPatch, 7, "before \"xyz\""},
		{"bad header", "--- a/f.c\n+++ b/f.c\n@@ -x +1 @@\n-a\n+b\n", ErrMalformedPatch, 3, "bad line number"},
		{"no-op hunk", "--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n a\n", ErrMalformedPatch, 3, "changes nothing"},
		{"twice", "--- a/f.c\n+++ b/f.c\n" + hunk + "--- a/f.c\n+++ b/f.c\n@@ -5 +5 @@\n-a\n+b\n", ErrMalformedPatch, 6, "changed again"},
		{"overlap", "--- a/f.c\n+++ b/f.c\n@@ -5,2 +5,2 @@\n-a\n+b\n x\n@@ -4,2 +4,2 @@\n-a\n+b\n x\n", ErrMalformedPatch, 7, "overlaps"},
		{"too large", strings.Repeat("x", MaxPatchSize+1), ErrPatchTooLarge, 0, "limit"},
	}
	var many strings.Builder
	for i := 0; i <= MaxPatchFiles; i++ {
		fmt.Fprintf(&many, "--- a/f%d.c\n+++ b/f%d.c\n%s", i, i, hunk)
	}
	tests = append(tests, struct {
		name, in string
		want     error
		line     int
		text     string
	}{"too many files", many.String(), ErrPatchTooLarge, 5*MaxPatchFiles + 1, "more than"})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePatch([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParsePatch = %v, %v; want %v", p, err, tt.want)
			}
			var pe *PatchError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *PatchError", err)
			}
			if pe.Line != tt.line {
				t.Errorf("error names line %d, want %d: %v", pe.Line, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q lacks %q", err, tt.text)
			}
		})
	}
}

func TestParseTrimmedContextAndMissingFinalNewline(t *testing.T) {
	// A mailer trimmed the lone space of an empty context line, and the
	// file was saved without a final newline.
	in := "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n a\n\n-b\n+c"
	p, err := ParsePatch([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Apply([]byte("a\n\nb\n"), p.File("f.c"))
	if err != nil || string(got) != "a\n\nc\n" {
		t.Errorf("Apply = %q, %v", got, err)
	}
}

// numbered returns "l1\n" ... "ln\n".
func numbered(n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("l%d\n", i+1)
	}
	return lines
}

func mustParse(t *testing.T, s string) *Patch {
	t.Helper()
	p, err := ParsePatch([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApplyMultiHunk(t *testing.T) {
	src := strings.Join(numbered(20), "")
	p := mustParse(t, "--- a/f.c\n+++ b/f.c\n"+
		"@@ -2,3 +2,3 @@\n l2\n-l3\n+L3\n l4\n"+
		"@@ -10,2 +10,3 @@\n l10\n+new\n l11\n"+
		"@@ -19,2 +20,1 @@\n l19\n-l20\n")
	got, err := Apply([]byte(src), p.File("f.c"))
	if err != nil {
		t.Fatal(err)
	}
	want := numbered(20)
	want[2] = "L3\n"
	want = append(want[:10], append([]string{"new\n"}, want[10:19]...)...)
	if diff := cmp.Diff(strings.Join(want, ""), string(got)); diff != "" {
		t.Errorf("Apply (-want +got):\n%s", diff)
	}
}

func TestApplyOffsets(t *testing.T) {
	p := mustParse(t, "--- a/f.c\n+++ b/f.c\n"+
		"@@ -10,3 +10,3 @@\n l10\n-l11\n+L11\n l12\n"+
		"@@ -30,3 +30,3 @@\n l30\n-l31\n+L31\n l32\n")
	lines := numbered(40)
	for _, shift := range []int{-7, -1, 0, 1, 5, 300} {
		t.Run(fmt.Sprint(shift), func(t *testing.T) {
			var src []string
			if shift >= 0 {
				src = append(make([]string, 0), lines...)
				for i := 0; i < shift; i++ {
					src = append([]string{"extra\n"}, src...)
				}
			} else {
				src = append(make([]string, 0), lines[-shift:]...)
				// Keep what the hunks need: lines 10.. survive a shift of -7.
			}
			got, err := Apply([]byte(strings.Join(src, "")), p.File("f.c"))
			if err != nil {
				t.Fatal(err)
			}
			want := strings.NewReplacer("l11\n", "L11\n", "l31\n", "L31\n").Replace(strings.Join(src, ""))
			if string(got) != want {
				t.Errorf("Apply with offset %d:\n%s", shift, got)
			}
		})
	}
}

// TestApplySecondHunkFollowsFirst checks that a hunk is looked for
// where the hunks before it moved to, and never before the end of the
// hunk before it, even when that is the nearest match.
func TestApplySecondHunkFollowsFirst(t *testing.T) {
	// Hunk 1 belongs at line 2 but is at line 5 (offset 3); hunk 2's
	// context "x y" is at lines 1, 3 and 6: shifted by 3 it is line 6.
	p := mustParse(t, "--- a/f.c\n+++ b/f.c\n@@ -2 +2 @@\n-A\n+B\n@@ -3,2 +3,2 @@\n x\n-y\n+Y\n")
	got, err := Apply([]byte("x\ny\nx\ny\nA\nx\ny\n"), p.File("f.c"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "x\ny\nx\ny\nB\nx\nY\n"; string(got) != want {
		t.Errorf("Apply = %q, want %q", got, want)
	}

	// Hunk 2 belongs at line 4; "x y" at line 1 is nearer than at line
	// 8, but it is before hunk 1.
	p = mustParse(t, "--- a/f.c\n+++ b/f.c\n@@ -3 +3 @@\n-A\n+B\n@@ -4,2 +4,2 @@\n x\n-y\n+Y\n")
	got, err = Apply([]byte("x\ny\nA\nq\nq\nq\nq\nx\ny\n"), p.File("f.c"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "x\ny\nB\nq\nq\nq\nq\nx\nY\n"; string(got) != want {
		t.Errorf("Apply = %q, want %q", got, want)
	}
}

func TestApplyInsertion(t *testing.T) {
	p := mustParse(t, "--- a/f.c\n+++ b/f.c\n@@ -0,0 +1 @@\n+top\n@@ -2,0 +4 @@\n+mid\n")
	got, err := Apply([]byte("a\nb\nc\n"), p.File("f.c"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "top\na\nb\nmid\nc\n"; string(got) != want {
		t.Errorf("Apply = %q, want %q", got, want)
	}
}

func TestApplyFailures(t *testing.T) {
	p := mustParse(t, "--- a/fs/f.c\n+++ b/fs/f.c\n"+
		"@@ -2,3 +2,3 @@\n l2\n-l3\n+L3\n l4\n"+
		"@@ -10,3 +10,3 @@\n l10\n-l11\n+L11\n l12\n")
	fp := p.File("fs/f.c")
	lines := numbered(20)

	t.Run("context differs", func(t *testing.T) {
		src := append([]string(nil), lines...)
		src[10] = "changed\n"
		_, err := Apply([]byte(strings.Join(src, "")), fp)
		var ae *ApplyError
		if !errors.As(err, &ae) || ae.Path != "fs/f.c" || ae.Hunk != 2 || ae.Line != 10 {
			t.Fatalf("Apply = %v, want hunk 2 of fs/f.c", err)
		}
		for _, s := range []string{"fs/f.c", "hunk #2", `line 11 is "changed", the patch expects "l11"`} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q lacks %q", err, s)
			}
		}
	})
	t.Run("already applied", func(t *testing.T) {
		src := append([]string(nil), lines...)
		src[2], src[10] = "L3\n", "L11\n"
		_, err := Apply([]byte(strings.Join(src, "")), fp)
		if err == nil || !strings.Contains(err.Error(), "hunk #1") || !strings.Contains(err.Error(), "applied already") {
			t.Fatalf("Apply = %v, want hunk #1 applied already", err)
		}
	})
	t.Run("beyond the offset search", func(t *testing.T) {
		src := append(make([]string, MaxOffset+5), lines...)
		for i := range MaxOffset + 5 {
			src[i] = "pad\n"
		}
		_, err := Apply([]byte(strings.Join(src, "")), fp)
		if err == nil || !strings.Contains(err.Error(), "hunk #1") {
			t.Fatalf("Apply = %v, want hunk #1 not found", err)
		}
	})
	t.Run("short file", func(t *testing.T) {
		_, err := Apply([]byte("l1\nl2\n"), fp)
		if err == nil || !strings.Contains(err.Error(), "the file has 2 lines") {
			t.Fatalf("Apply = %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		_, err := Apply(make([]byte, MaxSourceSize+1), fp)
		if err == nil || !strings.Contains(err.Error(), "limit") {
			t.Fatalf("Apply = %v", err)
		}
	})
}
