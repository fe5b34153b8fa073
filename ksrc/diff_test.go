package ksrc

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// roundTrip checks that the diff of old and new parses and applies to old
// giving new exactly.
func roundTrip(t testing.TB, old, new []byte) []byte {
	t.Helper()
	d := UnifiedDiff("fs/x.c", old, new)
	if bytes.Equal(old, new) {
		if len(d) != 0 {
			t.Fatalf("a diff of equal files: %q", d)
		}
		return d
	}
	p, err := ParsePatch(d)
	if err != nil {
		t.Fatalf("the diff does not parse: %v\n%s", err, d)
	}
	got, err := Apply(old, p.File("fs/x.c"))
	if err != nil {
		t.Fatalf("the diff does not apply: %v\n%s", err, d)
	}
	if !bytes.Equal(got, new) {
		t.Fatalf("applied, it gives\n%q\nwant\n%q\ndiff:\n%s", got, new, d)
	}
	return d
}

func lines(n int, f func(i int) string) []byte {
	var b strings.Builder
	for i := range n {
		b.WriteString(f(i))
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// TestUnifiedDiffMatchesGNUDiff: on changes with one shortest edit, the
// diff is the one GNU diff -u writes, byte for byte.
func TestUnifiedDiffMatchesGNUDiff(t *testing.T) {
	base := lines(40, func(i int) string { return fmt.Sprintf("line %d", i) })
	cases := map[string][]byte{
		"one changed line":    bytes.Replace(base, []byte("line 20\n"), []byte("line twenty\n"), 1),
		"lines added at top":  append([]byte("new a\nnew b\n"), base...),
		"line removed at end": bytes.TrimSuffix(base, []byte("line 39\n")),
		"two far changes": bytes.Replace(bytes.Replace(base, []byte("line 3\n"), []byte("three\n"), 1),
			[]byte("line 33\n"), []byte("thirty-three\n"), 1),
		"two near changes (one hunk)": bytes.Replace(bytes.Replace(base, []byte("line 10\n"), []byte("ten\n"), 1),
			[]byte("line 15\n"), []byte("fifteen\n"), 1),
		"no newline at end":   bytes.TrimSuffix(base, []byte("\n")),
		"everything replaced": lines(5, func(i int) string { return fmt.Sprintf("other %d", i) }),
	}
	dir := t.TempDir()
	oldFile := filepath.Join(dir, "old")
	if err := os.WriteFile(oldFile, base, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, changed := range cases {
		t.Run(name, func(t *testing.T) {
			newFile := filepath.Join(dir, "new")
			if err := os.WriteFile(newFile, changed, 0o644); err != nil {
				t.Fatal(err)
			}
			want, err := exec.Command("diff", "-u", "--label", "a/fs/x.c", "--label", "b/fs/x.c", oldFile, newFile).Output()
			// diff exits 1 when the files differ.
			if exit := (*exec.ExitError)(nil); err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 1) {
				t.Fatalf("diff -u: %v", err)
			}
			got := roundTrip(t, base, changed)
			if !bytes.Equal(got, want) {
				t.Errorf("got\n%s\nGNU diff -u writes\n%s", got, want)
			}
		})
	}
}

// FuzzUnifiedDiff: random line edits of a file; the diff applied to the
// original gives the changed file.
func FuzzUnifiedDiff(f *testing.F) {
	f.Add(uint64(1), uint8(5))
	f.Add(uint64(7), uint8(40))
	f.Fuzz(func(t *testing.T, seed uint64, edits uint8) {
		r := rand.New(rand.NewPCG(seed, seed>>1))
		old := strings.Split(string(lines(int(r.IntN(60)), func(i int) string { return fmt.Sprintf("l%d", r.IntN(8)) })), "\n")
		cur := append([]string(nil), old...)
		for range int(edits) % 20 {
			switch i := r.IntN(len(cur) + 1); r.IntN(3) {
			case 0:
				cur = append(cur[:i], append([]string{fmt.Sprintf("n%d", r.IntN(4))}, cur[i:]...)...)
			case 1:
				if i < len(cur) {
					cur = append(cur[:i], cur[i+1:]...)
				}
			case 2:
				if i < len(cur) {
					cur[i] = fmt.Sprintf("c%d", r.IntN(4))
				}
			}
		}
		roundTrip(t, []byte(strings.Join(old, "\n")), []byte(strings.Join(cur, "\n")))
	})
}

func TestDiffExt(t *testing.T) {
	tree := testutil.TempTree(t, map[string]string{
		"fs/proc/cmdline.c":     "a\nb\nc\n",
		"fs/proc/cmdline.c.new": "a\nB\nc\n",
		"net/core/sock.c":       "x\n",
		"net/core/sock.c.new":   "x\n", // unchanged: left out
		"kernel/fork.c":         "f\n",
	})
	for _, ext := range []string{"new", ".new"} {
		d, files, err := DiffExt(tree, ext)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(files, ",") != "fs/proc/cmdline.c" {
			t.Errorf("files %v", files)
		}
		p, err := ParsePatch(d)
		if err != nil {
			t.Fatalf("%v\n%s", err, d)
		}
		got, err := Apply([]byte("a\nb\nc\n"), p.File("fs/proc/cmdline.c"))
		if err != nil || string(got) != "a\nB\nc\n" {
			t.Errorf("applied: %q %v", got, err)
		}
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		ext   string
		want  string
	}{
		{"empty ext", map[string]string{"a.c": "x\n"}, "", "want a file name suffix"},
		{"slash in ext", map[string]string{"a.c": "x\n"}, "n/ew", "want a file name suffix"},
		{"nothing changed", map[string]string{"a.c": "x\n"}, "new", "no changed files"},
		{"only the same", map[string]string{"a.c": "x\n", "a.c.new": "x\n"}, "new", "is the same as its FILE"},
		{"no original", map[string]string{"b.c.new": "x\n"}, "new", "has no original b.c beside it"},
		{"binary", map[string]string{"a.c": "x\x00\n", "a.c.new": "y\n"}, "new", "a.c is a binary file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DiffExt(testutil.TempTree(t, tc.files), tc.ext)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DiffExt = %v, want %q", err, tc.want)
			}
		})
	}
}
