package corpus

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/ksrc"
)

// testdata/tree.diff is an excerpt of `diff -rupN` between the trees of
// linux-source-6.1 6.1.187-1 and 6.1.190-1: the top Makefile,
// fs/nfsd/nfs4state.c (eleven hunks of several fixes), lib/ucs2_string.c
// and a new header.
func readTreeDiff(t *testing.T) []FileDiff { return readDiff(t, "testdata/tree.diff") }

// readDiff parses an excerpt of a tree diff kept under testdata.
func readDiff(t *testing.T, name string) []FileDiff {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	files, err := ParseTreeDiff(b)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestParseTreeDiff(t *testing.T) {
	files := readTreeDiff(t)
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	want := []string{"Makefile", "fs/nfsd/nfs4state.c", "lib/ucs2_string.c", "arch/powerpc/include/asm/papr-watchdog.h"}
	if !slices.Equal(paths, want) {
		t.Fatalf("paths = %v, want %v", paths, want)
	}
	nfsd := files[1]
	if len(nfsd.Hunks) != 11 || nfsd.New || nfsd.Deleted {
		t.Errorf("nfs4state.c: %d hunks, new %v, deleted %v; want 11 changed hunks", len(nfsd.Hunks), nfsd.New, nfsd.Deleted)
	}
	h := nfsd.Hunks[9]
	if h.OldStart != 7112 || h.OldLines != 6 || h.NewStart != 7207 || h.NewLines != 10 || h.Func != "nfsd4_delegreturn" {
		t.Errorf("hunk 10 = %+v", h)
	}
	if len(h.Lines) != 10 || len(h.Changed()) != 4 {
		t.Errorf("hunk 10 has %d lines, %d changed; want 10 and 4", len(h.Lines), len(h.Changed()))
	}
	if u := files[2].Hunks[0]; u.Func != "ucs2_strnlen" {
		t.Errorf("ucs2 hunk function = %q", u.Func)
	}
	if !files[3].New || files[3].Hunks[0].NewLines != 64 {
		t.Errorf("the new header is not read as new: %+v", files[3])
	}
}

func TestParseTreeDiffRefusals(t *testing.T) {
	b, err := os.ReadFile("testdata/tree.diff")
	if err != nil {
		t.Fatal(err)
	}
	cut := b[:bytes.Index(b, []byte("diff -rupN a/lib/ucs2_string.c"))-40]
	for name, in := range map[string][]byte{
		"cut short":     cut,
		"only in":       []byte("Only in b/fs: newfile.c\n"),
		"bad header":    []byte("diff -rupN a/x.c b/x.c\n--- a/x.c\n+++ b/x.c\n@@ -a +b @@\n"),
		"hunk outside":  []byte("@@ -1 +1 @@\n-a\n+b\n"),
		"overlong hunk": []byte("diff -rupN a/x.c b/x.c\n--- a/x.c\n+++ b/x.c\n@@ -1,1 +1,1 @@\n-a\n-b\n+c\n"),
	} {
		if _, err := ParseTreeDiff(in); !errors.Is(err, ErrDiff) {
			t.Errorf("%s: err = %v, want ErrDiff", name, err)
		}
	}
}

// Subjects from Debian's changelog of 6.1.190-1.
var testChanges = []Change{
	{Subject: "ALSA: aloop: Fix racy access at PCM trigger", CVEs: []string{"CVE-2026-23191"}},
	{Subject: "lib/ucs2_string.c: fix out-of-bounds read in ucs2_strnlen()", CVEs: []string{"CVE-2026-89726"}},
	{Subject: "NFSD: restart ssc_expire_umount walk after dropping nfsd_ssc_lock", CVEs: []string{"CVE-2026-89712"}},
	{Subject: "nfsd: add filehandle match check to nfsd4_delegreturn()"},
	{Subject: "nfsd: fix cpntf publish race in nfs4_init_cp_state", CVEs: []string{"CVE-2026-89684"}},
	{Subject: "nfsd: reject reclaim LOCK after RECLAIM_COMPLETE"},
	{Subject: "NFSD: Prevent lock owner use-after-free during client teardown"},
}

func unitByID(units []Unit, id string) *Unit {
	for i := range units {
		if units[i].ID == id {
			return &units[i]
		}
	}
	return nil
}

func TestGroup(t *testing.T) {
	files := readTreeDiff(t)
	units := Group(files, testChanges, nil)
	total, got := 0, 0
	for _, f := range files {
		total += len(f.Hunks)
	}
	for _, u := range units {
		got += u.Hunks
	}
	if got != total {
		t.Errorf("units hold %d hunks, the diff has %d: every hunk belongs to exactly one unit", got, total)
	}
	if u := unitByID(units, "c0000"); u != nil {
		t.Errorf("the ALSA change, which touches none of these files, got a unit: %+v", u)
	}
	ucs := unitByID(units, "c0001")
	if ucs == nil || !slices.Equal(ucs.Files, []string{"lib/ucs2_string.c"}) || ucs.Hunks != 1 || !slices.Equal(ucs.CVEs, []string{"CVE-2026-89726"}) {
		t.Fatalf("ucs2 unit = %+v", ucs)
	}
	if !strings.Contains(string(ucs.Patch), "--- a/lib/ucs2_string.c\n+++ b/lib/ucs2_string.c\n@@ -8,7 +8,7 @@ ucs2_strnlen(") {
		t.Errorf("ucs2 patch:\n%s", ucs.Patch)
	}
	// The function named by the subject is the hunk's function.
	dr := unitByID(units, "c0003")
	if dr == nil || !strings.Contains(string(dr.Patch), "@@ -7112,6 +7112,10 @@ nfsd4_delegreturn(") {
		t.Errorf("delegreturn unit = %+v", dr)
	}
	cp := unitByID(units, "c0004")
	if cp == nil || !strings.Contains(string(cp.Patch), "static int nfs4_init_cp_state(") {
		t.Errorf("nfs4_init_cp_state unit = %+v", cp)
	}
	// Hunks no subject names better than the others stay with their
	// file; the version bump of the Makefile and the new header too.
	for _, id := range []string{"f:fs/nfsd/nfs4state.c", "f:Makefile", "f:arch/powerpc/include/asm/papr-watchdog.h"} {
		if unitByID(units, id) == nil {
			t.Errorf("no file unit %s", id)
		}
	}
	if u := unitByID(units, "f:arch/powerpc/include/asm/papr-watchdog.h"); u != nil && !strings.HasPrefix(string(u.Patch), "--- /dev/null\n+++ b/arch/powerpc/include/asm/papr-watchdog.h\n@@ -0,0 +1,64 @@") {
		t.Errorf("new file patch starts:\n%.120s", u.Patch)
	}
	// Every unit is a patch create --patch reads; a new file is refused
	// as such.
	for _, u := range units {
		_, err := ksrc.ParsePatch(u.Patch)
		switch {
		case u.ID == "f:arch/powerpc/include/asm/papr-watchdog.h":
			if !errors.Is(err, ksrc.ErrNewFile) {
				t.Errorf("%s: ParsePatch = %v, want ErrNewFile", u.ID, err)
			}
		case err != nil:
			t.Errorf("%s: %v\n%s", u.ID, err, u.Patch)
		}
	}
}

// A unit carrying some of a file's hunks has its new-side line numbers
// recomputed from the hunks it carries, so it applies by itself.
func TestWritePatchRenumbers(t *testing.T) {
	f := FileDiff{Path: "x.c", Hunks: []Hunk{
		{OldStart: 10, OldLines: 3, NewStart: 10, NewLines: 5, Lines: []string{" a", "+b", "+c", " d", " e"}},
		{OldStart: 50, OldLines: 3, NewStart: 52, NewLines: 3, Lines: []string{" a", "-b", "+c", " d"}},
		{OldStart: 90, OldLines: 2, NewStart: 92, NewLines: 4, Context: "int f(void)", Lines: []string{" a", "+b", "+c", " d"}},
	}}
	for _, c := range []struct {
		idx  []int
		want []string
	}{
		{[]int{0, 1, 2}, []string{"@@ -10,3 +10,5 @@", "@@ -50,3 +52,3 @@", "@@ -90,2 +92,4 @@ int f(void)"}},
		{[]int{2}, []string{"@@ -90,2 +90,4 @@ int f(void)"}},
		{[]int{0, 2}, []string{"@@ -10,3 +10,5 @@", "@@ -90,2 +92,4 @@ int f(void)"}},
		{[]int{1, 2}, []string{"@@ -50,3 +50,3 @@", "@@ -90,2 +90,4 @@ int f(void)"}},
	} {
		var b bytes.Buffer
		f.writePatch(&b, c.idx)
		var headers []string
		for _, l := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(l, "@@") {
				headers = append(headers, l)
			}
		}
		if !slices.Equal(headers, c.want) {
			t.Errorf("hunks %v: headers %q, want %q", c.idx, headers, c.want)
		}
	}
}
