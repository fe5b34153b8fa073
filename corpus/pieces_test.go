package corpus

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/ksrc"
)

// testdata/pieces.diff is the public corpus's change to
// include/net/dst.h and net/ipv4/icmp.c; testdata/old holds the two
// files as 6.1.187-1 has them. The icmp fixes call dst_dev and
// skb_dst_dev_net_rcu, which the update adds to dst.h in a hunk that also
// rewrites dst_dev_rcu: that hunk cannot be taken along whole (it would
// change what all of networking reads), but the new helpers can.
var piecesChanges = []Change{
	{Subject: "net: dst: add four helpers to annotate data-races around dst->dev"},
	{Subject: "ipv4: adopt dst_dev, skb_dst_dev and skb_dst_dev_net[_rcu]"},
	{Subject: "ipv4: icmp: reject RTN_UNREACHABLE input routes in icmp_route_lookup"},
}

func piecesUnits(t *testing.T) []Unit {
	t.Helper()
	return Group(readDiff(t, "testdata/pieces.diff"), piecesChanges, os.DirFS("testdata/old"))
}

// applyUnit applies u's patch to testdata/old and returns the new texts.
func applyUnit(t *testing.T, u *Unit) map[string]string {
	t.Helper()
	p, err := ksrc.ParsePatch(u.Patch)
	if err != nil {
		t.Fatalf("%s: %v\n%s", u.ID, err, u.Patch)
	}
	out := map[string]string{}
	for _, fp := range p.FilePatches() {
		old, err := os.ReadFile("testdata/old/" + fp.Path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ksrc.Apply(old, fp)
		if err != nil {
			t.Fatalf("%s: %v", u.ID, err)
		}
		out[fp.Path] = string(b)
	}
	return out
}

const dstDev = "static inline struct net_device *dst_dev(const struct dst_entry *dst)\n{\n\treturn READ_ONCE(dst->dev);\n}\n"

func TestGroupCopiesNewHelpersOutOfAHunk(t *testing.T) {
	units := piecesUnits(t)
	u := unitByID(units, "c0002")
	if u == nil {
		t.Fatalf("units %v: no unit of the icmp fix", ids(units))
	}
	want := TakenHunk{File: "include/net/dst.h", Hunk: "@@ -555,18 +558,41 @@", From: "c0000", For: []string{"dst_dev", "skb_dst_dev_net_rcu"}, Definitions: true}
	if len(u.Took) != 1 || !takenEqual(u.Took[0], want) {
		t.Fatalf("took %+v, want only %+v", u.Took, want)
	}
	got := applyUnit(t, u)
	old, err := os.ReadFile("testdata/old/include/net/dst.h")
	if err != nil {
		t.Fatal(err)
	}
	// The helpers go after the hunk's old lines, in the newer file's
	// order; the older dst_dev_rcu and struct dst_entry stay.
	oldLines := strings.SplitAfter(string(old), "\n")
	helpers := "\n" + dstDev + "\nstatic inline struct net *skb_dst_dev_net_rcu(const struct sk_buff *skb)\n{\n\treturn dev_net_rcu(skb_dst_dev_rcu(skb));\n}\n"
	if want := strings.Join(oldLines[:572], "") + helpers + strings.Join(oldLines[572:], ""); got["include/net/dst.h"] != want {
		t.Errorf("dst.h after the unit's patch is not the older file with the two helpers after line 572:\n%s", u.Patch)
	}
	if !strings.Contains(got["net/ipv4/icmp.c"], "return dst ? dst_dev(dst) : NULL;") {
		t.Errorf("the unit's own icmp.c hunks are not applied")
	}
}

// A unit widened with the unit of the hunk it copied from has that hunk,
// and not the copy as well.
func TestWidenDropsACopyOfAHunkItGets(t *testing.T) {
	u := unitByID(piecesUnits(t), "c0002")
	w, with := u.Widen([]string{"dst_dev"})
	if !slices.Equal(with, []string{"c0000"}) {
		t.Fatalf("Widen(dst_dev) with %v", with)
	}
	if n := strings.Count(string(w.Patch), "+static inline struct net_device *dst_dev(const"); n != 1 {
		t.Errorf("the widened patch defines dst_dev %d times, want once", n)
	}
	applyUnit(t, &w)
}

func takenEqual(a, b TakenHunk) bool {
	return a.File == b.File && a.Hunk == b.Hunk && a.From == b.From && slices.Equal(a.For, b.For) && a.Definitions == b.Definitions
}

// A piece is only a whole definition, put where the older file is at top
// level, before the file's next hunk.
func TestPieceRefuses(t *testing.T) {
	old := "int a(void)\n{\n\treturn 1;\n}\n\nint b(void)\n{\n\tint x = 2;\n\treturn x;\n}\n"
	whole := &Hunk{OldStart: 1, OldLines: 5, Lines: []string{
		"-int a(void)", "+int a2(void)", " {", " \treturn 1;", " }", "+", "+static int helper(void)", "+{", "+\treturn 3;", "+}", " ",
	}}
	if _, ok := piece(whole, old, 0, []string{"helper"}); !ok {
		t.Fatal("a whole new function after a hunk ending at top level: no piece")
	}
	cut := &Hunk{OldStart: 1, OldLines: 5, Lines: []string{
		"-int a(void)", "+int a2(void)", " {", " \treturn 1;", " }", "+", "+static int helper(void)", "+{", "+\treturn 3;",
	}}
	if _, ok := piece(cut, old, 0, []string{"helper"}); ok {
		t.Error("a definition the hunk cuts off made a piece")
	}
	inside := &Hunk{OldStart: 6, OldLines: 2, Lines: []string{
		"+#define HELPER 4", " int b(void)", " {",
	}}
	// The hunk ends inside b: the piece goes after b's end (old line 10),
	// unless the file's next hunk starts before that.
	if p, ok := piece(inside, old, 0, []string{"HELPER"}); !ok || p.OldStart != 10 {
		t.Errorf("a hunk ending inside a function: piece %+v, %v; want one after line 10", p, ok)
	}
	if _, ok := piece(inside, old, 9, []string{"HELPER"}); ok {
		t.Error("a piece was put past the next hunk")
	}
	if _, ok := piece(whole, old, 0, []string{"a2", "nothing"}); ok {
		t.Error("a name the hunk does not define made a piece")
	}
}

// nfs4client.c calls nfs_cb_idr_remove, which the update declares in
// internal.h (a hunk the unit takes whole) and defines in client.c, in a
// hunk that also changes nfs_cb_idr_remove_locked: the prototype alone
// would compile, but the module needs the definition, copied as a piece.
func TestGroupCopiesTheDefinitionBehindAPrototype(t *testing.T) {
	units := Group(readDiff(t, "testdata/widen.diff"), widenChanges, os.DirFS("testdata/old"))
	u := unitByID(units, "f:fs/nfs/nfs4client.c")
	if u == nil {
		t.Fatalf("units %v: no unit of nfs4client.c", ids(units))
	}
	want := []TakenHunk{
		{File: "fs/nfs/internal.h", Hunk: "@@ -213,6 +213,7 @@", From: "f:fs/nfs/internal.h", For: []string{"nfs_cb_idr_remove"}},
		{File: "fs/nfs/client.c", Hunk: "@@ -207,9 +207,21 @@", From: "f:fs/nfs/client.c", For: []string{"nfs_cb_idr_remove"}, Definitions: true},
	}
	if len(u.Took) != len(want) || !takenEqual(u.Took[0], want[0]) || !takenEqual(u.Took[1], want[1]) {
		t.Fatalf("took %+v, want %+v", u.Took, want)
	}
	got := applyUnit(t, u)
	c := got["fs/nfs/client.c"]
	if !strings.Contains(c, "void nfs_cb_idr_remove(struct nfs_client *clp)\n{") || strings.Contains(c, "EXPORT_SYMBOL_GPL(nfs_cb_idr_remove)") ||
		strings.Contains(c, "clp->cl_cb_ident = 0;") {
		t.Errorf("client.c should gain nfs_cb_idr_remove alone, not its export nor the change to nfs_cb_idr_remove_locked:\n%s", u.Patch)
	}
}
