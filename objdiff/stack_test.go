package objdiff

import (
	"fmt"
	"strings"
	"testing"
)

// stackUnit is a unit whose struct env, defined in the file, lives on
// balance's stack and reaches step through a pointer parameter, like
// kernel/sched/fair.c's struct lb_env in load_balance. %[1]s is put
// before the struct, %[2]s is a member the fix adds and %[3]s what step
// does with it; %[4]s is more code.
const stackUnit = `
%[1]s
struct env { long a; int b; %[2]s };
static __attribute__((noipa)) long step(struct env *e) { e->a += e->b %[3]s; return e->a; }
long balance(int x) { struct env env = { .a = x, .b = 2 }; step(&env); return env.a; }
%[4]s
`

// stackDiff compares the unit before and after env grows by a member
// that step reads.
func stackDiff(t *testing.T, before, more string) *Result {
	t.Helper()
	return diff(t, fmt.Sprintf(stackUnit, before, "", "", more), fmt.Sprintf(stackUnit, before, "long c;", "+ e->c", more), false)
}

// refusedLayout checks that env's layout change is refused, for why.
func refusedLayout(t *testing.T, res *Result, w want, why string) {
	t.Helper()
	check(t, res, w)
	for _, p := range res.Unsafe {
		if p.Name == "struct env" {
			if !strings.Contains(p.Reason, "data layout changed (size 16 -> 24)") || !strings.Contains(p.Reason, why) {
				t.Errorf("reason %q, want the size and %q", p.Reason, why)
			}
			return
		}
	}
	t.Errorf("struct env not refused")
}

// TestDiffLayoutOnlyOnStackAccepted: a struct of the file that only
// balance's stack holds grows; the functions that depend on its layout
// changed, and the change is accepted with a note.
func TestDiffLayoutOnlyOnStackAccepted(t *testing.T) {
	res := stackDiff(t, "", "")
	check(t, res, want{changed: []string{"balance", "step"}})
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "struct env: data layout changed (size 16 -> 24), accepted") {
		t.Errorf("notes %q, want the accepted layout change", res.Notes)
	}
}

// TestDiffLayoutInHeaderRefused: the same struct, defined in a header,
// may be held by every unit that includes it.
func TestDiffLayoutInHeaderRefused(t *testing.T) {
	res := stackDiff(t, `#line 1 "include/env.h"`, "")
	refusedLayout(t, res, want{changed: []string{"balance", "step"}, unsafe: []string{"data struct env"}}, "defined in include/env.h")
}

// TestDiffLayoutStaticVariableRefused: a static variable of the type
// keeps its old layout in the kernel.
func TestDiffLayoutStaticVariableRefused(t *testing.T) {
	res := stackDiff(t, "", "static struct env saved;\nlong keep(int x) { saved.b = x; return step(&saved); }")
	// The variable itself grew, too.
	refusedLayout(t, res, want{changed: []string{"balance", "step"}, unsafe: []string{"data saved", "data struct env"}}, "variable saved of static storage holds it by value")
}

// TestDiffLayoutPointerLocalRefused: a pointer local variable may hold
// an object on the heap, which outlives the patch's transition.
func TestDiffLayoutPointerLocalRefused(t *testing.T) {
	res := stackDiff(t, "", "extern void *alloc(unsigned long);\nlong heap(int x) { struct env *p = alloc(sizeof *p); p->b = x; return step(p); }")
	refusedLayout(t, res, want{changed: []string{"balance", "heap", "step"}, unsafe: []string{"data struct env"}}, "local variable p of heap points to it")
}

// TestDiffLayoutMemberRefused: a member of another type holds it
// wherever that type lives.
func TestDiffLayoutMemberRefused(t *testing.T) {
	res := stackDiff(t, "", "struct outer { struct env e; };\nlong nested(struct outer *o) { return o->e.a; }")
	// struct outer, which holds it, grew too.
	refusedLayout(t, res, want{changed: []string{"balance", "step"}, unsafe: []string{"data struct env", "data struct outer"}}, "member e of struct outer holds it by value")
}

// TestDiffLayoutGlobalParameterRefused: a global function taking a
// pointer to it may be called by another unit with a struct of its own.
func TestDiffLayoutGlobalParameterRefused(t *testing.T) {
	res := stackDiff(t, "", "long peek(struct env *e) { return e->b; }")
	refusedLayout(t, res, want{changed: []string{"balance", "step"}, unsafe: []string{"data struct env"}}, "parameter e of peek points to it, and peek is global")
}
