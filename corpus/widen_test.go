package corpus

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testdata/widen.diff is an excerpt of the public corpus's tree diff
// (linux-source-6.1 6.1.187-1 to 6.1.190-1): fs/lockd/svcsubs.c, where
// one fix renames nlm_close_files to nlm_file_release in one hunk and
// calls it in the next, and fs/nfs/{client.c,internal.h,nfs4client.c},
// where nfs4client.c calls nfs_cb_idr_remove, a function another hunk
// adds to client.c.
var widenChanges = []Change{
	// The subject names nlm_inspect_file, the second hunk's code: the
	// first hunk, which renames the helper, stays with its file.
	{Subject: "lockd: pin next file across nlm_inspect_file lock-drop", CVEs: []string{"CVE-2026-89485"}},
}

func widenUnits(t *testing.T) []Unit {
	t.Helper()
	return Group(readDiff(t, "testdata/widen.diff"), widenChanges, nil)
}

func TestMissingNames(t *testing.T) {
	for _, c := range []struct{ reason, want string }{
		{"exit 2: compile fs/lockd/svcsubs.c (after the patch): build failed: gcc-12 exited 1: b/fs/lockd/svcsubs.c:325:33: error: implicit declaration of function 'nlm_close_files'; did you mean 'nlm_unlock_files'? [-Werror=implicit-function-declaration]", "nlm_close_files"},
		{"b/net/ipv6/ip6_gre.c:1115:9: error: 'stats' undeclared (first use in this function); did you mean 'statx'?", "stats"},
		{"b/net/devlink/leftover.c:1288:57: error: 'struct devlink_port' has no member named 'type_eth'", "type_eth"},
		{"error: unknown type name ‘nlm_fn_t’", "nlm_fn_t"},
		{`klpgen: generate: function nfs4_alloc_client: symbol "nfs_cb_idr_remove" is neither a symbol of module nfsv4, nor exported by vmlinux`, "nfs_cb_idr_remove"},
		{"b/drivers/infiniband/core/nldev.c:432:24: error: too many arguments to function 'rdma_restrack_count'", "rdma_restrack_count"},
		{"b/net/ipv4/tcp_minisocks.c:782:17: error: too many arguments to function 'inet_csk((const struct sock *)sk)->icsk_af_ops->syn_recv_sock'", "syn_recv_sock"},
		{"b/net/dccp/ipv4.c:407:14: error: conflicting types for 'dccp_v4_request_recv_sock'; have 'struct sock *(const struct sock *, struct sk_buff *)'", "dccp_v4_request_recv_sock"},
		{"b/net/ipv4/inet_connection_sock.c:1255:6: error: redefinition of 'inet_csk_prepare_for_destroy_sock'", "inet_csk_prepare_for_destroy_sock"},
		{"include/net/dst.h: header included by too many units", ""},
	} {
		if got := strings.Join(MissingNames(c.reason), ","); got != c.want {
			t.Errorf("MissingNames(%.60q…) = %q, want %q", c.reason, got, c.want)
		}
	}
}

// The hunk that renames a helper went to its file's unit, the hunk that
// calls it under the new name to the fix: neither builds alone, and each
// widens to the other, one patch of both hunks.
func TestWidenJoinsTheRestOfTheFix(t *testing.T) {
	units := widenUnits(t)
	fix, rest := unitByID(units, "c0000"), unitByID(units, "f:fs/lockd/svcsubs.c")
	if fix == nil || rest == nil || fix.Hunks != 1 || rest.Hunks != 1 {
		t.Fatalf("units %v: want the fix and its file's rest, one hunk each", ids(units))
	}
	w, with := rest.Widen([]string{"nlm_close_files"})
	if !slices.Equal(with, []string{"c0000"}) || !slices.Equal(w.With, with) {
		t.Fatalf("Widen(nlm_close_files) with %v (unit says %v), want c0000", with, w.With)
	}
	if w.ID != rest.ID || w.Hunks != 2 || !slices.Equal(w.Files, []string{"fs/lockd/svcsubs.c"}) {
		t.Errorf("widened unit %s: %d hunks of %v, want its own id and both hunks of svcsubs.c", w.ID, w.Hunks, w.Files)
	}
	if got := hunkHeaders(w.Patch); len(got) != 2 || !strings.HasPrefix(got[0], "@@ -286,12 +286,10 @@") || !strings.HasPrefix(got[1], "@@ -301,32 +299,41 @@") {
		t.Errorf("widened patch's hunks %q, want both, the second's new side shifted", got)
	}
	if _, with := fix.Widen([]string{"nlm_file_release"}); !slices.Equal(with, []string{"f:fs/lockd/svcsubs.c"}) {
		t.Errorf("the fix widened for nlm_file_release with %v, want its file's rest", with)
	}
}

// A function another file's hunk defines brings that hunk's unit; a name
// no hunk declares or names brings nothing, and a unit read from a patch
// file cannot widen.
func TestWidenFindsTheDefinition(t *testing.T) {
	units := widenUnits(t)
	caller := unitByID(units, "f:fs/nfs/nfs4client.c")
	if caller == nil {
		t.Fatalf("units %v: no unit of nfs4client.c", ids(units))
	}
	w, with := caller.Widen([]string{"nfs_cb_idr_remove"})
	if !slices.Equal(with, []string{"f:fs/nfs/client.c"}) {
		t.Fatalf("Widen(nfs_cb_idr_remove) with %v, want the unit of client.c", with)
	}
	if !slices.Equal(w.Files, []string{"fs/nfs/client.c", "fs/nfs/internal.h", "fs/nfs/nfs4client.c"}) {
		t.Errorf("widened files %v", w.Files)
	}
	if _, with := caller.Widen([]string{"no_such_helper"}); with != nil {
		t.Errorf("Widen(no_such_helper) with %v, want none", with)
	}
	if _, with := (Unit{ID: "x.patch", Patch: caller.Patch}).Widen([]string{"nfs_cb_idr_remove"}); with != nil {
		t.Errorf("a unit from a patch file widened with %v", with)
	}
	// A second round does not bring what the first already did.
	if _, again := w.Widen([]string{"nfs_cb_idr_remove"}); again != nil {
		t.Errorf("a second round for the same name brought %v", again)
	}
}

// Run measures a unit that does not build alone again, together with
// what it lacks, and records that.
func TestRunWidens(t *testing.T) {
	units := widenUnits(t)
	built := Built{"fs/lockd/svcsubs.c": {"lockd"}}
	results := filepath.Join(t.TempDir(), "results.jsonl")
	var patches []string
	check := func(_ context.Context, u Unit, r *Record) error {
		patches = append(patches, string(u.Patch))
		r.CreateSeconds = 2
		if !strings.Contains(string(u.Patch), "nlm_file_release(file);\n") || !strings.Contains(string(u.Patch), "+static void nlm_file_release") {
			r.Outcome, r.Reason = Refused, "exit 2: compile fs/lockd/svcsubs.c (after the patch): build failed: gcc-12 exited 1: b/fs/lockd/svcsubs.c:325:33: error: implicit declaration of function 'nlm_close_files'"
			return nil
		}
		r.Outcome = Passed
		return nil
	}
	var only []Unit
	for _, u := range units {
		if u.ID == "f:fs/lockd/svcsubs.c" {
			only = append(only, u)
		}
	}
	s, err := Run(context.Background(), only, built, results, "6.1.0-53-cloud-amd64", check, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ReadResults(results)
	if err != nil {
		t.Fatal(err)
	}
	r := recs["f:fs/lockd/svcsubs.c"]
	if len(patches) != 2 || r.Outcome != Passed || !slices.Equal(r.With, []string{"c0000"}) || r.CreateSeconds != 4 {
		t.Errorf("%d checks; record %+v: want passed with c0000 on the second check, 4 s of create", len(patches), r)
	}
	if s.Passed != 1 || s.Together != 1 {
		t.Errorf("summary %+v: want 1 passed, together with another change", s)
	}
}

func ids(units []Unit) []string {
	var out []string
	for _, u := range units {
		out = append(out, u.ID)
	}
	return out
}

// testdata/users.diff is the public corpus's change to
// drivers/infiniband/hw/mlx4: qp.c adds mlx4_ib_qp_event_init, which sets
// up the workqueue its new event code queues on, and main.c calls it from
// the module's init. No changelog subject claims the hunks: qp.c and
// main.c are units of their own, and qp.c's bundle would carry an event
// path whose workqueue nothing creates.
func TestWidenUsersBringsTheCaller(t *testing.T) {
	units := Group(readDiff(t, "testdata/users.diff"), nil, nil)
	qp := unitByID(units, "f:drivers/infiniband/hw/mlx4/qp.c")
	if qp == nil {
		t.Fatalf("units %v: no unit of qp.c", ids(units))
	}
	w, with := qp.WidenUsers([]string{"mlx4_ib_qp_event_init"})
	if !slices.Equal(with, []string{"f:drivers/infiniband/hw/mlx4/main.c"}) {
		t.Fatalf("WidenUsers(mlx4_ib_qp_event_init) with %v, want main.c's unit", with)
	}
	if !strings.Contains(string(w.Patch), "+	err = mlx4_ib_qp_event_init();") {
		t.Errorf("the widened patch lacks the call in mlx4_ib_init")
	}
	// The header that declares it does not count as a user.
	if _, with := qp.WidenUsers([]string{"no_such_function"}); with != nil {
		t.Errorf("WidenUsers(no_such_function) with %v", with)
	}
}

func TestUnreachedNames(t *testing.T) {
	out := "splicefleet: warning: function mlx4_ib_qp_event_init of mlx4_ib is added by the patch, but nothing the bundle carries calls it or takes its address: what uses it is not in the patch (init code, or another change)\n" +
		"splicefleet: warning: function helper.part.0 of vmlinux is added by the patch, but nothing the bundle carries calls it or takes its address: what uses it is not in the patch (init code, or another change)\n" +
		"splicefleet: wrote x.splice\n"
	if got := UnreachedNames(out); !slices.Equal(got, []string{"mlx4_ib_qp_event_init", "helper"}) {
		t.Errorf("UnreachedNames = %v", got)
	}
}

// Run measures a unit whose bundle adds a function nothing calls again
// together with the unit that calls it, and records that outcome.
func TestRunWidensForUnreached(t *testing.T) {
	units := Group(readDiff(t, "testdata/users.diff"), nil, nil)
	qp := *unitByID(units, "f:drivers/infiniband/hw/mlx4/qp.c")
	built := Built{"drivers/infiniband/hw/mlx4/qp.c": {"mlx4_ib"}, "drivers/infiniband/hw/mlx4/main.c": {"mlx4_ib"}}
	results := filepath.Join(t.TempDir(), "results.jsonl")
	checks := 0
	check := func(_ context.Context, u Unit, r *Record) error {
		checks++
		if strings.Contains(string(u.Patch), "mlx4_ib_qp_event_init();") {
			r.Outcome, r.Reason = Refused, "c: the patch cannot be carried by a livepatch: objdiff: x cannot be livepatched safely: init init_module: init code changed"
			return nil
		}
		r.Outcome, r.Unreached = Passed, []string{"mlx4_ib_qp_event_init"}
		return nil
	}
	s, err := Run(context.Background(), []Unit{qp}, built, results, "6.1.0-53-cloud-amd64", check, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ReadResults(results)
	if err != nil {
		t.Fatal(err)
	}
	r := recs[qp.ID]
	if checks != 2 || r.Outcome != Refused || !slices.Equal(r.With, []string{"f:drivers/infiniband/hw/mlx4/main.c"}) || s.Passed != 0 {
		t.Errorf("%d checks; record %+v: want refused together with main.c's unit, on the second check", checks, r)
	}
}

// A definition that clashes with what a header of another change drops
// or changes: no hunk defines the name and none of the unit's own files
// names it, so the unit widens to the header's hunk that does.
func TestWidenFindsAnotherFilesHunk(t *testing.T) {
	diff := `diff -rupN a/include/net/sock.h b/include/net/sock.h
--- a/include/net/sock.h
+++ b/include/net/sock.h
@@ -1,5 +1,2 @@
 #include <linux/types.h>
-static inline void sock_prepare(struct sock *sk)
-{
-}
 int sock_other(void);
diff -rupN a/net/core/sock.c b/net/core/sock.c
--- a/net/core/sock.c
+++ b/net/core/sock.c
@@ -1,2 +1,5 @@
 #include <net/sock.h>
+void sock_prepare(struct sock *sk)
+{
+}
 int sock_other(void) { return 0; }
`
	files, err := ParseTreeDiff([]byte(diff))
	if err != nil {
		t.Fatal(err)
	}
	units := Group(files, nil, nil)
	u := unitByID(units, "f:net/core/sock.c")
	if u == nil {
		t.Fatalf("units %v: want one for sock.c", ids(units))
	}
	w, with := u.Widen(MissingNames("b/net/core/sock.c:2:6: error: redefinition of 'sock_prepare'"))
	if !slices.Equal(with, []string{"f:include/net/sock.h"}) || !slices.Equal(w.Files, []string{"include/net/sock.h", "net/core/sock.c"}) {
		t.Errorf("widened with %v, files %v: want the header's unit and both files", with, w.Files)
	}
}

// A callback whose parameters another change alters: the member's name
// is on the line before the changed ones, and the unit calling it with
// the new arguments widens to that header's change.
func TestWidenFindsAChangedCallback(t *testing.T) {
	diff := `diff -rupN a/include/net/conn.h b/include/net/conn.h
--- a/include/net/conn.h
+++ b/include/net/conn.h
@@ -1,5 +1,6 @@
 struct conn_ops {
 	struct sock *(*syn_recv_sock)(const struct sock *sk,
-				      struct sk_buff *skb);
+				      struct sk_buff *skb,
+				      bool *own_req);
 	int other;
 };
diff -rupN a/net/ipv4/mini.c b/net/ipv4/mini.c
--- a/net/ipv4/mini.c
+++ b/net/ipv4/mini.c
@@ -1,3 +1,3 @@
 #include <net/conn.h>
-struct sock *f(struct conn_ops *o, struct sock *sk, struct sk_buff *skb) { return o->syn_recv_sock(sk, skb); }
+struct sock *f(struct conn_ops *o, struct sock *sk, struct sk_buff *skb, bool *own) { return o->syn_recv_sock(sk, skb, own); }
 int g(void) { return 0; }
`
	files, err := ParseTreeDiff([]byte(diff))
	if err != nil {
		t.Fatal(err)
	}
	u := unitByID(Group(files, nil, nil), "f:net/ipv4/mini.c")
	if u == nil {
		t.Fatal("no unit for mini.c")
	}
	names := MissingNames("b/net/ipv4/mini.c:2:92: error: too many arguments to function 'o->syn_recv_sock'")
	if _, with := u.Widen(names); !slices.Equal(with, []string{"f:include/net/conn.h"}) {
		t.Errorf("widened with %v, want the header's unit", with)
	}
}
