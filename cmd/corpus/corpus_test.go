package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/corpus"
	"github.com/splicefleet/splicefleet/internal/testutil"
	"github.com/splicefleet/splicefleet/lab"
)

var summaryLine = regexp.MustCompile(`^corpus: ([0-9]+) units built for this configuration, ([0-9]+) bundles created, ([0-9]+) passed the guest check \(([0-9]+\.[0-9])%\)$`)

var unchangedRow = regexp.MustCompile(`(?m)^built, object code unchanged \(not in U\)\s+([0-9]+)$`)

// TestCorpusSample runs the public corpus end to end on a small fixed
// sample: the kernel of 6.1.187-1 (ABI 6.1.0-53) pinned and fetched, both
// source trees diffed and grouped by Debian's changelog, the sampled
// units (all built by the cloud configuration) through create --patch and,
// for every bundle, a guest. A first run of two units, then a run of
// three with the same seed, which must resume: the first two are read
// from the results file, not run again. The results stay in
// .cache/corpus/test-sample.jsonl for reading.
func TestCorpusSample(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches two kernel source trees and boots guests under QEMU; make test and make corpus run it (make check passes -short)")
	}
	results := freshResults(t, "test-sample.jsonl")
	runSample := func(n int) (string, string) {
		t.Helper()
		env := map[string]string{"CORPUS_SAMPLE": strconv.Itoa(n), "CORPUS_SEED": "1", "CORPUS_RESULTS": results}
		var stdout, stderr bytes.Buffer
		line, err := run(context.Background(), func(k string) string { return env[k] }, &stdout, io.MultiWriter(&stderr, testutil.LogWriter(t)))
		t.Logf("sample of %d:\n%s", n, stdout.String())
		if err != nil {
			t.Fatal(err)
		}
		out := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
		if last := out[len(out)-1]; last != line {
			t.Errorf("the last line printed is %q, want the summary %q", last, line)
		}
		m := summaryLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("summary %q does not read as the documented line", line)
		}
		u, c, g := atoiT(t, m[1]), atoiT(t, m[2]), atoiT(t, m[3])
		un := unchangedRow.FindStringSubmatch(stdout.String())
		if un == nil {
			t.Fatalf("the table has no row of unchanged units:\n%s", stdout.String())
		}
		if u+atoiT(t, un[1]) != n || c > u || g > c {
			t.Errorf("summary %q, %s unchanged: want U and the unchanged units to make %d (the sample is drawn from built units), C <= U, G <= C", line, un[1], n)
		}
		return line, stderr.String()
	}

	runSample(2)
	first, err := corpus.ReadResults(results)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 {
		t.Fatalf("the results file holds %d records after a sample of 2", len(first))
	}
	for id, r := range first {
		if r.Outcome == corpus.NotBuilt || len(r.Objects) == 0 || r.Kernel != "6.1.0-53-cloud-amd64" {
			t.Errorf("%s: %+v: want a unit built for 6.1.0-53-cloud-amd64", id, r)
		}
		if r.Outcome == corpus.Refused && r.Reason == "" {
			t.Errorf("%s: refused without a reason", id)
		}
	}

	_, log := runSample(3)
	second, err := corpus.ReadResults(results)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 3 {
		t.Fatalf("the results file holds %d records after a sample of 3", len(second))
	}
	for id, r := range first {
		if !strings.Contains(log, id+": "+r.Outcome+" (recorded)") {
			t.Errorf("the second run did not resume %s from the results file", id)
		}
		if second[id].At != r.At {
			t.Errorf("%s was run again: recorded at %s, then %s", id, r.At, second[id].At)
		}
	}
}

// TestCorpusForkedPrototype runs one unit of the public corpus whose fix
// gives an exported function of module ib_core a new parameter:
// rdma_restrack_count (drivers/infiniband/core/restrack.c), which
// nldev.c, a file of the same module, calls with the new argument. The
// kernel's copy cannot be redirected to the new code, since callers the
// bundle leaves in place would pass two arguments to a function that
// reads three; the bundle carries it as a new function that the
// replaced nldev.c functions call, beside the kernel's. The bundle must
// pass the guest check with ib_core loaded.
func TestCorpusForkedPrototype(t *testing.T) {
	r := runOneUnit(t, "c0640", "test-forked.jsonl")
	if r.Outcome != corpus.Passed || !slices.Contains(r.Objects, "ib_core") || !slices.Contains(r.Files, "drivers/infiniband/core/nldev.c") {
		t.Errorf("c0640: %+v, want passed in ib_core, measured with nldev.c's change", r)
	}
}

// TestCorpusUnredirectable runs the CVE fix of the public corpus to
// lib/ucs2_string.c (ucs2_strnlen reads past the string's end). All of
// lib/ is built without ftrace in 6.1, so livepatch cannot redirect
// ucs2_strnlen, nor the three functions it is inlined into: the bundle
// carries them as new functions and replaces their callers in vmlinux
// and in five modules. The bundle must pass the guest check.
func TestCorpusUnredirectable(t *testing.T) {
	r := runOneUnit(t, "c0029", "test-unredirectable.jsonl")
	if r.Outcome != corpus.Passed || len(r.CVEs) == 0 || !slices.Equal(r.Files, []string{"lib/ucs2_string.c"}) {
		t.Errorf("c0029: %+v, want the CVE fix to lib/ucs2_string.c passed", r)
	}
}

// runOneUnit runs one unit of the public corpus, from a fresh results
// file named name, checks that the summary line counts it built,
// created and passed, and returns its record.
func runOneUnit(t *testing.T, id, name string) corpus.Record {
	t.Helper()
	if testing.Short() {
		t.Skip("fetches two kernel source trees and boots a guest under QEMU; make test and make corpus run it (make check passes -short)")
	}
	results := freshResults(t, name)
	env := map[string]string{"CORPUS_UNITS": id, "CORPUS_RESULTS": results}
	var stdout bytes.Buffer
	line, err := run(context.Background(), func(k string) string { return env[k] }, &stdout, testutil.LogWriter(t))
	t.Logf("\n%s", stdout.String())
	if err != nil {
		t.Fatal(err)
	}
	if want := "corpus: 1 units built for this configuration, 1 bundles created, 1 passed the guest check (100.0%)"; line != want {
		t.Errorf("summary %q, want %q", line, want)
	}
	recs, err := corpus.ReadResults(results)
	if err != nil {
		t.Fatal(err)
	}
	return recs[id]
}

// freshResults returns the path of a results file under .cache/corpus
// that does not exist yet, so that the test runs every unit.
func freshResults(t *testing.T, name string) string {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(root, ".cache", "corpus", name)
	if err := os.MkdirAll(filepath.Dir(results), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(results); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return results
}

func atoiT(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCorpusPatches runs a corpus of the user's own patches
// (CORPUS_PATCHES) against the pinned kernel: a patch to fs/proc/cmdline.c
// that create --patch turns into a bundle, which must pass the guest check
// (applied, transition finished, enabled, workload, no Oops or new taint,
// undone), and one that changes the kernel's data (an ops table's
// callback), which must be refused with the variable named, and one whose change
// compiles to the same code, which is counted apart from U.
func TestCorpusPatches(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a livepatch and boots a guest under QEMU; make test and make corpus run it (make check passes -short)")
	}
	results := freshResults(t, "test-patches.jsonl")
	env := map[string]string{"CORPUS_PATCHES": "testdata/patches", "CORPUS_ABI": "6.1.0-53", "CORPUS_VERSION": "6.1.187-1", "CORPUS_RESULTS": results}
	var stdout bytes.Buffer
	line, err := run(context.Background(), func(k string) string { return env[k] }, &stdout, testutil.LogWriter(t))
	t.Logf("\n%s", stdout.String())
	if err != nil {
		t.Fatal(err)
	}
	if want := "corpus: 2 units built for this configuration, 1 bundles created, 1 passed the guest check (50.0%)"; line != want {
		t.Errorf("summary %q, want %q", line, want)
	}
	recs, err := corpus.ReadResults(results)
	if err != nil {
		t.Fatal(err)
	}
	if r := recs["cmdline.patch"]; r.Outcome != corpus.Passed || len(r.Objects) != 1 || r.Objects[0] != corpus.Vmlinux || r.GuestSeconds <= 0 {
		t.Errorf("cmdline.patch: %+v, want passed in vmlinux after a guest ran", r)
	}
	if r := recs["ops.patch"]; r.Outcome != corpus.Refused || !strings.Contains(r.Reason, "children_seq_ops") {
		t.Errorf("ops.patch: %+v, want refused naming children_seq_ops", r)
	}
	// A change that compiles to the same code is built, but not in U.
	if r := recs["unchanged.patch"]; r.Outcome != corpus.Unchanged || len(r.Objects) != 1 {
		t.Errorf("unchanged.patch: %+v, want unchanged, built into vmlinux", r)
	}
	if !regexp.MustCompile(`(?m)^built, object code unchanged \(not in U\)\s+1$`).MatchString(stdout.String()) {
		t.Errorf("the table does not count the unchanged unit apart:\n%s", stdout.String())
	}

	// A version that is not the pinned kernel's is a usage error.
	env["CORPUS_VERSION"] = "6.1.190-1"
	if _, err := run(context.Background(), func(k string) string { return env[k] }, io.Discard, io.Discard); !errors.Is(err, errUsage) ||
		!strings.Contains(err.Error(), "6.1.187-1") {
		t.Errorf("CORPUS_VERSION of another kernel: %v, want a usage error naming the kernel's version", err)
	}
}

// TestModulesForReadsDependencies: the modules a guest loads for a unit
// come with their dependencies first, read from each module's modinfo
// (the unpacked kernel package has no modules.dep).
func TestModulesForReadsDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the pinned kernel's modules, fetched once (make test runs it; make check passes -short)")
	}
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	k, err := lab.Fetch(context.Background(), lab.FetchOptions{CacheDir: filepath.Join(root, ".cache", "lab"), ABI: "6.1.0-53", Log: testutil.LogWriter(t)})
	if err != nil {
		t.Fatal(err)
	}
	// tipc needs udp_tunnel and ip6_udp_tunnel, both modules in the
	// cloud kernel.
	mods, err := modulesFor(k, []string{"tipc"})
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) < 2 || mods[len(mods)-1] != "tipc" || !slices.Contains(mods, "udp_tunnel") || slices.Index(mods, "udp_tunnel") > slices.Index(mods, "tipc") {
		t.Errorf("modules for tipc: %v, want its dependencies (udp_tunnel among them) and then tipc", mods)
	}
	if mods, err := modulesFor(k, []string{"vmlinux"}); err != nil || len(mods) != 0 {
		t.Errorf("modules for vmlinux: %v, %v", mods, err)
	}
}
