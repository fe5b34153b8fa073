package objdiff

import (
	"strings"
	"testing"
)

// ratelimitUnit declares a ratelimit state per message, as
// printk_ratelimited does (DEFINE_RATELIMIT_STATE(_rs, ...)).
const ratelimitUnit = `
struct ratelimit_state { int lock; int interval; int burst; int printed; int missed; unsigned long begin; unsigned long flags; };
extern int ___ratelimit(struct ratelimit_state *rs, const char *func);
extern void say(const char *m);
#define SAY_RATELIMITED(m) do { static struct ratelimit_state _rs = { .interval = 1250, .burst = 10 }; \
	if (___ratelimit(&_rs, __func__)) say(m); } while (0)
`

// A fix that adds a rate-limited message renumbers every later _rs of
// the unit, some in functions with several of them. The states are
// compared by name alone, and the new code gets fresh copies (as kpatch
// does with its special statics): unchanged functions stay unchanged,
// and the changed one is carried although its _rs are renumbered.
func TestDiffRenumberedRatelimitStates(t *testing.T) {
	const pre = ratelimitUnit + `
int parse(int n) { if (n < 0) SAY_RATELIMITED("negative"); return n * 2; }
int walk(int n) { if (n > 9) SAY_RATELIMITED("big"); if (n == 3) SAY_RATELIMITED("three"); return n; }
`
	post := strings.Replace(pre, "return n * 2;", "if (n > 100) { SAY_RATELIMITED(\"huge\"); return 0; } return n * 2;", 1)
	res := diff(t, pre, post, false)
	check(t, res, want{changed: []string{"parse"}})
}

// A fix that changes a ratelimit state's interval, and nothing else of
// the function: the state is per function and the module's copy is
// fresh, so the function is replaced to use it; the new interval takes
// effect. A plain static's new initial value stays refused
// (TestDiffChangedStaticVariable): the kernel keeps the variable it has.
func TestDiffRatelimitIntervalChanged(t *testing.T) {
	const pre = ratelimitUnit + `
int parse(int n) { if (n < 0) SAY_RATELIMITED("negative"); return n * 2; }
int walk(int n) { if (n > 9) SAY_RATELIMITED("big"); return n; }
`
	post := strings.Replace(pre, ".interval = 1250", ".interval = 5000", 1)
	res := diff(t, pre, post, false)
	check(t, res, want{changed: []string{"parse", "walk"}})
	for _, f := range res.Changed {
		if !strings.Contains(f.Reason, "whose initial value the patch changes") {
			t.Errorf("%s: reason %q, want the fresh copy", f.Name, f.Reason)
		}
	}
	if len(res.Notes) != 2 || !strings.Contains(res.Notes[0], "initial value differs") {
		t.Errorf("notes %q, want one per state", res.Notes)
	}
}

// A ratelimit state that data refers to is not a function's own: its
// new value is refused like any variable's.
func TestDiffRatelimitStateDataRefers(t *testing.T) {
	const pre = ratelimitUnit + `
static struct ratelimit_state _rs = { .interval = 1250, .burst = 10 };
struct ratelimit_state *const shared = &_rs;
int parse(int n) { if (___ratelimit(&_rs, "parse")) say("x"); return n; }
`
	post := strings.Replace(pre, "{ .interval = 1250, .burst = 10 };\nstruct", "{ .interval = 5000, .burst = 10 };\nstruct", 1)
	res := diff(t, pre, post, false)
	if len(res.Unsafe) != 1 || !strings.Contains(res.Unsafe[0].Reason, "initial value differs") {
		t.Fatalf("unsafe %+v, want the state's new value refused", res.Unsafe)
	}
}
