package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/corpus"
)

func TestConfigFrom(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	c, err := configFrom(env())
	if err != nil || c.abi != "6.1.0-53" || c.to != "6.1.190-1" || c.sample != 0 || c.seed != 1 || c.patches != "" {
		t.Errorf("defaults = %+v, %v; want the public corpus, every unit", c, err)
	}
	c, err = configFrom(env("CORPUS_SAMPLE", "3", "CORPUS_SEED", "9"))
	if err != nil || c.sample != 3 || c.seed != 9 {
		t.Errorf("sample = %+v, %v", c, err)
	}
	c, err = configFrom(env("CORPUS_MAX_HEADER_UNITS", "512"))
	if err != nil || c.maxHeaderUnits != 512 {
		t.Errorf("CORPUS_MAX_HEADER_UNITS=512 = %+v, %v", c, err)
	}
	for _, bad := range []struct {
		env  func(string) string
		want string
	}{
		{env("CORPUS_SAMPLE", "three"), "CORPUS_SAMPLE"},
		{env("CORPUS_SAMPLE", "-1"), "CORPUS_SAMPLE"},
		{env("CORPUS_SEED", "x"), "CORPUS_SEED"},
		{env("CORPUS_MAX_HEADER_UNITS", "0"), "CORPUS_MAX_HEADER_UNITS"},
		{env("CORPUS_PATCHES", "fixes"), "CORPUS_ABI"},
		{env("CORPUS_ABI", "../6.1.0-53"), "names, not paths"},
	} {
		if _, err := configFrom(bad.env); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("configFrom = %v, want a usage error naming %s", err, bad.want)
		}
	}
}

func TestJudge(t *testing.T) {
	pass := map[string]string{
		"apply-exit": "0", "transition": "0", "enabled": "1", "workload": "done", "oops": "",
		"taint-before": "0", "taint-after": "45056", // K, E and O: what loading a livepatch sets
		"undo-exit": "0", "after-undo": "",
	}
	if why := judge(pass, 0); why != "" {
		t.Fatalf("a clean run was judged %q", why)
	}
	for key, c := range map[string]struct{ value, want string }{
		"apply-exit":  {"1", "apply failed"},
		"transition":  {"1", "transition did not finish"},
		"enabled":     {"0", "not enabled"},
		"workload":    {"", "workload did not finish"},
		"oops":        {"BUG: unable to handle page fault|", "kernel log: BUG"},
		"taint-after": {"45568", "new taint 0x200"}, // W: a warning
		"undo-exit":   {"1", "undo failed"},
		"after-undo":  {"lp_corpus_unit ", "still loaded"},
	} {
		m := map[string]string{}
		for k, v := range pass {
			m[k] = v
		}
		m[key] = c.value
		if why := judge(m, 0); !strings.Contains(why, c.want) {
			t.Errorf("%s=%q judged %q, want %q", key, c.value, why, c.want)
		}
	}
	if why := judge(pass, 3); !strings.Contains(why, "exit 3") {
		t.Errorf("a failed script was judged %q", why)
	}
}

func TestUnitsSetting(t *testing.T) {
	c, err := configFrom(func(k string) string {
		return map[string]string{"CORPUS_UNITS": "c0029, f:lib/x.c,"}[k]
	})
	if err != nil || len(c.units) != 2 || c.units[0] != "c0029" || c.units[1] != "f:lib/x.c" {
		t.Errorf("CORPUS_UNITS gave %q, %v", c.units, err)
	}
	_, err = configFrom(func(k string) string { return map[string]string{"CORPUS_UNITS": "c1", "CORPUS_SAMPLE": "2"}[k] })
	if !errors.Is(err, errUsage) {
		t.Errorf("CORPUS_UNITS with CORPUS_SAMPLE: %v, want a usage error", err)
	}
	units := []corpus.Unit{{ID: "c0001"}, {ID: "c0029"}, {ID: "f:lib/x.c"}}
	got, err := selectUnits(units, []string{"f:lib/x.c", "c0001"})
	if err != nil || len(got) != 2 || got[0].ID != "c0001" || got[1].ID != "f:lib/x.c" {
		t.Errorf("selectUnits = %v, %v; want both, in corpus order", got, err)
	}
	if _, err := selectUnits(units, []string{"c0001", "c9999"}); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "c9999") {
		t.Errorf("selectUnits of an unknown id: %v, want a usage error naming it", err)
	}
}

func TestPatchSubject(t *testing.T) {
	mail := "From 1234 Mon Sep 17 00:00:00 2001\nSubject: [PATCH 6.1 12/40] nfsd: fix a leak\n\nbody\n---\n--- a/x.c\n+++ b/x.c\n"
	if got := patchSubject([]byte(mail), "0012.patch"); got != "nfsd: fix a leak" {
		t.Errorf("subject of a mailed patch = %q", got)
	}
	if got := patchSubject([]byte("--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-Subject: a\n+b\n"), "fix.patch"); got != "fix.patch" {
		t.Errorf("subject of a bare diff = %q, want the file name", got)
	}
}

func TestExportUnits(t *testing.T) {
	dir := t.TempDir()
	units := []corpus.Unit{
		{ID: "c0029", Patch: []byte("--- a/lib/x.c\n+++ b/lib/x.c\n")},
		{ID: "f:net/rds/send.c", Patch: []byte("--- a/net/rds/send.c\n+++ b/net/rds/send.c\n")},
	}
	var log strings.Builder
	if err := exportUnits(units, dir, &log); err != nil {
		t.Fatal(err)
	}
	for name, u := range map[string]corpus.Unit{"c0029.patch": units[0], "f_net_rds_send.c.patch": units[1]} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != string(u.Patch) {
			t.Errorf("%s = %q, %v; want unit %s's patch", name, got, err, u.ID)
		}
	}
	if !strings.Contains(log.String(), "wrote 2 patches") {
		t.Errorf("log = %q", log.String())
	}
	c, err := configFrom(func(k string) string {
		if k == "CORPUS_EXPORT" {
			return "out"
		}
		return ""
	})
	if err != nil || !filepath.IsAbs(c.export) {
		t.Errorf("CORPUS_EXPORT=out: %+v, %v; want an absolute folder", c, err)
	}
}

// A unit's module that the guest cannot load (a Xen driver outside Xen)
// is reported with insmod's words, not as a bare exit code.
// A failed apply says what the kernel logged, e.g. why it refused the
// livepatch module.
func TestJudgeApplyLog(t *testing.T) {
	why := judge(map[string]string{"apply-exit": "1", "apply-out": "finit_module: invalid argument|",
		"apply-log": "[ 3.1] lp_corpus_unit: unknown symbol x|"}, 0)
	if !strings.Contains(why, "finit_module: invalid argument") || !strings.Contains(why, "kernel log: [ 3.1] lp_corpus_unit: unknown symbol x") {
		t.Errorf("judge = %q, want apply's words and the kernel's", why)
	}
}

func TestModuleLoadFailure(t *testing.T) {
	console := "[    1.9] xen_gntalloc: loading\n" +
		"insmod: can't insert 'xen_gntalloc.ko': No such device\r\n" +
		"lab-init: insmod xen_gntalloc.ko failed\n@@LAB-EXIT 125\n"
	got := moduleLoadFailure(console)
	for _, want := range []string{"could not load a module", "insmod xen_gntalloc.ko failed", "No such device"} {
		if !strings.Contains(got, want) {
			t.Errorf("reason %q does not say %q", got, want)
		}
	}
}

// A crash of create is told from a refusal: its panic line.
func TestCrashOf(t *testing.T) {
	out := "splicefleet: preparing the tree\npanic: runtime error: index out of range [1] with length 1\n\ngoroutine 1 [running]:\n"
	if got := crashOf(out); got != "panic: runtime error: index out of range [1] with length 1" {
		t.Errorf("crashOf = %q", got)
	}
	if got := crashOf("splicefleet: refused: data x\n"); got != "" {
		t.Errorf("crashOf of a refusal = %q", got)
	}
}
