package corpus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSummaryLine(t *testing.T) {
	var s Summary
	for _, r := range []Record{
		{ID: "a", Outcome: NotBuilt},
		{ID: "b", Outcome: Refused, Reason: "x.c is built into module nfsd; create --patch patches vmlinux only for now"},
		{ID: "c", Outcome: Failed, Reason: "new taint 0x200"},
		{ID: "d", Outcome: Passed},
	} {
		s.Add(r)
	}
	const want = "corpus: 3 units built for this configuration, 2 bundles created, 1 passed the guest check (33.3%)"
	if got := s.Line(); got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
	if s.Units != 4 || s.Reasons["refused: module code (vmlinux only for now)"] != 1 || s.Reasons["failed: new taint 0x200"] != 1 {
		t.Errorf("summary = %+v", s)
	}
	if got := (Summary{}).Line(); got != "corpus: 0 units built for this configuration, 0 bundles created, 0 passed the guest check (0.0%)" {
		t.Errorf("empty Line() = %q", got)
	}
}

func TestReasonClass(t *testing.T) {
	for reason, want := range map[string]string{
		"/tmp/unit.patch: the patch cannot be carried by a livepatch: objdiff: a before -> a after cannot be livepatched safely: section __bug_table: contents differ; inlined ERR_PTR: x":                     "section __bug_table",
		"/tmp/unit.patch: the patch cannot be carried by a livepatch: objdiff: a before -> a after cannot be livepatched safely: inlined ERR_PTR: inline function changed":                                     "inlined",
		"fs/nfsd/nfs4state.c is built into module nfsd; create --patch patches vmlinux only for now":                                                                                                           "module code (vmlinux only for now)",
		"the patch touches 2 files (a.c, b.c); create --patch takes a patch to one .c file for now":                                                                                                            "several files",
		`/tmp/unit.patch: fs/x/y.c: klpgen: generate: function y_fill: symbol "z_thing" is exported by module zmod, which the patched module ymod cannot reach: zmod is not among the modules ymod depends on`: "another module's export, out of reach",
		"compile: unsupported file in patch: include/x.h: a header change means every file that includes it may change, which is not supported yet; move it":                                                   "header change",
		"f:kernel/trace/trace_event_perf.c: kernel/trace/trace_event_perf.c: perf_ftrace_event_register cannot be redirected, and kernel/trace/trace_export.c reaches it other than by a call from a function the bundle replaces (event_class_ftrace_function refers to it from .ref.data: its address is taken): carried as a new function beside the kernel's copy, that code would keep running the kernel's copy, without the change": "a function livepatch cannot redirect, reached by code the bundle cannot replace",
		"u: lib/string.c: memchr cannot be redirected, so every function that calls it must be replaced: compile callers: too many units may call a function that cannot be redirected: 3000 units":                                                                                                                                                                                                                                        "a function livepatch cannot redirect, reached by code the bundle cannot replace",
	} {
		if got := ReasonClass(reason); got != want {
			t.Errorf("ReasonClass(%.60q) = %q, want %q", reason, got, want)
		}
	}
}

func testUnits() ([]Unit, Built) {
	units := []Unit{
		{ID: "c0000", Subject: "a", Files: []string{"lib/a.c"}},
		{ID: "c0001", Subject: "b", Files: []string{"Documentation/b.rst"}},
		{ID: "c0002", Subject: "c", Files: []string{"fs/nfsd/c.c"}},
		{ID: "f:lib/d.c", Files: []string{"lib/d.c"}},
	}
	built := Built{"lib/a.c": {Vmlinux}, "fs/nfsd/c.c": {"nfsd"}, "lib/d.c": {Vmlinux}}
	return units, built
}

// A run records every unit; a second run checks none again; a run
// stopped by a failing instrument keeps what it finished, and the next
// run checks only the rest.
func TestRunResumes(t *testing.T) {
	units, built := testUnits()
	results := filepath.Join(t.TempDir(), "results.jsonl")
	var checked []string
	broken := ""
	check := func(ctx context.Context, u Unit, r *Record) error {
		if u.ID == broken {
			return errors.New("qemu went away")
		}
		checked = append(checked, u.ID)
		r.Outcome = Passed
		if u.ID == "c0002" {
			r.Outcome, r.Reason = Refused, "fs/nfsd/c.c is built into module nfsd; create --patch patches vmlinux only for now"
		}
		return nil
	}

	broken = "c0002"
	_, err := Run(context.Background(), units, built, results, "6.1.0-53-cloud-amd64", check, nil)
	if err == nil || !strings.Contains(err.Error(), "c0002") {
		t.Fatalf("Run with a failing instrument = %v, want an error naming c0002", err)
	}
	recs, err := ReadResults(results)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs["c0001"].Outcome != NotBuilt || recs["c0000"].Outcome != Passed || recs["c0000"].Objects[0] != Vmlinux {
		t.Fatalf("after the stopped run: %+v", recs)
	}

	broken, checked = "", nil
	s, err := Run(context.Background(), units, built, results, "6.1.0-53-cloud-amd64", check, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(checked, []string{"c0002", "f:lib/d.c"}) {
		t.Errorf("the resumed run checked %v, want only c0002 and f:lib/d.c", checked)
	}
	if s.Line() != "corpus: 3 units built for this configuration, 2 bundles created, 2 passed the guest check (66.7%)" {
		t.Errorf("summary %q", s.Line())
	}

	checked = nil
	s2, err := Run(context.Background(), units, built, results, "6.1.0-53-cloud-amd64", check, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(checked) != 0 || s2.Line() != s.Line() {
		t.Errorf("a run over recorded units checked %v and summed %q", checked, s2.Line())
	}
	b, err := os.ReadFile(results)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 4 {
		t.Errorf("the results file has %d lines, want one per unit (4)", n)
	}
}

// A damaged results file stops the run before anything is checked.
func TestRunRefusesDamagedResults(t *testing.T) {
	units, built := testUnits()
	results := filepath.Join(t.TempDir(), "results.jsonl")
	if err := os.WriteFile(results, []byte(`{"id":"c0000","outcome":"passed"}`+"\n{\"id\":\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	called := false
	_, err := Run(context.Background(), units, built, results, "k", func(context.Context, Unit, *Record) error { called = true; return nil }, nil)
	if !errors.Is(err, ErrResults) || !strings.Contains(err.Error(), "line 2") || called {
		t.Errorf("Run = %v (checked: %v), want ErrResults naming line 2 and nothing checked", err, called)
	}
}

func TestSample(t *testing.T) {
	var units []Unit
	built := Built{}
	for i := range 40 {
		f := fmt.Sprintf("f%02d.c", i)
		units = append(units, Unit{ID: f, Files: []string{f}})
		if i%2 == 0 {
			built[f] = []string{Vmlinux}
		}
	}
	ids := func(us []Unit) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.ID)
		}
		return out
	}
	a, b := ids(Sample(units, built, 5, 7)), ids(Sample(units, built, 5, 7))
	if !slices.Equal(a, b) || len(a) != 5 {
		t.Fatalf("same seed gave %v and %v", a, b)
	}
	if !slices.IsSorted(a) {
		t.Errorf("sample %v is not in corpus order", a)
	}
	for _, id := range a {
		if built[id] == nil {
			t.Errorf("sample holds %s, which the configuration does not build", id)
		}
	}
	// A larger sample with the same seed holds the smaller one, so a run
	// can grow its sample and resume.
	for _, id := range a {
		if !slices.Contains(ids(Sample(units, built, 6, 7)), id) {
			t.Errorf("the sample of 6 lacks %s of the sample of 5", id)
		}
	}
	if c := ids(Sample(units, built, 5, 8)); slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 gave the same sample %v", a)
	}
	// A corpus that gains units elsewhere keeps the rest of the sample:
	// it holds the old sample but where a new unit ranks before it.
	grown := append(slices.Clone(units), Unit{ID: "new.c", Files: []string{"new.c"}})
	built["new.c"] = []string{Vmlinux}
	g := ids(Sample(grown, built, 5, 7))
	kept := 0
	for _, id := range a {
		if slices.Contains(g, id) {
			kept++
		}
	}
	if want := 5 - btoi(slices.Contains(g, "new.c")); kept != want {
		t.Errorf("after one unit was added the sample %v keeps %d of %v, want %d", g, kept, a, want)
	}
	delete(built, "new.c")
	if len(Sample(units, built, 0, 7)) != 40 || len(Sample(units, built, 20, 7)) != 40 {
		t.Error("no sample, or one of every built unit, should give the whole corpus")
	}
}

// A header is built into hundreds of objects: the record keeps the first
// MaxObjects, vmlinux first, and the count.
func TestRunBoundsObjects(t *testing.T) {
	built := Built{"include/x.h": {}}
	for i := range 40 {
		built["include/x.h"] = append(built["include/x.h"], fmt.Sprintf("mod%02d", i))
	}
	built["include/x.h"] = append(built["include/x.h"], Vmlinux)
	results := filepath.Join(t.TempDir(), "results.jsonl")
	check := func(_ context.Context, _ Unit, r *Record) error {
		r.Outcome, r.Reason = Refused, "a header change"
		return nil
	}
	if _, err := Run(context.Background(), []Unit{{ID: "f:include/x.h", Files: []string{"include/x.h"}}}, built, results, "k", check, nil); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadResults(results)
	if err != nil {
		t.Fatal(err)
	}
	r := recs["f:include/x.h"]
	if len(r.Objects) != MaxObjects || r.ObjectCount != 41 || r.Objects[0] != Vmlinux {
		t.Errorf("record keeps %d objects (first %q) of %d, want %d of 41, vmlinux first", len(r.Objects), r.Objects[0], r.ObjectCount, MaxObjects)
	}
}

func TestDescribe(t *testing.T) {
	units, built := testUnits()
	units = append(units,
		Unit{ID: "c0003", Subject: "d", CVEs: []string{"CVE-2026-1"}, Files: []string{"include/linux/d.h", "lib/a.c"}},
		Unit{ID: "c0004", Subject: "e", CVEs: []string{"CVE-2026-2"}, Files: []string{"lib/a.c", "lib/d.c"}},
		Unit{ID: "f:arch/x86/entry/e.S", Files: []string{"arch/x86/entry/e.S"}},
	)
	built["arch/x86/entry/e.S"] = []string{Vmlinux}
	got := Describe(units, built)
	want := Breakdown{Units: 7, Attributed: 5, PerFile: 2, CVE: 2, Built: 6, BuiltCVE: 2,
		Header: 1, SeveralFiles: 1, Module: 1, Vmlinux: 2, Other: 1}
	if got != want {
		t.Errorf("Describe = %+v\nwant       %+v", got, want)
	}
	if s := got.String(); !strings.HasPrefix(s, "7 units (5 attributed to a change, 2 per file; 2 name a CVE), 6 built") {
		t.Errorf("String() = %q", s)
	}
}

func TestSummaryCountsCVEs(t *testing.T) {
	var s Summary
	s.Add(Record{ID: "a", CVEs: []string{"CVE-2026-1"}, Outcome: Passed})
	s.Add(Record{ID: "b", CVEs: []string{"CVE-2026-2"}, Outcome: Refused, Reason: "x"})
	s.Add(Record{ID: "c", Outcome: Passed})
	s.Add(Record{ID: "d", CVEs: []string{"CVE-2026-3"}, Outcome: NotBuilt})
	if s.CVEBuilt != 2 || s.CVECreated != 1 || s.CVEPassed != 1 || s.Built != 3 || s.Passed != 2 {
		t.Errorf("summary = %+v", s)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A unit whose change compiles to the same object code is built but not
// counted in U; a data change create refuses stays a refusal.
func TestUnchangedIsNotInU(t *testing.T) {
	same := "f:net/rds/send.c changes the object code of no function in net/rds/send.c"
	data := "c1: the patch cannot be carried by a livepatch: objdiff: a.c before -> a.c after cannot be livepatched safely: data table: initial value changed"
	if got := RefusalOutcome(same); got != Unchanged {
		t.Errorf("RefusalOutcome(%q) = %s, want %s", same, got, Unchanged)
	}
	// A header change no built unit reads reaches no code either.
	unread := "compile: no unit the configuration builds reads what the patch changes in the headers: kernel/time/tick-internal.h"
	if got := RefusalOutcome(unread); got != Unchanged {
		t.Errorf("RefusalOutcome(%q) = %s, want %s", unread, got, Unchanged)
	}
	if got := RefusalOutcome(data); got != Refused {
		t.Errorf("RefusalOutcome(%q) = %s, want %s", data, got, Refused)
	}
	var s Summary
	s.Add(Record{ID: "a", Outcome: Passed})
	s.Add(Record{ID: "b", Outcome: Unchanged, Reason: same})
	s.Add(Record{ID: "c", Outcome: Refused, Reason: data})
	if s.Units != 3 || s.Built != 2 || s.Unchanged != 1 || s.Passed != 1 {
		t.Errorf("summary = %+v, want 3 units, 2 in U, 1 unchanged", s)
	}
	if want := "corpus: 2 units built for this configuration, 1 bundles created, 1 passed the guest check (50.0%)"; s.Line() != want {
		t.Errorf("line = %q, want %q", s.Line(), want)
	}
	if len(s.Reasons) != 1 {
		t.Errorf("reasons = %v, want only the data refusal", s.Reasons)
	}
}

func TestReasonClassHeaderAndMissingSymbol(t *testing.T) {
	for reason, want := range map[string]string{
		"include/linux/hid.h: header included by too many units: 85 units the configuration builds use what the patch changes in it":                                                                                                           "a header reaching too many units",
		"include/linux/hid.h: header included by too many units: 85 units ...; and the patch changes the members of struct hid_device: a data layout change":                                                                                   "a header reaching too many units, changing a struct's layout",
		`f:fs/nfs/nfs4client.c: klpgen: generate: function nfs4_alloc_client: symbol "nfs_cb_idr_remove" is neither a symbol of module nfsv4, nor exported`:                                                                                    "a symbol the running kernel does not have",
		"f:security/selinux/ss/services.c: klpgen: generate: not supported: function __security_genfs_sid: section .text.__security_genfs_sid: it does not call __fentry__ at its entry (notrace or noinstr), so livepatch cannot redirect it": "a changed function livepatch cannot redirect (notrace)",
	} {
		if got := ReasonClass(reason); got != want {
			t.Errorf("ReasonClass(%q) = %q, want %q", reason, got, want)
		}
	}
}

func TestReasonClassBuildFailure(t *testing.T) {
	r := "exit 2: compile net/ipv4/icmp.c (after the patch): build failed: gcc-12 exited 1: b/net/ipv4/icmp.c:481:22: error: implicit declaration of function 'dst_dev'"
	if got := ReasonClass(r); got != "does not build without another change of the update" {
		t.Errorf("ReasonClass = %q", got)
	}
}
