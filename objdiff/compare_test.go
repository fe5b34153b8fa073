package objdiff

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// cflags build objects the way the kernel does for livepatch diffs: one
// section per function and per variable.
var cflags = []string{"-c", "-O2", "-ffunction-sections", "-fdata-sections", "-fno-asynchronous-unwind-tables", "-fno-pic"}

// compile builds C source into an object with gcc, with debug info
// unless noDebug.
func compile(t testing.TB, name, src string, noDebug bool, extra ...string) []byte {
	t.Helper()
	args := slices.Clone(cflags)
	if !noDebug {
		args = append(args, "-g")
	}
	return testutil.CompileC(t, name, src, append(args, extra...)...)
}

func diff(t *testing.T, pre, post string, noDebug bool, extra ...string) *Result {
	t.Helper()
	res, err := Diff("pre.o", compile(t, "pre", pre, noDebug, extra...), "post.o", compile(t, "post", post, noDebug, extra...))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// want is the exact outcome of a diff: function names, and problems as
// "kind name".
type want struct {
	changed, added, removed, unsafe []string
}

func names(fs []Function) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func problems(ps []Problem) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, string(p.Kind)+" "+p.Name)
	}
	return out
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func check(t *testing.T, res *Result, w want) {
	t.Helper()
	got := want{names(res.Changed), names(res.Added), names(res.Removed), problems(res.Unsafe)}
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"changed", got.changed, orEmpty(w.changed)},
		{"added", got.added, orEmpty(w.added)},
		{"removed", got.removed, orEmpty(w.removed)},
		{"unsafe", got.unsafe, orEmpty(w.unsafe)},
	} {
		if !slices.Equal(c.got, c.want) {
			js, _ := json.MarshalIndent(res, "", "  ")
			t.Errorf("%s = %q, want %q\nresult: %s", c.what, c.got, c.want, js)
		}
	}
	if (len(res.Unsafe) == 0) != (res.Err() == nil) {
		t.Errorf("Err() = %v with %d problems", res.Err(), len(res.Unsafe))
	}
}

func TestDiffChangedConstant(t *testing.T) {
	res := diff(t, `
int compute(int x) { return x * 3 + 1; }
int other(int x) { return x - 2; }
`, `
int compute(int x) { return x * 7 + 1; }
int other(int x) { return x - 2; }
`, false)
	check(t, res, want{changed: []string{"compute"}})
	if f := res.Changed[0]; !strings.Contains(f.Reason, "code differs at") || f.Section != ".text.compute" || f.Binding != "global" {
		t.Errorf("changed function: %+v", f)
	}
}

func TestDiffChangedStringLiteral(t *testing.T) {
	// Same length, so the code bytes are identical: only the literal the
	// relocation points at differs.
	res := diff(t, `
extern int puts(const char *);
void greet(void) { puts("hello, world"); }
void other(void) { puts("unchanged"); }
`, `
extern int puts(const char *);
void greet(void) { puts("hello, fleet"); }
void other(void) { puts("unchanged"); }
`, false)
	check(t, res, want{changed: []string{"greet"}})
	if r := res.Changed[0].Reason; !strings.Contains(r, `"hello, world" -> "hello, fleet"`) {
		t.Errorf("reason %q does not name the literals", r)
	}
}

func TestDiffNewHelper(t *testing.T) {
	res := diff(t, `
int user(int x) { return (x ^ 0x55) + 1; }
`, `
static __attribute__((noinline)) int helper(int x) { return x ^ 0x55; }
int user(int x) { return helper(x) + 1; }
`, false)
	check(t, res, want{changed: []string{"user"}, added: []string{"helper"}})
	if h := res.Added[0]; !slices.Equal(h.Callers, []string{"user"}) || h.Binding != "local" {
		t.Errorf("added helper: %+v", h)
	}
}

// The kernel's own flags add ftrace call sites (__mcount_loc), return
// thunks and 16 NOPs of padding before every function
// (-fpatchable-function-entry, CALL_PADDING): none of that is a change.
func TestDiffNewHelperKernelFlags(t *testing.T) {
	res := diff(t, `
int user(int x) { return (x ^ 0x55) + 1; }
`, `
static __attribute__((noinline)) int helper(int x) { return x ^ 0x55; }
int user(int x) { return helper(x) + 1; }
`, false, "-mcmodel=kernel", "-fno-PIE", "-pg", "-mfentry", "-mrecord-mcount",
		"-mfunction-return=thunk-extern", "-fpatchable-function-entry=16,16")
	check(t, res, want{changed: []string{"user"}, added: []string{"helper"}})
}

// Literals without symbols: a switch's jump table (anonymous data that
// points back into the function) and a merged floating-point constant.
// A changed constant changes its function; the jump table of a function
// that did not change stays the same although the code around it moved.
func TestDiffAnonymousData(t *testing.T) {
	const pre = `
extern int f1(int), f2(int), f3(int), f4(int), f5(int), f6(int);
int grow(int x) { return x + 1; }
int pick(int x) {
	switch (x) {
	case 0: return f1(x); case 1: return f2(x); case 2: return f3(x); case 3: return f4(x);
	case 4: return f5(x); case 5: return f6(x); case 6: return f1(x + 1); default: return 0;
	}
}
double scale(double d) { return d * 1.2345; }
`
	post := strings.NewReplacer("x + 1;", "x * 3 + 12345;", "1.2345", "1.5").Replace(pre)
	res := diff(t, pre, post, false)
	check(t, res, want{changed: []string{"grow", "scale"}})
	if r := res.Changed[1].Reason; !strings.Contains(r, "const 8d976e1283c0f33f-4 -> const 000000000000f83f-4") {
		t.Errorf("scale: reason %q", r)
	}
}

func TestDiffChangedStaticVariable(t *testing.T) {
	res := diff(t, `
static int limit = 5;
void set_limit(int v) { limit = v; }
int get_limit(void) { return limit; }
`, `
static int limit = 7;
void set_limit(int v) { limit = v; }
int get_limit(void) { return limit; }
`, false)
	check(t, res, want{unsafe: []string{"data limit"}})
	p := res.Unsafe[0]
	if p.Section != ".data.limit" || !strings.Contains(p.Reason, "initial value differs") {
		t.Errorf("problem: %+v", p)
	}
	var ue *UnsafeError
	if err := res.Err(); !errors.As(err, &ue) || !errors.Is(err, ErrUnsafe) || len(ue.Problems) != 1 || !strings.Contains(err.Error(), "data limit") {
		t.Errorf("Err() = %v", err)
	}
}

// TestDiffNewVariable: a variable only the patched code knows (a new
// counter, a new once-flag inside a function) is listed as added data
// for the module to carry; a new init
// variable is refused.
func TestDiffNewVariable(t *testing.T) {
	res := diff(t, `
int count(int x) { return x + 1; }
`, `
int calls;
int count(int x) { static char once; if (!once) { once = 1; calls++; } return x + 1; }
`, false)
	check(t, res, want{changed: []string{"count"}})
	var got []string
	for _, v := range res.AddedData {
		got = append(got, fmt.Sprintf("%s %s %d", v.Name, v.Section, v.Size))
	}
	if want := []string{"calls .bss.calls 4", "once.0 .bss.once.0 1"}; !slices.Equal(got, want) {
		t.Errorf("added data %q, want %q", got, want)
	}

	// A new once flag beside others (a WARN_ONCE added to a function
	// that has one) is carried: the generator gives the new code a
	// fresh copy of every once flag it uses.
	const once = "#define ONCE(c) ({ static _Bool __attribute__((section(\".data.once\"))) __already_done; " +
		"int r_ = !!(c); if (r_ && !__already_done) { __already_done = 1; note(); } r_; })\nextern void note(void);\n"
	res = diff(t, once+"int other(int x) { return ONCE(x > 1); }\nint target(int x) { return ONCE(x > 5); }\n",
		once+"int other(int x) { return ONCE(x > 1); }\nint target(int x) { ONCE(x > 3); return ONCE(x > 5); }\n", false)
	// gcc renumbers the flags: other's is __already_done.1 now, which
	// other's reference pairs with the kernel's __already_done.0, so
	// other is unchanged; target refers to two flags where it had one,
	// so neither is paired, and both are target's fresh copies.
	check(t, res, want{changed: []string{"target"}})
	if got := names(res.AddedData); !slices.Equal(got, []string{"__already_done.0", "__already_done.2"}) {
		t.Errorf("added data %q, want target's two once flags", got)
	}

	// A function-local static renumbered: probe, added before bump,
	// takes count.0, and bump's count.0 becomes count.1. bump refers to
	// one count on both sides, so they are the same variable: bump is
	// unchanged, and probe's count is new, carried as the patch's own.
	res = diff(t, `
int bump(void) { static int count; return ++count; }
`, `
int bump(void) { static int count; return ++count; }
int probe(void) { static int count = 5; return count--; }
`, false)
	check(t, res, want{added: []string{"probe"}})
	if got := names(res.AddedData); !slices.Equal(got, []string{"count.0"}) {
		t.Errorf("a renumbered local static: added data %q, want probe's count.0", got)
	}

	// A new function-local static beside others of the same name in the
	// same function: which of bump's is which cannot be told by the
	// function, so the new one is refused, not guessed.
	res = diff(t, `
int bump(int x) { if (x) { static int count; return ++count; } else { static int count; return --count; } }
`, `
int bump(int x) {
	if (x > 1) { static int count = 7; return count++; }
	if (x) { static int count; return ++count; } else { static int count; return --count; }
}
`, false)
	if !slices.Contains(problems(res.Unsafe), "data count.2") || len(res.AddedData) != 0 {
		t.Errorf("an ambiguous local static: unsafe %q, added data %+v", problems(res.Unsafe), res.AddedData)
	} else if p := res.Unsafe[slices.Index(problems(res.Unsafe), "data count.2")]; !strings.Contains(p.Reason, "numbering may have shifted") {
		t.Errorf("reason %q", p.Reason)
	}

	res = diff(t, `
int count(int x) { return x + 1; }
`, `
__attribute__((section(".init.data"))) int boot_calls = 1;
int count(int x) { return x + boot_calls; }
`, false)
	check(t, res, want{changed: []string{"count"}, unsafe: []string{"init boot_calls"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "new init variable (4 bytes)") {
		t.Errorf("reason %q", r)
	}
}

const inlinePre = `
extern int consume(int);
static inline int scale(int x) { return (x << 3) ^ (x >> 2); }
int area(int w, int h) { return consume(scale(w) * h); }
int perimeter(int w) { return consume(scale(w)) + 1; }
int unrelated(int w) { return consume(w - 1); }
`

func TestDiffChangedInline(t *testing.T) {
	res := diff(t, inlinePre, strings.Replace(inlinePre, "x >> 2", "x >> 5", 1), false)
	check(t, res, want{changed: []string{"area", "perimeter"}, unsafe: []string{"inlined scale"}})
	p := res.Unsafe[0]
	if !slices.Equal(p.Callers, []string{"area", "perimeter"}) || !strings.Contains(p.Reason, "must all be patched together") {
		t.Errorf("problem: %+v", p)
	}
	if !res.DebugInfo {
		t.Error("DebugInfo false for objects built with -g")
	}
}

const helperPre = `
static __attribute__((noinline)) int helper(int x) { return x ^ 0x55; }
int user(int x) { return helper(x) + 1; }
int user2(int x) { return helper(x) * 3; }
`

// A function that stops being a function of its own, inlined into its
// callers.
func TestDiffFunctionInlinedAway(t *testing.T) {
	post := strings.Replace(helperPre, "__attribute__((noinline)) ", "", 1)
	for _, noDebug := range []bool{false, true} {
		res := diff(t, helperPre, post, noDebug)
		check(t, res, want{changed: []string{"user", "user2"}, removed: []string{"helper"}, unsafe: []string{"inlined helper"}})
		if p := res.Unsafe[0]; !slices.Equal(p.Callers, []string{"user", "user2"}) {
			t.Errorf("noDebug=%v: problem %+v", noDebug, p)
		}
		if noDebug && (res.DebugInfo || len(res.Notes) == 0) {
			t.Errorf("without -g: DebugInfo %v, notes %q", res.DebugInfo, res.Notes)
		}
	}
}

// A removed function whose callers changed is just removed when debug
// info shows it was not inlined anywhere.
func TestDiffFunctionRemoved(t *testing.T) {
	res := diff(t, helperPre, `
int user(int x) { return x + 1; }
int user2(int x) { return x * 3; }
`, false)
	check(t, res, want{changed: []string{"user", "user2"}, removed: []string{"helper"}})
}

func TestDiffIdentical(t *testing.T) {
	res := diff(t, inlinePre, inlinePre, false)
	check(t, res, want{})
	if !res.Safe() || res.Err() != nil {
		t.Errorf("identical objects unsafe: %v", res.Err())
	}
}

func TestDiffInitCode(t *testing.T) {
	const pre = `
__attribute__((section(".init.text"), noinline)) int setup(int x) { return x + 1; }
int run(int x) { return x * 2; }
`
	res := diff(t, pre, strings.Replace(pre, "x + 1", "x + 9", 1), false)
	check(t, res, want{changed: []string{"setup"}, unsafe: []string{"init setup"}})
	if p := res.Unsafe[0]; p.Section != ".init.text" {
		t.Errorf("problem %+v", p)
	}
}

// TestDiffSignature: a global function of another prototype, whose
// address a table holds, can be neither redirected nor carried beside
// the kernel's copy (TestDiffSignatureForked).
func TestDiffSignature(t *testing.T) {
	res := diff(t, `
int twice(int a) { return a * 2; }
int (*const ops)(int) = twice;
`, `
long twice(long a) { return a * 2; }
long (*const ops)(long) = twice;
`, false)
	check(t, res, want{changed: []string{"twice"}, unsafe: []string{"signature twice"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "int (int) -> long int (long int)") || !strings.Contains(r, "it is global") {
		t.Errorf("reason %q", r)
	}
}

func TestDiffUnsupportedSection(t *testing.T) {
	// An exception table entry, the way the kernel's _ASM_EXTABLE makes
	// them; the patch adds a second one.
	const pre = `
int load(int *p) {
	int v;
	asm volatile("1: movl (%1), %0\n"
		".pushsection __ex_table, \"a\"\n"
		".long 1b - .\n"
		".popsection\n" : "=r"(v) : "r"(p));
	return v;
}
`
	post := strings.Replace(pre, `".long 1b - .\n"`, `".long 1b - .\n" ".long 1b - . + 2\n"`, 1)
	res := diff(t, pre, post, false)
	check(t, res, want{unsafe: []string{"section __ex_table"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "exception table") {
		t.Errorf("reason %q", r)
	}
}

func TestDiffJSONOrder(t *testing.T) {
	res := diff(t, `
int b(int x) { return x + 1; }
int a(int x) { return x + 2; }
int c(int x) { return x + 3; }
`, `
int c(int x) { return x + 30; }
int a(int x) { return x + 20; }
int b(int x) { return x + 10; }
`, false)
	check(t, res, want{changed: []string{"a", "b", "c"}})
	js, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"changed":[`, `"added":[]`, `"removed":[]`, `"unsafe":[]`} {
		if !strings.Contains(string(js), key) {
			t.Errorf("JSON lacks %s: %s", key, js)
		}
	}
}

// TestCarryInlined: when every changed source was compiled (a patch to
// .c files only), a changed inline function is carried by patching its
// callers, which changed with it; other problems stay, and a global
// function inlined away stays refused (other objects call the kernel's
// copy of it).
func TestCarryInlined(t *testing.T) {
	res := diff(t, inlinePre, strings.Replace(inlinePre, "x >> 2", "x >> 5", 1), false)
	carried := res.CarryInlined()
	check(t, res, want{changed: []string{"area", "perimeter"}})
	if len(carried) != 1 || carried[0].Name != "scale" || !slices.Equal(carried[0].Callers, []string{"area", "perimeter"}) {
		t.Errorf("carried %+v", carried)
	}
	if !slices.Equal(problems(res.Carried), []string{"inlined scale"}) {
		t.Errorf("Carried = %q", problems(res.Carried))
	}

	// A static function inlined away: its callers carry it.
	res = diff(t, helperPre, strings.Replace(helperPre, "__attribute__((noinline)) ", "", 1), false)
	res.CarryInlined()
	check(t, res, want{changed: []string{"user", "user2"}, removed: []string{"helper"}})

	// A global one: other objects may call the kernel's copy.
	global := strings.Replace(helperPre, "static ", "", 1)
	res = diff(t, global, strings.Replace(global, "__attribute__((noinline)) ", "inline ", 1), false)
	if c := res.CarryInlined(); len(c) != 0 {
		t.Errorf("a global function inlined away was carried: %+v (result %+v)", c, res)
	}
	if !slices.Contains(problems(res.Unsafe), "inlined helper") {
		t.Errorf("a global function inlined away: unsafe %q", problems(res.Unsafe))
	}

	// Data stays refused beside a carried inline.
	withData := inlinePre + "int counter;\n"
	res = diff(t, withData, strings.Replace(strings.Replace(withData, "x >> 2", "x >> 5", 1), "int counter;", "int counter = 3;", 1), false)
	res.CarryInlined()
	if res.Safe() || !slices.Contains(problems(res.Unsafe), "data counter") {
		t.Errorf("data change no longer refused: %q", problems(res.Unsafe))
	}
}

// bugTableUnit has the shape of the kernel's WARN_ON on x86-64: a ud2
// and a 12-byte __bug_table entry (address, file, line, flags).
const bugTableUnit = `
#define WARN_FLAGS(flags) asm volatile("1: ud2\n" \
	".pushsection __bug_table,\"aw\"\n" \
	"2: .long 1b - .\n .long 0\n .word %c0\n .word %c1\n .org 2b+12\n" \
	".popsection" :: "i"(__LINE__), "i"(flags))
extern int consume(int);
int checked(int x) { if (x < 0) WARN_FLAGS(0x0900); return consume(x); }
int other(int x) { if (x > 100) WARN_FLAGS(0x0900); return consume(x + 1); }
`

// TestDiffBugTableByFunction: the kernel's bug table is compared
// function by function. A WARN added to a changed function goes with
// its code; a shift of line numbers alone changes nothing; a WARN of an
// unchanged function whose entry says something else (a WARN made a
// BUG in the table only) is refused.
func TestDiffBugTableByFunction(t *testing.T) {
	added := strings.Replace(bugTableUnit, "return consume(x); }", "if (x == 7) WARN_FLAGS(0x0900); return consume(x); }", 1)
	res := diff(t, bugTableUnit, added, false)
	check(t, res, want{changed: []string{"checked"}})

	shifted := strings.Replace(bugTableUnit, "extern int consume(int);", "extern int consume(int);\n\n\n", 1)
	res = diff(t, bugTableUnit, shifted, false)
	check(t, res, want{})

	flags := strings.Replace(bugTableUnit, "if (x > 100) WARN_FLAGS(0x0900)", "if (x > 100) WARN_FLAGS(0x0800)", 1)
	res = diff(t, bugTableUnit, flags, false)
	check(t, res, want{unsafe: []string{"section __bug_table"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "BUG/WARN entries of function other changed") {
		t.Errorf("reason %q", r)
	}
}

// TestDiffIgnoresLockPrefixTable: .smp_locks lists the LOCK prefixes
// of the code, one entry per atomic instruction; a patch that adds one,
// or moves the code, changes the table but nothing a livepatch carries
// (the module keeps every LOCK prefix, right on any number of CPUs).
func TestDiffIgnoresLockPrefixTable(t *testing.T) {
	const src = `
#define LOCKED_INC(p) asm volatile(".pushsection .smp_locks,\"a\"\n.balign 4\n.long 671f - .\n.popsection\n671: lock incl %0" : "+m"(*(p)))
int counter;
void bump(void) { LOCKED_INC(&counter); }
void other(void) { LOCKED_INC(&counter); }
`
	res := diff(t, src, strings.Replace(src, "void bump(void) { LOCKED_INC(&counter); }", "void bump(void) { LOCKED_INC(&counter); LOCKED_INC(&counter); }", 1), false)
	check(t, res, want{changed: []string{"bump"}})
}

// TestDiffJumpTableByFunction: static-key jump entries are compared by
// function like the bug table: a tracepoint added to a changed function
// goes with its code, and an unchanged function whose entries stayed the
// same is not reported however the table moved.
func TestDiffJumpTableByFunction(t *testing.T) {
	const src = `
extern int key;
extern void hit(void);
#define JUMP(label) asm goto("1: .byte 0x0f,0x1f,0x44,0,0\n.pushsection __jump_table,\"aw\"\n.balign 8\n.long 1b - .\n.long %l[" #label "] - .\n.quad key - .\n.popsection" :::: label)
void traced(int a) { JUMP(yes); hit(); return; yes: hit(); hit(); }
void other(int a) { JUMP(yes); return; yes: hit(); }
`
	post := strings.Replace(src, "void traced(int a) { JUMP(yes); hit(); return;", "void traced(int a) { JUMP(yes); JUMP(yes); hit(); return;", 1)
	res := diff(t, src, post, false)
	check(t, res, want{changed: []string{"traced"}})
}

// TestDiffDataLayout: a member added to a struct (as a header change
// adds it in every unit that includes the header) is refused as a data
// layout change, naming the type and the member, while a change that
// leaves every layout alone is not.
func TestDiffDataLayout(t *testing.T) {
	const code = `
struct conn { int id; %s long bytes; };
union val { int i; %s };
long account(struct conn *c, long n) { c->bytes += n; return c->bytes; }
int get(union val *v) { return v->i; }
`
	res := diff(t, fmt.Sprintf(code, "", ""), fmt.Sprintf(code, "long flags;", "char c[16];"), false)
	check(t, res, want{changed: []string{"account"}, unsafe: []string{"data struct conn", "data union val"}})
	for _, p := range res.Unsafe {
		if !strings.Contains(p.Reason, "data layout changed") {
			t.Errorf("%s: reason %q", p.Name, p.Reason)
		}
	}
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "size 16 -> 24") {
		t.Errorf("struct conn: reason %q, want the size", r)
	}
	if r := res.Unsafe[1].Reason; !strings.Contains(r, "size 4 -> 16") {
		t.Errorf("union val: reason %q, want the size", r)
	}
	// Same size, a member moved: the member is named.
	res = diff(t, "struct p { int a; int b; };\nint f(struct p *p) { return p->a; }\n",
		"struct p { int b; int a; };\nint f(struct p *p) { return p->a; }\n", false)
	check(t, res, want{changed: []string{"f"}, unsafe: []string{"data struct p"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "member a at 0: int -> b at 0: int") {
		t.Errorf("struct p: reason %q", r)
	}
	// A code change beside an unchanged struct.
	res = diff(t, "struct p { int a; };\nint f(struct p *p) { return p->a; }\n",
		"struct p { int a; };\nint f(struct p *p) { return p->a + 1; }\n", false)
	check(t, res, want{changed: []string{"f"}})
}

// uniqueIDs defines the kernel's __UNIQUE_ID (include/linux/compiler.h)
// and module_init's __ADDRESSABLE(init_module) in .init.data.
const uniqueIDs = `
#define PASTE2(a, b) a##b
#define PASTE(a, b) PASTE2(a, b)
#define __UNIQUE_ID(p) PASTE(__UNIQUE_ID_, PASTE(p, __COUNTER__))
__attribute__((section(".init.text"), noinline)) int init_module(void) { return 0; }
`

func TestDiffRenumberedUniqueIDIsTheSame(t *testing.T) {
	const tail = `
static void *__attribute__((used, section(".init.data"))) __UNIQUE_ID(__addressable_init_module) = (void *)&init_module;
static int __attribute__((used)) __UNIQUE_ID(limit_) = 5;
`
	pre := uniqueIDs + "int run(int x) { return x * 2; }\n" + tail
	// The fix uses __COUNTER__ once more, before both: each is
	// renumbered, and neither changed.
	post := uniqueIDs + "enum { PASTE(fix_, __COUNTER__) = 3 };\nint run(int x) { return x * 3; }\n" + tail
	res := diff(t, pre, post, false)
	check(t, res, want{changed: []string{"run"}})
	if len(res.AddedData) != 0 {
		t.Errorf("added data %v: a renumbered variable is not new", names(res.AddedData))
	}
}

func TestDiffRenumberedUniqueIDChanged(t *testing.T) {
	pre := uniqueIDs + `static int __attribute__((used)) __UNIQUE_ID(limit_) = 5;`
	post := uniqueIDs + "enum { PASTE(fix_, __COUNTER__) = 3 };\n" + `static int __attribute__((used)) __UNIQUE_ID(limit_) = 6;`
	res := diff(t, pre, post, false)
	// Its name in the kernel: the change is to that variable.
	check(t, res, want{unsafe: []string{"data __UNIQUE_ID_limit_0"}})
	if p := res.Unsafe[0]; !strings.Contains(p.Reason, "initial value differs") {
		t.Errorf("problem %+v", p)
	}
	if len(res.AddedData) != 0 {
		t.Errorf("added data %v: a changed variable under a new number is not new", names(res.AddedData))
	}
}

// btfIDs defines a BTF_ID slot the way include/linux/btf_ids.h does: a
// local 4-byte object of .BTF_ids named with __COUNTER__, filled in by
// the kernel's link.
const btfIDs = `
#define PASTE2(a, b) a##b
#define PASTE(a, b) PASTE2(a, b)
#define STR2(x) #x
#define STR(x) STR2(x)
#define BTF_SLOT(sym) asm(".pushsection .BTF_ids,\"a\"\n.local " STR(sym) "\n.type " STR(sym) ", STT_OBJECT\n" \
	".size " STR(sym) ", 4\n" STR(sym) ":\n.zero 4\n.popsection"); extern unsigned int sym[]
`

// A fix that uses __COUNTER__ once more renumbers the BTF_ID slot an
// ops table points at: the same slot, not a change of the table.
func TestDiffRenumberedBTFIDIsTheSame(t *testing.T) {
	const tail = `
BTF_SLOT(@ID@);
struct ops { int (*run)(int); unsigned int *btf_id; };
int run(int x);
const struct ops bloom_ops = { run, @ID@ };
`
	pre := btfIDs + "int run(int x) { return x * 2; }\n" + strings.ReplaceAll(tail, "@ID@", "__BTF_ID__struct__bloom__7")
	post := btfIDs + "int run(int x) { return x * 3; }\n" + strings.ReplaceAll(tail, "@ID@", "__BTF_ID__struct__bloom__9")
	res := diff(t, pre, post, false)
	check(t, res, want{changed: []string{"run"}})
	// Two slots of the stem after the fix, one before: not matched.
	post = btfIDs + "int run(int x) { return x * 3; }\nBTF_SLOT(__BTF_ID__struct__bloom__8);\n" + strings.ReplaceAll(tail, "@ID@", "__BTF_ID__struct__bloom__9")
	res = diff(t, pre, post, false)
	check(t, res, want{changed: []string{"run"}, unsafe: []string{"section .BTF_ids", "data bloom_ops"}})
}

func TestUniqueStem(t *testing.T) {
	for _, tt := range []struct {
		name, stem string
		n          int
		ok         bool
	}{
		{"__UNIQUE_ID___addressable_init_module676", "__UNIQUE_ID___addressable_init_module", 676, true},
		{"__UNIQUE_ID_ddebug676.12", "__UNIQUE_ID_ddebug.", 676, true},
		{"__UNIQUE_ID_676", "", 0, false},
		{"__UNIQUE_ID_license", "", 0, false},
		{"count.0", "", 0, false},
		{"__BTF_ID__struct__bpf_bloom_filter__313206", "__BTF_ID__struct__bpf_bloom_filter__", 313206, true},
		{"__BTF_ID__313206", "", 0, false},
	} {
		stem, n, ok := uniqueStem(tt.name)
		if stem != tt.stem || n != tt.n || ok != tt.ok {
			t.Errorf("uniqueStem(%q) = %q, %d, %t; want %q, %d, %t", tt.name, stem, n, ok, tt.stem, tt.n, tt.ok)
		}
	}
}

// initInline is a helper inlined into a function that runs later and
// into init code; the fix changes the helper.
const initInline = `
extern int consume(int);
extern void note(int);
static inline int helper(int x) { return (x << 3) ^ (x >> 2); }
int run(int x) { return consume(helper(x) * 3); }
__attribute__((section(".init.text"), noinline)) int setup(int x) { note(x); return consume(helper(x)); }
`

// TestDiffInitInlinedCopyLeftOut: init code whose change is only its
// copy of a helper the bundle replaces in run is left out for vmlinux,
// and refused for a module.
func TestDiffInitInlinedCopyLeftOut(t *testing.T) {
	res := diff(t, initInline, strings.Replace(initInline, "x >> 2", "x >> 5", 1), false)
	check(t, res, want{changed: []string{"run", "setup"}, unsafe: []string{"inlined helper", "init setup"}})
	if p := res.Unsafe[1]; !slices.Equal(p.Inlined, []string{"helper"}) || !strings.Contains(p.Reason, "only its inlined copies of helper") {
		t.Fatalf("init problem %+v", p)
	}
	module := *res
	module.Unsafe = slices.Clone(res.Unsafe)
	module.CarryInlined()
	if len(module.Unsafe) != 1 || module.Unsafe[0].Name != "setup" {
		t.Errorf("a module's changed init is refused; unsafe %v", problems(module.Unsafe))
	}

	left := res.LeaveOutInit()
	res.CarryInlined()
	check(t, res, want{changed: []string{"run"}})
	if len(left) != 1 || left[0].Name != "setup" || len(res.Carried) != 1 || !slices.Equal(res.Carried[0].Callers, []string{"run"}) {
		t.Errorf("left out %v, carried %+v", problems(left), res.Carried)
	}
}

// TestDiffInitOwnChangeRefused: init code that calls something new
// beside its copy of the changed helper changes what init does, and
// stays refused for vmlinux too.
func TestDiffInitOwnChangeRefused(t *testing.T) {
	post := strings.Replace(strings.Replace(initInline, "x >> 2", "x >> 5", 1), "note(x);", "note(x); note(x + 1);", 1)
	res := diff(t, initInline, post, false)
	if left := res.LeaveOutInit(); len(left) != 0 {
		t.Fatalf("left out %v", problems(left))
	}
	res.CarryInlined()
	check(t, res, want{changed: []string{"run", "setup"}, unsafe: []string{"init setup"}})
	if p := res.Unsafe[0]; !strings.Contains(p.Reason, "refers to other things than before") {
		t.Errorf("init problem %+v", p)
	}
}

// TestDiffInitCopyOfReplacedFunctionLeftOut: a global function, kept
// out of line and also inlined into init code, changes: for vmlinux the
// init copy is left out with the inline problem, and the function
// itself is replaced.
func TestDiffInitCopyOfReplacedFunctionLeftOut(t *testing.T) {
	const pre = `
extern int consume(int);
int helper(int x) { return (x << 3) ^ (x >> 2); }
__attribute__((section(".init.text"), noinline)) int setup(int x) { return consume(helper(x)); }
`
	res := diff(t, pre, strings.Replace(pre, "x >> 2", "x >> 5", 1), false)
	check(t, res, want{changed: []string{"helper", "setup"}, unsafe: []string{"inlined helper", "init setup"}})
	left := res.LeaveOutInit()
	res.CarryInlined()
	check(t, res, want{changed: []string{"helper"}})
	if got := problems(left); !slices.Equal(got, []string{"init setup", "inlined helper"}) {
		t.Errorf("left out %q", got)
	}
}

// TestDiffInitAliasLeftOut: module_init's init_module is an alias of the
// init function; DWARF names the inlined copies under one name only, and
// both names are judged alike.
func TestDiffInitAliasLeftOut(t *testing.T) {
	pre := initInline + `int init_module(int) __attribute__((alias("setup")));` + "\n"
	res := diff(t, pre, strings.Replace(pre, "x >> 2", "x >> 5", 1), false)
	check(t, res, want{changed: []string{"init_module", "run", "setup"}, unsafe: []string{"inlined helper", "init init_module", "init setup"}})
	left := res.LeaveOutInit()
	res.CarryInlined()
	check(t, res, want{changed: []string{"run"}})
	if got := problems(left); !slices.Equal(got, []string{"init init_module", "init setup"}) {
		t.Errorf("left out %q", got)
	}
}

// TestDiffNewCodeRefersToRenumberedUniqueID: the patch module would look
// the variable up under its new number, which the kernel does not have.
func TestDiffNewCodeRefersToRenumberedUniqueID(t *testing.T) {
	pre := uniqueIDs + `static int __attribute__((used)) __UNIQUE_ID(limit_) = 5;
int run(int x) { return x * __UNIQUE_ID_limit_0; }
`
	post := uniqueIDs + `enum { PASTE(fix_, __COUNTER__) = 3 };
static int __attribute__((used)) __UNIQUE_ID(limit_) = 5;
int run(int x) { return x * 3 * __UNIQUE_ID_limit_1; }
`
	res := diff(t, pre, post, false)
	check(t, res, want{changed: []string{"run"}, unsafe: []string{"data run"}})
	if p := res.Unsafe[0]; !strings.Contains(p.Reason, "refers to __UNIQUE_ID_limit_1, the kernel's __UNIQUE_ID_limit_0") {
		t.Errorf("problem %+v", p)
	}
	// Unchanged code that refers to it under the new number is the same.
	same := strings.Replace(post, "x * 3 *", "x *", 1)
	check(t, diff(t, pre, same, false), want{})
}

// A lock class key (a zero-size static each spin_lock_init makes when
// lockdep is off) renumbered by a new one before it: the init function
// that refers to it is unchanged, not refused as changed init code.
func TestDiffRenumberedLockKey(t *testing.T) {
	const key = "struct lock_class_key { };\nextern void reg(void *k);\n#define LOCK_INIT() ({ static struct lock_class_key __key; reg(&__key); })\n"
	res := diff(t, key+`
__attribute__((section(".init.text"))) int setup(void) { LOCK_INIT(); return 0; }
`, key+`
__attribute__((section(".init.text"))) int setup(void) { LOCK_INIT(); return 0; }
int later(void) { LOCK_INIT(); return 1; }
`, false)
	check(t, res, want{added: []string{"later"}})
}

// A changed function that refers to a renumbered static would find
// another variable, or none, under the new name: it is refused.
func TestDiffChangedCodeUsesRenumberedStatic(t *testing.T) {
	res := diff(t, `
int bump(void) { static int count; return ++count; }
`, `
int bump(void) { static int count; return count += 2; }
int probe(void) { static int count = 5; return count--; }
`, false)
	i := slices.Index(problems(res.Unsafe), "data bump")
	if i < 0 {
		t.Fatalf("unsafe %q, want bump refused", problems(res.Unsafe))
	}
	if r := res.Unsafe[i].Reason; !strings.Contains(r, "the kernel's count.0 under another number") {
		t.Errorf("reason %q", r)
	}
}

// Two lock class keys in one function, both renumbered: empty, they
// pair in order, and the function is unchanged. Two counters would not.
func TestDiffRenumberedLockKeysInOrder(t *testing.T) {
	const key = "struct lock_class_key { };\nextern void reg(void *k, int n);\n#define LOCK_INIT(n) ({ static struct lock_class_key __key; reg(&__key, n); })\n"
	res := diff(t, key+`
int setup(void) { LOCK_INIT(1); LOCK_INIT(2); return 0; }
`, key+`
int setup(void) { LOCK_INIT(1); LOCK_INIT(2); return 0; }
int later(void) { LOCK_INIT(3); return 1; }
`, false)
	check(t, res, want{added: []string{"later"}})

	const count = "extern void reg(void *k, int n);\n#define COUNT(n) ({ static int __count; reg(&__count, n); })\n"
	res = diff(t, count+`
int setup(void) { COUNT(1); COUNT(2); return 0; }
`, count+`
int setup(void) { COUNT(1); COUNT(2); return 0; }
int later(void) { COUNT(3); return 1; }
`, false)
	if len(res.Unsafe) == 0 && len(res.Changed) == 0 {
		t.Errorf("two renumbered counters of one function paired by order: changed %v, unsafe %q", names(res.Changed), problems(res.Unsafe))
	}
}

// An error message's text, a function-local constant, renumbered or new
// beside others of its name: it holds no state, so the changed function
// carries its own copies instead of being refused.
func TestDiffRenumberedConstantCopied(t *testing.T) {
	const msg = "extern void report(const char *m);\n#define ERR(m) ({ static const char __msg[] = m; report(__msg); })\n"
	res := diff(t, msg+`
int check(int x) { if (x) ERR("bad x"); return x; }
`, msg+`
int check(int x) { if (x > 1) ERR("too big"); if (x) ERR("bad x"); return x; }
int probe(void) { ERR("probe"); return 0; }
`, false)
	check(t, res, want{changed: []string{"check"}, added: []string{"probe"}})
	if len(res.AddedData) != 3 {
		t.Errorf("added data %q, want the three messages the new code uses", names(res.AddedData))
	}
}
