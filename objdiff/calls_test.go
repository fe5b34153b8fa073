package objdiff

import (
	"fmt"
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
	const unit = `
static __attribute__((noipa)) int lookup(%s a) { return a / 4; }
int one(int x) { return lookup(x); }
`
	res := diff(t, fmt.Sprintf(unit, "int"), fmt.Sprintf(unit, "unsigned int"), false)
	check(t, res, want{changed: []string{"lookup"}, unsafe: []string{"signature lookup"}})
	if r := res.Unsafe[0].Reason; !strings.Contains(r, "prototype int (int) -> int (unsigned int)") || !strings.Contains(r, "one jumps to it and is not replaced") {
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
