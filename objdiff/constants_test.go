package objdiff

import (
	"slices"
	"strings"
	"testing"
)

// A policy table only its file's functions read (a netlink policy
// tightened by a fix) is carried as the module's copy, and every
// function that reads it is replaced, changed or not.
func TestDiffConstantCarriedWithItsReaders(t *testing.T) {
	const pre = `
struct policy { int type; int max; };
static const struct policy limits[4] = { {1, 10}, {2, 20}, {3, 30}, {4, 40} };
extern int parse(const struct policy *p, int n, int v);
int set_rate(int v) { return parse(limits, 4, v); }
int set_burst(int v) { return parse(limits, 4, v) + 1; }
int unrelated(int v) { return v * 5; }
`
	post := strings.Replace(pre, "{3, 30}", "{3, 16}", 1)
	res := diff(t, pre, post, false)
	check(t, res, want{changed: []string{"set_burst", "set_rate"}})
	if !slices.ContainsFunc(res.AddedData, func(f Function) bool { return f.Name == "limits" }) {
		t.Errorf("the new table is not carried as the module's copy: %+v", res.AddedData)
	}
	if r := res.Changed[0].Reason; !strings.Contains(r, "reads limits, a constant the patch changes") {
		t.Errorf("reason %q", r)
	}
	if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.HasPrefix(n, "limits: constant changed (initial value differs") }) {
		t.Errorf("notes: %q", res.Notes)
	}
}

// A table that grows (a policy with a new attribute) is carried too.
func TestDiffConstantGrowsCarried(t *testing.T) {
	const pre = `
extern int parse(const int *p, int n, int v);
static const int limits[] = { 10, 20, 30 };
int set_rate(int v) { return parse(limits, sizeof(limits) / sizeof(limits[0]), v); }
`
	res := diff(t, pre, strings.Replace(pre, "30 }", "30, 40 }", 1), false)
	check(t, res, want{changed: []string{"set_rate"}})
}

// A table whose address data holds (a family structure registered at
// load) stays refused: the registered structure keeps the kernel's copy.
func TestDiffConstantReferencedByDataRefused(t *testing.T) {
	const pre = `
extern int parse(const int *p, int n, int v);
static const int limits[] = { 10, 20, 30 };
struct family { const int *policy; int n; };
struct family fam = { limits, 3 };
int set_rate(int v) { return parse(limits, 3, v); }
`
	res := diff(t, pre, strings.Replace(pre, "20, 30", "20, 16", 1), false)
	check(t, res, want{unsafe: []string{"data limits"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "data or init code refers to it") {
		t.Errorf("reason %q", r)
	}
}

// An ops table (function addresses) stays refused: code stores its
// address in objects that outlive the patch.
func TestDiffOpsTableRefused(t *testing.T) {
	const pre = `
struct ops { int (*show)(int); int (*stop)(int); };
static int show_a(int v) { return v + 1; }
static int show_b(int v) { return v + 2; }
static int stop(int v) { return v; }
static const struct ops table = { .show = show_a, .stop = stop };
extern void install(const struct ops *o);
void open_it(void) { install(&table); }
int use_b(int v) { return show_b(v); }
`
	res := diff(t, pre, strings.Replace(pre, ".show = show_a", ".show = show_b", 1), false)
	if !slices.Contains(problems(res.Unsafe), "data table") {
		t.Fatalf("the ops table is not refused: %q", problems(res.Unsafe))
	}
	for _, p := range res.Unsafe {
		if p.Name == "table" && !strings.Contains(p.Reason, "as an ops table does") {
			t.Errorf("reason %q", p.Reason)
		}
	}
}

// A global constant stays refused: other units may read it.
func TestDiffGlobalConstantRefused(t *testing.T) {
	const pre = `
extern int parse(const int *p, int n, int v);
const int limits[] = { 10, 20, 30 };
int set_rate(int v) { return parse(limits, 3, v); }
`
	res := diff(t, pre, strings.Replace(pre, "20, 30", "20, 16", 1), false)
	check(t, res, want{unsafe: []string{"data limits"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "it is global") {
		t.Errorf("reason %q", r)
	}
}

// A table init code reads stays refused: init ran, and may have kept
// its address.
func TestDiffConstantReadByInitRefused(t *testing.T) {
	const pre = `
extern int parse(const int *p, int n, int v);
static const int limits[] = { 10, 20, 30 };
__attribute__((section(".init.text"))) int setup(void) { return parse(limits, 3, 0); }
int set_rate(int v) { return parse(limits, 3, v); }
`
	res := diff(t, pre, strings.Replace(pre, "20, 30", "20, 16", 1), false)
	check(t, res, want{unsafe: []string{"data limits"}})
}
