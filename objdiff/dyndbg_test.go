package objdiff

import (
	"strings"
	"testing"
)

// dyndbgUnit models pr_debug as Linux 6.1 emits it with
// CONFIG_DYNAMIC_DEBUG and CONFIG_JUMP_LABEL on x86-64: a function-local
// struct _ddebug __UNIQUE_ID_ddebugN in __dyndbg (module, function, file
// and format pointers, lineno:18, class_id:6, flags:8, a static key), a
// jump entry naming the descriptor's key, and a call that passes the
// descriptor.
const dyndbgUnit = `
#define PASTE2(a, b) a##b
#define PASTE(a, b) PASTE2(a, b)
#define __UNIQUE_ID(p) PASTE(__UNIQUE_ID_, PASTE(p, __COUNTER__))
struct static_key { int enabled; union { unsigned long type; void *entries; }; };
struct _ddebug {
	const char *modname, *function, *filename, *format;
	unsigned int lineno:18, class_id:6, flags:8;
	union { struct static_key dd_key_false; } key;
} __attribute__((aligned(8)));
extern void __dynamic_pr_debug(struct _ddebug *, const char *, ...);
static inline __attribute__((always_inline)) int dd_branch(void *key)
{
	asm goto("1: .byte 0x0f,0x1f,0x44,0,0\n.pushsection __jump_table,\"aw\"\n.balign 8\n"
		".long 1b - .\n.long %l[yes] - .\n.quad %c0 - .\n.popsection" :: "i"(key) :: yes);
	return 0;
yes:
	return 1;
}
#define pr_debug_id(id, fmt, ...) do { \
	static struct _ddebug __attribute__((aligned(8), section("__dyndbg"))) id = \
		{ "mymod", __func__, "fs/mymod/unit.c", fmt, __LINE__, 63, 0, { { 0, { 1 } } } }; \
	if (dd_branch(&id.key)) __dynamic_pr_debug(&id, fmt, ##__VA_ARGS__); \
} while (0)
#define pr_debug(fmt, ...) pr_debug_id(__UNIQUE_ID(ddebug), fmt, ##__VA_ARGS__)
extern int consume(int);
int fixed(int x)
{
	pr_debug("fixed %d\n", x);
	return consume(x);
}
int other(int x)
{
	pr_debug("other %d\n", x);
	return consume(x + 1);
}
`

// TestDiffDyndbgLineMoved: a fix above an unchanged function's pr_debug
// moves its line; the descriptor says nothing else new, so only the
// fixed function changed.
func TestDiffDyndbgLineMoved(t *testing.T) {
	post := strings.Replace(dyndbgUnit, "\treturn consume(x);\n}", "\tif (x < 0)\n\t\tx = 0;\n\n\treturn consume(x);\n}", 1)
	res := diff(t, dyndbgUnit, post, false)
	check(t, res, want{changed: []string{"fixed"}})
}

// TestDiffDyndbgInChangedFunction: a pr_debug added to a changed
// function (renumbering the descriptor of the function after it) goes
// with its code, and the unchanged function keeps its own descriptor.
// (The new copy of the inline branch helper lives only in the changed
// function, which create carries: CarryInlined.)
func TestDiffDyndbgInChangedFunction(t *testing.T) {
	post := strings.Replace(dyndbgUnit, "\treturn consume(x);\n}", "\tpr_debug(\"fixed again %d\\n\", x);\n\treturn consume(x);\n}", 1)
	res := diff(t, dyndbgUnit, post, false)
	res.CarryInlined()
	check(t, res, want{changed: []string{"fixed"}})
	if len(res.AddedData) != 0 {
		t.Errorf("added data %v: a descriptor goes with its function, it is not a new variable", names(res.AddedData))
	}
}

// TestDiffDyndbgFormatChangedInUnchangedFunction: the format of an
// unchanged function's pr_debug changed, which only its descriptor says
// (the call passes the descriptor's format): refused, since the kernel
// keeps its descriptor for the code it keeps.
func TestDiffDyndbgFormatChangedInUnchangedFunction(t *testing.T) {
	pre := strings.Replace(dyndbgUnit, `__dynamic_pr_debug(&id, fmt, ##__VA_ARGS__)`, `__dynamic_pr_debug(&id, "", ##__VA_ARGS__)`, 1)
	post := strings.Replace(pre, `pr_debug("other %d\n", x)`, `pr_debug("other: %d\n", x)`, 1)
	res := diff(t, pre, post, false)
	check(t, res, want{unsafe: []string{"section __dyndbg"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "descriptor __UNIQUE_ID_ddebug") || !strings.Contains(r, "of function other changed") {
		t.Errorf("reason %q", r)
	}
}
