package objdiff

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// callsUnit is a unit whose static lookup takes one more argument after
// the fix, like net/sctp/stream.c's sctp_chunk_lookup_strreset_param:
// %[1]s are lookup's parameters, %[2]s what one and two pass after x,
// %[3]s more code.
const callsUnit = `
static __attribute__((noipa)) int lookup(%[1]s) { return a / 4 + %[4]s; }
int one(int x) { return lookup(x%[2]s); }
int two(int x) { return lookup(x + 1%[2]s); }
%[3]s
`

// callsDiff compares the unit before and after lookup takes b.
func callsDiff(t *testing.T, more string) *Result {
	t.Helper()
	return diff(t, fmt.Sprintf(callsUnit, "int a", "", more, "1"), fmt.Sprintf(callsUnit, "int a, int b", ", 3", more, "b"), false)
}

// refusedSignature checks that lookup's new prototype is refused, for
// why.
func refusedSignature(t *testing.T, res *Result, changed []string, why string) {
	t.Helper()
	check(t, res, want{changed: changed, unsafe: []string{"signature lookup"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "prototype int (int) -> int (int, int)") || !strings.Contains(r, why) {
		t.Errorf("reason %q, want the prototypes and %q", r, why)
	}
}

// TestDiffSignatureAllCallersReplaced: a static function whose callers
// all change with it takes another argument: no unpatched caller can
// reach it, and the change is accepted with a note.
func TestDiffSignatureAllCallersReplaced(t *testing.T) {
	res := callsDiff(t, "")
	check(t, res, want{changed: []string{"lookup", "one", "two"}})
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "lookup: prototype int (int) -> int (int, int), accepted") {
		t.Errorf("notes %q, want the accepted prototype change", res.Notes)
	}
}

// TestDiffSignatureCallerNotReplaced: a caller whose code is the same
// after the fix is not replaced, and its calls reach the new code
// through the ftrace redirection with the old arguments.
func TestDiffSignatureCallerNotReplaced(t *testing.T) {
	// A struct passed by value under another name: the caller's code
	// stays the same, and only a prototype of the same registers under
	// the same names is accepted for a caller that is not replaced.
	const unit = `
struct %[1]s { int v; };
static __attribute__((noipa)) int lookup(struct %[1]s a) { return a.v / %[2]s; }
int one(int x) { struct %[1]s a = { x }; return lookup(a); }
`
	res := diff(t, fmt.Sprintf(unit, "pa", "4"), fmt.Sprintf(unit, "pb", "8"), false)
	check(t, res, want{changed: []string{"lookup"}, unsafe: []string{"signature lookup"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "prototype int (struct pa) -> int (struct pb)") || !strings.Contains(r, "one jumps to it and is not replaced") {
		t.Errorf("reason %q, want the prototypes and the caller", r)
	}
}

// TestDiffSignatureAddressInTable: the address of lookup in a table of
// function pointers is called indirectly, with whatever the caller
// passes.
func TestDiffSignatureAddressInTable(t *testing.T) {
	res := callsDiff(t, "int (*const ops[])(int) = { (int (*)(int))lookup };")
	refusedSignature(t, res, []string{"lookup", "one", "two"}, "ops refers to it from .rodata.ops: its address is taken")
}

// TestDiffSignatureAddressInCode: an instruction that loads lookup's
// address (mov or lea) is no call.
func TestDiffSignatureAddressInCode(t *testing.T) {
	res := callsDiff(t, "void *addr(void) { return (void *)lookup; }")
	refusedSignature(t, res, []string{"lookup", "one", "two"}, "addr refers to it at +0x1 other than by a direct call or jump")
}

// privateUnit is a unit whose static, notrace stats (like fair.c's
// update_sd_lb_stats, static inline) is called by find; %[1]s is what
// stats and find add, here and in the more code each test appends.
const privateUnit = `
extern int sink(int);
static __attribute__((noinline, no_instrument_function)) int stats(int a) { return sink(a * 3 + %[1]s); }
int find(int x) { return stats(x) + sink(x + %[1]s); }
`

// privateDiff compares the unit before and after stats changes, and
// returns stats as the result lists it.
func privateDiff(t *testing.T, more string, changed ...string) (*Result, Function) {
	t.Helper()
	res := diff(t, fmt.Sprintf(privateUnit+more, "1"), fmt.Sprintf(privateUnit+more, "2"), false, "-pg", "-mfentry")
	check(t, res, want{changed: changed})
	for _, f := range res.Changed {
		if f.Name == "stats" {
			return res, f
		}
	}
	t.Fatalf("stats not among the changed functions %q", names(res.Changed))
	return nil, Function{}
}

// TestDiffPrivateOnlyReplacedCallers: stats changes with its only
// caller, which calls it: no code the patch leaves in place can reach
// it, and the result says so; the global caller can be reached from
// anywhere.
func TestDiffPrivateOnlyReplacedCallers(t *testing.T) {
	res, stats := privateDiff(t, "int wrap(int x) { return sink(x) - 1; }", "find", "stats")
	if !stats.Private || stats.Exposed != "" {
		t.Errorf("stats: Private %v, Exposed %q; want private", stats.Private, stats.Exposed)
	}
	find := res.Changed[0]
	if find.Private || find.Exposed != "it is global: other objects may call it" {
		t.Errorf("find: Private %v, Exposed %q; want global", find.Private, find.Exposed)
	}
}

// TestDiffPrivateUnchangedCaller: other calls stats the same way before
// and after, and would keep calling the kernel's old stats, which
// cannot be redirected: it is replaced too, so that its copy calls the
// new stats, which only replaced functions call now.
func TestDiffPrivateUnchangedCaller(t *testing.T) {
	res, stats := privateDiff(t, "int other(int x) { return stats(x + 5) * 2 + sink(0); }", "find", "other", "stats")
	if !stats.Private || stats.Exposed != "" {
		t.Errorf("stats: Private %v, Exposed %q; want private", stats.Private, stats.Exposed)
	}
	other := res.Changed[slices.IndexFunc(res.Changed, func(f Function) bool { return f.Name == "other" })]
	if !strings.Contains(other.Reason, "calls stats, which changed and cannot be redirected") {
		t.Errorf("other replaced for %q", other.Reason)
	}
}

// TestDiffPrivateUnchangedInitCaller: init code that calls stats is not
// replaced (it ran, and a module's runs again unpatched at every load):
// stats stays reachable from code left in place.
func TestDiffPrivateUnchangedInitCaller(t *testing.T) {
	_, stats := privateDiff(t, "__attribute__((section(\".init.text\"))) int boot(int x) { return stats(x + 5) * 2 + sink(0); }", "find", "stats")
	if stats.Private || stats.Exposed != "before: boot calls it and is not replaced by the patch" {
		t.Errorf("stats: Private %v, Exposed %q; want the init caller", stats.Private, stats.Exposed)
	}
}

// TestDiffPrivateAddressTaken: a pointer to stats can be called from
// anywhere.
func TestDiffPrivateAddressTaken(t *testing.T) {
	_, stats := privateDiff(t, "int (*const hook)(int) = stats;", "find", "stats")
	if stats.Private || !strings.Contains(stats.Exposed, "hook refers to it from .rodata.hook: its address is taken") {
		t.Errorf("stats: Private %v, Exposed %q; want its address taken", stats.Private, stats.Exposed)
	}
}

// TestDiffPrivateTailCall: a caller that jumps to stats leaves no
// frame behind it, and a task in stats could be switched to the other
// version while it runs.
func TestDiffPrivateTailCall(t *testing.T) {
	_, stats := privateDiff(t, "int tail(int x) { if (x > 3) return stats(x); return sink(x + %[1]s); }", "find", "stats", "tail")
	if stats.Private || !strings.Contains(stats.Exposed, "before: tail jumps to it (a tail call)") {
		t.Errorf("stats: Private %v, Exposed %q; want the tail call", stats.Private, stats.Exposed)
	}
}

// TestDiffSignatureSameRegisters: a global function whose parameters
// only gain a const or change signedness at 4 bytes or more (a typical
// stable fix: int *count -> u32 *count, char * -> const char *) takes the
// same registers with the same bits: callers that are not patched pass
// what a caller compiled against the new prototype would. A parameter
// of another size, or a char that changes signedness (the caller
// extends it to a register as its own type says), stays refused.
func TestDiffSignatureSameRegisters(t *testing.T) {
	const unit = `
typedef unsigned int u32;
int classes(%s *names, %s *count, %s flag, int n) { *count = n; return names[0] + flag; }
`
	// The fix changes the code too: n counts one more.
	pre := fmt.Sprintf(unit, "char", "int", "int")
	fix := func(s string) string { return strings.Replace(s, "*count = n;", "*count = n + 1;", 1) }
	res := diff(t, pre, fix(fmt.Sprintf(unit, "const char", "u32", "unsigned int")), false)
	check(t, res, want{changed: []string{"classes"}})
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "classes: prototype int (char*, int*, int, int) -> int (const char*, u32*, unsigned int, int), accepted: every parameter and the result keep their size and register class") {
		t.Errorf("notes %q", res.Notes)
	}
	// A table holds its address, so that it cannot be carried as a new
	// function beside the kernel's either (TestDiffSignatureForked).
	const table = "void *const hooks[] = { (void *)classes };\n"
	for _, c := range []struct{ flag, why string }{
		{"long", "int (char*, int*, int, int) -> int (char*, int*, long int, int)"},
		{"unsigned char", "int (char*, int*, int, int) -> int (char*, int*, unsigned char, int)"},
	} {
		res = diff(t, pre+table, fix(fmt.Sprintf(unit, "char", "int", c.flag))+table, false)
		check(t, res, want{changed: []string{"classes"}, unsafe: []string{"signature classes"}})
		if r := res.Unsafe[0].Reason; !strings.Contains(r, c.why) {
			t.Errorf("%s: reason %q", c.flag, r)
		}
	}
	res = diff(t, fmt.Sprintf(unit, "char", "int", "signed char")+table, fix(fmt.Sprintf(unit, "char", "int", "unsigned char"))+table, false)
	check(t, res, want{changed: []string{"classes"}, unsafe: []string{"signature classes"}})
}

// forkUnit is a unit whose global, exported lookup takes one more
// argument after the fix, as drivers/infiniband/core/restrack.c's
// rdma_restrack_count did: %[1]s are lookup's parameters, %[2]s what one
// and two pass after x, %[3]s more code.
const forkUnit = `
__attribute__((noipa)) int lookup(%[1]s) { return a / 4 + %[4]s; }
static void *const __ksymtab_lookup __attribute__((section("___ksymtab+lookup"), used)) = (void *)lookup;
int one(int x) { return lookup(x%[2]s) + 1; }
int two(int x) { return lookup(x + 1%[2]s) * 3; }
%[3]s
`

func forkDiff(t *testing.T, more string) (*Result, Function) {
	t.Helper()
	res := diff(t, fmt.Sprintf(forkUnit, "int a", "", more, "1"), fmt.Sprintf(forkUnit, "int a, int b", ", 3", more, "b"), false)
	i := slices.IndexFunc(res.Changed, func(f Function) bool { return f.Name == "lookup" })
	if i < 0 {
		t.Fatalf("lookup not among the changed functions %q", names(res.Changed))
	}
	return res, res.Changed[i]
}

// TestDiffSignatureForked: a global function that takes another
// argument, which after the patch only replaced functions call, is
// carried as a new function beside the kernel's: the kernel's copy is
// not redirected, so its callers outside the bundle keep passing it the
// arguments it was built for. Its export entry is no call.
func TestDiffSignatureForked(t *testing.T) {
	res, lookup := forkDiff(t, "")
	check(t, res, want{changed: []string{"lookup", "one", "two"}})
	if !lookup.Forked || lookup.Private {
		t.Errorf("lookup: Forked %v, Private %v; want forked", lookup.Forked, lookup.Private)
	}
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "lookup: prototype int (int) -> int (int, int), carried as a new function") ||
		!strings.Contains(res.Notes[0], "the kernel's copy stays as it is") {
		t.Errorf("notes %q, want the new function", res.Notes)
	}
}

// TestDiffSignatureForkedRefused: a new function beside the kernel's is
// reached only by the bundle's own calls; a caller the patch leaves in
// place, a table that holds its address, or a tail call from a replaced
// function keep the prototype change refused.
func TestDiffSignatureForkedRefused(t *testing.T) {
	for _, c := range []struct{ more, why string }{
		{"void *const hooks[] = { (void *)lookup };", "nor can it be carried as a new function beside the kernel's: after: hooks refers to it from .rodata.hooks: its address is taken"},
		{"int tail(int x) { if (x > 3) return lookup(x%[2]s); return x * 7 + %[4]s; }", "after: tail jumps to it (a tail call)"},
	} {
		pre := strings.NewReplacer("%[2]s", "", "%[4]s", "1").Replace(c.more)
		post := strings.NewReplacer("%[2]s", ", 3", "%[4]s", "2").Replace(c.more)
		res := diff(t, fmt.Sprintf(forkUnit, "int a", "", pre, "1"), fmt.Sprintf(forkUnit, "int a, int b", ", 3", post, "b"), false)
		if !slices.Contains(problems(res.Unsafe), "signature lookup") {
			t.Fatalf("%s: unsafe %q, want the signature refused", c.more, problems(res.Unsafe))
		}
		for _, p := range res.Unsafe {
			if p.Name == "lookup" && !strings.Contains(p.Reason, c.why) {
				t.Errorf("%s: reason %q, want %q", c.more, p.Reason, c.why)
			}
		}
	}
}

// TestCallsFromReplaced: another object of the bundle that calls the new
// function must reach it only by direct calls from functions the patch
// replaces: a table that holds its address, or a tail call, would reach
// the kernel's copy, or leave no replaced frame on the stack.
func TestCallsFromReplaced(t *testing.T) {
	const unit = `
extern int lookup(%[1]s);
int use(int x) { return lookup(x%[2]s) + 1; }
%[3]s
`
	run := func(more string) string {
		pre := fmt.Sprintf(unit, "int a", "", strings.ReplaceAll(more, "%[2]s", ""))
		post := fmt.Sprintf(unit, "int a, int b", ", 3", strings.ReplaceAll(more, "%[2]s", ", 3"))
		res := diff(t, pre, post, false)
		return res.CallsFromReplaced("lookup")
	}
	if why := run(""); why != "" {
		t.Errorf("direct calls from a replaced function: %q, want none", why)
	}
	if why := run("int (*const hook)(int) = (void *)lookup;"); !strings.Contains(why, "hook refers to it from .rodata.hook: its address is taken") {
		t.Errorf("a table: %q", why)
	}
	if why := run("int tail(int x) { if (x > 2) return lookup(x * 5%[2]s); return x; }"); !strings.Contains(why, "tail jumps to it (a tail call)") {
		t.Errorf("a tail call: %q", why)
	}
	if why := run("int other(int x) { return x; }"); why != "" {
		t.Errorf("an unrelated function: %q, want none", why)
	}
}
