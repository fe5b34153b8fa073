package corpus

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/splicefleet/splicefleet/ksrc"
)

// testdata/takealong.diff is an excerpt of the same tree diff as
// tree.diff: drivers/nvme/target/{auth.c,core.c,nvmet.h}, where the
// update adds nvmet_auth_sq_destroy (its definition in auth.c, its
// prototype and its stub in nvmet.h) and calls it in core.c, and
// drivers/mailbox/pcc.c.
func readTakeAlongDiff(t *testing.T) []FileDiff { return readDiff(t, "testdata/takealong.diff") }

// Subjects from Debian's changelog of 6.1.190-1.
var takeAlongChanges = []Change{
	{Subject: "mailbox: pcc: Use acpi_os_ioremap() instead of ioremap()"},
	{Subject: "mailbox: pcc: Always clear the platform ack interrupt first"},
	{Subject: "mailbox: pcc: Fix the possible race in updation of chan_in_use flag"},
	{Subject: "nvme: target: rdma: fix ndev refcount leak on queue connect"},
	{Subject: "nvmet-auth: Synchronize timeout work during SQ teardown", CVEs: []string{"CVE-2026-89970"}},
	{Subject: "nvmet: fix NULL pointer dereference in nvmet_execute_identify_ns_zns()"},
}

func hunkHeaders(patch []byte) []string {
	var out []string
	for _, l := range strings.Split(string(patch), "\n") {
		if strings.HasPrefix(l, "@@") {
			out = append(out, l)
		}
	}
	return out
}

// core.c calls nvmet_auth_sq_destroy, which the update declares in two
// hunks of nvmet.h no change claimed: the unit takes both along (the
// prototype and the stub for kernels without NVMe authentication), and
// the per-file unit of nvmet.h keeps them.
func TestGroupTakesDeclarationsAlong(t *testing.T) {
	units := Group(readTakeAlongDiff(t), takeAlongChanges, nil)
	u := unitByID(units, "c0003")
	if u == nil {
		t.Fatal("no unit for the nvme change")
	}
	want := []string{"drivers/nvme/target/auth.c", "drivers/nvme/target/core.c", "drivers/nvme/target/nvmet.h"}
	if !slices.Equal(u.Files, want) || u.Hunks != 4 {
		t.Errorf("files %v, %d hunks; want %v, 4 hunks", u.Files, u.Hunks, want)
	}
	if len(u.Took) != 2 {
		t.Fatalf("took %+v, want the two hunks of nvmet.h", u.Took)
	}
	for i, h := range []string{"@@ -709,6 +709,7 @@", "@@ -733,6 +734,7 @@"} {
		tk := u.Took[i]
		if tk.File != "drivers/nvme/target/nvmet.h" || tk.Hunk != h || tk.From != "f:drivers/nvme/target/nvmet.h" || !slices.Equal(tk.For, []string{"nvmet_auth_sq_destroy"}) {
			t.Errorf("took[%d] = %+v, want %s of nvmet.h for nvmet_auth_sq_destroy", i, tk, h)
		}
	}
	for _, l := range []string{"\n+void nvmet_auth_sq_destroy(struct nvmet_sq *sq);\n", "\n+static inline void nvmet_auth_sq_destroy(struct nvmet_sq *sq) {};\n"} {
		if !strings.Contains(string(u.Patch), l) {
			t.Errorf("the unit's patch lacks %q:\n%s", l, u.Patch)
		}
	}
	if _, err := ksrc.ParsePatch(u.Patch); err != nil {
		t.Errorf("the unit's patch does not read: %v\n%s", err, u.Patch)
	}
	// A copy: the hunks stay in the unit they were grouped into.
	if h := unitByID(units, "f:drivers/nvme/target/nvmet.h"); h == nil || h.Hunks != 2 || len(h.Took) != 0 {
		t.Errorf("nvmet.h unit = %+v, want its two hunks and nothing taken", h)
	}
}

// A unit whose added lines use only what the older tree has takes
// nothing. A hunk that only declares a local variable of a function
// (pcc_mbox_request_channel's new pcc_mchan, grouped with another pcc
// change) is taken by the unit whose hunk in that same function uses it
// (the acpi_os_ioremap change), and by no other.
func TestGroupTakesNothingUnneededOrFromABody(t *testing.T) {
	units := Group(readTakeAlongDiff(t), takeAlongChanges, nil)
	for _, u := range units {
		if u.ID != "c0003" && u.ID != "c0000" && len(u.Took) != 0 {
			t.Errorf("%s took %+v", u.ID, u.Took)
		}
	}
	u := unitByID(units, "c0000")
	if u == nil || !slices.Contains(hunkHeaders(u.Patch), "@@ -383,7 +384,14 @@ pcc_mbox_request_channel(struct mbox_cli") {
		t.Fatalf("acpi_os_ioremap unit = %+v", u)
	}
	if len(u.Took) != 1 || u.Took[0].Hunk != "@@ -365,6 +376,7 @@" || !slices.Equal(u.Took[0].For, []string{"pcc_mchan"}) {
		t.Errorf("took %+v, want the hunk declaring pcc_mchan", u.Took)
	}
	if !strings.Contains(string(u.Patch), "\n+\tstruct pcc_mbox_chan *pcc_mchan;\n") {
		t.Errorf("the unit's patch lacks the declaration:\n%s", u.Patch)
	}
	if _, err := ksrc.ParsePatch(u.Patch); err != nil {
		t.Errorf("the unit's patch does not read: %v\n%s", err, u.Patch)
	}
	for _, u := range Group(readTreeDiff(t), testChanges, nil) {
		if len(u.Took) != 0 {
			t.Errorf("%s took %+v", u.ID, u.Took)
		}
	}
}

// A hunk declaring a local variable is not taken for a hunk of another
// function that uses the same name, nor is one whose declaration runs
// code (an initializer).
func TestTakeAlongLocalOnlyInItsFunction(t *testing.T) {
	diff := `diff -rupN a/lib/x.c b/lib/x.c
--- a/lib/x.c
+++ b/lib/x.c
@@ -1,4 +1,5 @@
 void a(void)
 {
+	int count;
 	int other;
 }
@@ -10,4 +11,5 @@
 void b(void)
 {
+	int total = compute();
 	int other;
 }
@@ -20,3 +22,5 @@
 void c(void)
 {
+	count = 1;
+	total = 2;
 }
`
	files, err := ParseTreeDiff([]byte(diff))
	if err != nil {
		t.Fatal(err)
	}
	var d []hunkDecls
	for i := range files[0].Hunks {
		d = append(d, analyse("lib/x.c", &files[0].Hunks[i], ""))
	}
	if d[0].locals["count"] != "a" || d[1].locals != nil || !slices.Equal(d[2].fns, []string{"c"}) {
		t.Fatalf("locals %v, %v; fns of the third hunk %v: want count of a, nothing for an initializer, c", d[0].locals, d[1].locals, d[2].fns)
	}
	for _, u := range Group(files, nil, nil) {
		if len(u.Took) != 0 {
			t.Errorf("%s took %+v, want nothing: c's count is not a's", u.ID, u.Took)
		}
	}
}

// When the older version of a file the unit touches names the
// identifier already, the unit needs nothing from the update.
func TestGroupOldTreeHasIt(t *testing.T) {
	old := fstest.MapFS{"drivers/nvme/target/core.c": {Data: []byte("#include \"nvmet.h\"\n\nvoid f(struct nvmet_sq *sq)\n{\n\tnvmet_auth_sq_destroy(sq);\n}\n")}}
	u := unitByID(Group(readTakeAlongDiff(t), takeAlongChanges, old), "c0003")
	if u == nil || len(u.Took) != 0 || slices.Contains(u.Files, "drivers/nvme/target/nvmet.h") {
		t.Errorf("unit = %+v, want nothing taken", u)
	}
}

// synthetic builds a tree diff of files each with one hunk adding lines.
func synthetic(t *testing.T, files map[string][]string) []FileDiff {
	t.Helper()
	var b strings.Builder
	var names []string
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		add := files[name]
		fmt.Fprintf(&b, "diff -rupN a/%s b/%s\n--- a/%s\n+++ b/%s\n@@ -1,1 +1,%d @@\n #include <linux/types.h>\n", name, name, name, name, 1+len(add))
		for _, l := range add {
			fmt.Fprintf(&b, "+%s\n", l)
		}
	}
	out, err := ParseTreeDiff([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Two macros defined in terms of each other: the unit takes each hunk
// once and stops.
func TestTakeAlongCycle(t *testing.T) {
	files := synthetic(t, map[string][]string{
		"include/linux/a.h": {"#define A_ONE (B_ONE + 1)"},
		"include/linux/b.h": {"#define B_ONE (A_ONE - 1)"},
		"lib/x.c":           {"int x = A_ONE;"},
	})
	u := unitByID(Group(files, nil, nil), "f:lib/x.c")
	if u == nil || len(u.Took) != 2 || u.Took[0].File != "include/linux/a.h" || u.Took[1].File != "include/linux/b.h" {
		t.Fatalf("x.c unit = %+v, want a.h then b.h taken", u)
	}
	if !slices.Equal(u.Took[1].For, []string{"B_ONE"}) {
		t.Errorf("b.h taken for %v, want B_ONE", u.Took[1].For)
	}
}

// A unit takes at most MaxTaken hunks along.
func TestTakeAlongBound(t *testing.T) {
	files := map[string][]string{}
	var calls []string
	for i := range MaxTaken + 4 {
		files[fmt.Sprintf("include/linux/h%02d.h", i)] = []string{fmt.Sprintf("void helper%02d(void);", i)}
		calls = append(calls, fmt.Sprintf("\thelper%02d();", i))
	}
	files["lib/x.c"] = append(append([]string{"void x(void)", "{"}, calls...), "}")
	u := unitByID(Group(synthetic(t, files), nil, nil), "f:lib/x.c")
	if u == nil || len(u.Took) != MaxTaken || u.Hunks != 1+MaxTaken {
		t.Fatalf("x.c unit took %d hunks (%d in all), want %d", len(u.Took), u.Hunks, MaxTaken)
	}
}

// A hunk that declares what the unit needs but also changes the body of
// an existing function is not taken, nor a static helper of another .c
// file.
func TestTakeAlongSkipsBodyChanges(t *testing.T) {
	diff := `diff -rupN a/include/linux/m.h b/include/linux/m.h
--- a/include/linux/m.h
+++ b/include/linux/m.h
@@ -1,4 +1,6 @@
 static inline int m_old(void)
 {
+	m_count++;
 	return 0;
 }
+void m_new(void);
diff -rupN a/lib/n.c b/lib/n.c
--- a/lib/n.c
+++ b/lib/n.c
@@ -1,1 +1,6 @@
 #include <linux/types.h>
+
+static void n_helper(int v)
+{
+	n_total += v;
+}
diff -rupN a/lib/x.c b/lib/x.c
--- a/lib/x.c
+++ b/lib/x.c
@@ -40,3 +40,5 @@
 void x(void)
 {
+	m_new();
+	n_helper(1);
 }
`
	files, err := ParseTreeDiff([]byte(diff))
	if err != nil {
		t.Fatal(err)
	}
	if u := unitByID(Group(files, nil, nil), "f:lib/x.c"); u == nil || len(u.Took) != 0 {
		t.Errorf("x.c unit = %+v, want nothing taken: m.h changes m_old's body, n_helper is static to n.c", u)
	}
}

// A new static helper of the same file, in a hunk no change claimed, is
// taken along by the change that calls it.
func TestTakeAlongStaticHelper(t *testing.T) {
	diff := `diff -rupN a/lib/x.c b/lib/x.c
--- a/lib/x.c
+++ b/lib/x.c
@@ -1,1 +1,6 @@
 #include <linux/types.h>
+
+static void n_helper(int v)
+{
+	n_total += v;
+}
@@ -40,3 +45,4 @@ void x(void)
 void x(void)
 {
+	n_helper(1);
 }
`
	files, err := ParseTreeDiff([]byte(diff))
	if err != nil {
		t.Fatal(err)
	}
	units := Group(files, []Change{{Subject: "lib: fix x()"}}, nil)
	u := unitByID(units, "c0000")
	if u == nil || u.Hunks != 2 || len(u.Took) != 1 || u.Took[0].From != "f:lib/x.c" || !slices.Equal(u.Took[0].For, []string{"n_helper"}) {
		t.Fatalf("change unit = %+v, want the helper's hunk taken from f:lib/x.c", u)
	}
	if h := hunkHeaders(u.Patch); !slices.Equal(h, []string{"@@ -1,1 +1,6 @@", "@@ -40,3 +45,4 @@ void x(void)"}) {
		t.Errorf("patch hunks %q", h)
	}
}

// A member of a nested struct is named after its closing brace; the
// scanner declares it as it does any member.
func TestAnalyseNestedMember(t *testing.T) {
	diff := `diff -rupN a/include/net/devlink.h b/include/net/devlink.h
--- a/include/net/devlink.h
+++ b/include/net/devlink.h
@@ -1,5 +1,9 @@
 struct devlink_port {
 	unsigned int index;
-	void *type_dev;
+	union {
+		struct {
+			struct net_device *netdev;
+		} type_eth;
+	};
 	int rest;
 };
`
	files, err := ParseTreeDiff([]byte(diff))
	if err != nil {
		t.Fatal(err)
	}
	d := analyse("include/net/devlink.h", &files[0].Hunks[0], "")
	for _, name := range []string{"type_eth", "netdev"} {
		if d.names[name] != declMember {
			t.Errorf("names %v: want %s declared as a member", d.names, name)
		}
	}
}
