package objdiff

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// diffWith is diff with Options.
func diffWith(t *testing.T, pre, post string, opts Options, extra ...string) *Result {
	t.Helper()
	res, err := DiffWith("pre.o", compile(t, "pre", pre, false, extra...), "post.o", compile(t, "post", post, false, extra...), opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// changedNamed returns the changed function name of res.
func changedNamed(t *testing.T, res *Result, name string) Function {
	t.Helper()
	i := slices.IndexFunc(res.Changed, func(f Function) bool { return f.Name == name })
	if i < 0 {
		t.Fatalf("%s not among the changed functions %q", name, names(res.Changed))
	}
	return res.Changed[i]
}

// libUnit is a file of lib/ as 6.1 builds it, without -pg: its global
// scan (like ucs2_strnlen or xas_split_alloc) is called from other
// files; %[1]s is what the fix changes, %[2]s more code.
const libUnit = `
extern int sink(int);
__attribute__((noinline)) int scan(int a) { return sink(a * 3 + %[1]s); }
%[2]s
`

// TestDiffUnredirectableForked: a changed global function of a file
// built without ftrace cannot be redirected; only a kernel object says
// so (Options.Kernel), and then the bundle carries it as a new function,
// with a note that every other object's callers must be replaced.
func TestDiffUnredirectableForked(t *testing.T) {
	pre, post := fmt.Sprintf(libUnit, "1", ""), fmt.Sprintf(libUnit, "2", "")
	res := diffWith(t, pre, post, Options{Kernel: true})
	check(t, res, want{changed: []string{"scan"}})
	scan := changedNamed(t, res, "scan")
	if !scan.Forked || !scan.Unredirectable || scan.Private || scan.Exposed != "" {
		t.Errorf("scan: Forked %v, Unredirectable %v, Private %v, Exposed %q; want forked as unredirectable", scan.Forked, scan.Unredirectable, scan.Private, scan.Exposed)
	}
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "scan cannot be redirected") || !strings.Contains(res.Notes[0], "every other object's callers must be too") {
		t.Errorf("notes %q, want the new function and its callers", res.Notes)
	}
	// Compiled without the kernel's flags, nothing says it cannot be
	// redirected: a test object, not a notrace file.
	res = diffWith(t, pre, post, Options{})
	if scan := changedNamed(t, res, "scan"); scan.Forked || scan.Unredirectable {
		t.Errorf("without Options.Kernel: Forked %v, Unredirectable %v; want neither", scan.Forked, scan.Unredirectable)
	}
}

// TestDiffUnredirectableRefused: a caller in the same file is built
// without ftrace too, so it cannot be replaced; a table that holds the
// function's address would reach the kernel's copy; a static function
// no other object can call is not forked this way (Private covers it).
func TestDiffUnredirectableRefused(t *testing.T) {
	for _, c := range []struct{ more, why string }{
		{"int wrap(int x) { return scan(x) + sink(0); }", "wrap calls it and is not replaced by the patch"},
		{"int (*const hook)(int) = scan;", "hook refers to it from .rodata.hook: its address is taken"},
	} {
		res := diffWith(t, fmt.Sprintf(libUnit, "1", c.more), fmt.Sprintf(libUnit, "2", c.more), Options{Kernel: true})
		scan := changedNamed(t, res, "scan")
		if scan.Forked || scan.Unredirectable || !strings.Contains(scan.Exposed, "cannot be carried as a new function beside the kernel's copy") ||
			!strings.Contains(scan.Exposed, c.why) {
			t.Errorf("%s: Forked %v, Unredirectable %v, Exposed %q; want refused for %q", c.more, scan.Forked, scan.Unredirectable, scan.Exposed, c.why)
		}
	}
	res := diffWith(t, "extern int sink(int);\nstatic __attribute__((noinline)) int scan(int a) { return sink(a + 1); }\nint use(int x) { return scan(x) * 2; }\n",
		"extern int sink(int);\nstatic __attribute__((noinline)) int scan(int a) { return sink(a + 2); }\nint use(int x) { return scan(x) * 2; }\n", Options{Kernel: true})
	if scan := changedNamed(t, res, "scan"); scan.Unredirectable {
		t.Errorf("a static function: Unredirectable; want it left to Private")
	}
}

// TestDiffUnredirectableNotrace: a notrace global function of a file
// built with ftrace (selinux's avc_has_perm_noaudit, declared inline)
// brings its unchanged caller of the same file, which is replaced, and
// is then forked.
func TestDiffUnredirectableNotrace(t *testing.T) {
	const unit = `
extern int sink(int);
__attribute__((noinline, no_instrument_function)) int scan(int a) { return sink(a * 3 + %[1]s); }
int check(int x) { return scan(x) + sink(x); }
`
	res := diffWith(t, fmt.Sprintf(unit, "1"), fmt.Sprintf(unit, "2"), Options{Kernel: true}, "-pg", "-mfentry")
	check(t, res, want{changed: []string{"check", "scan"}})
	if scan := changedNamed(t, res, "scan"); !scan.Forked || !scan.Unredirectable {
		t.Errorf("scan: Forked %v, Unredirectable %v; want forked", scan.Forked, scan.Unredirectable)
	}
	if chk := changedNamed(t, res, "check"); chk.Forked || !strings.Contains(chk.Reason, "calls scan, which changed and cannot be redirected") {
		t.Errorf("check: Forked %v, reason %q; want replaced for its call", chk.Forked, chk.Reason)
	}
}

// TestDiffCallersOf: another object's functions that call a function
// the bundle forks are taken as changed, though their code is the same,
// and only they; init code is left calling the kernel's copy, and
// CallsFromReplaced says so, as it does of a table, unless it is
// vmlinux's, which ran and was freed.
func TestDiffCallersOf(t *testing.T) {
	const unit = `
extern int scan(int);
extern int sink(int);
int use(int x) { return scan(x) + 1; }
int other(int x) { return sink(x * 3); }
%s
`
	for _, c := range []struct{ more, why string }{
		{"", ""},
		{"__attribute__((section(\".init.text\"))) int boot(int x) { return scan(x + 5) * 2 + sink(0); }", "boot calls it and is not replaced by the patch"},
		{"int (*const hook)(int) = scan;", "hook refers to it from .rodata.hook: its address is taken"},
	} {
		src := fmt.Sprintf(unit, c.more)
		res := diffWith(t, src, src, Options{Kernel: true, CallersOf: []string{"scan"}}, "-pg", "-mfentry")
		check(t, res, want{changed: []string{"use"}})
		if use := changedNamed(t, res, "use"); !strings.Contains(use.Reason, "refers to scan, which the bundle carries as a new function") {
			t.Errorf("%s: use replaced for %q", c.more, use.Reason)
		}
		if why := res.CallsFromReplaced("scan"); (c.why == "") != (why == "") || !strings.Contains(why, c.why) {
			t.Errorf("%s: CallsFromReplaced %q, want %q", c.more, why, c.why)
		}
	}
	// In vmlinux, init code ran at boot and was freed: its call reaches
	// nothing (Options.InitRan); memory hotplug keeps .meminit.text.
	boot := fmt.Sprintf(unit, "__attribute__((section(\".init.text\"))) int boot(int x) { return scan(x + 5) * 2 + sink(0); }")
	if why := diffWith(t, boot, boot, Options{Kernel: true, CallersOf: []string{"scan"}, InitRan: true}, "-pg", "-mfentry").CallsFromReplaced("scan"); why != "" {
		t.Errorf("vmlinux's init code: CallsFromReplaced %q, want none", why)
	}
	hotplug := strings.ReplaceAll(boot, ".init.text", ".meminit.text")
	if why := diffWith(t, hotplug, hotplug, Options{Kernel: true, CallersOf: []string{"scan"}, InitRan: true}, "-pg", "-mfentry").CallsFromReplaced("scan"); !strings.Contains(why, "boot calls it and is not replaced") {
		t.Errorf(".meminit.text: CallsFromReplaced %q, want the call left in place", why)
	}
	// Without CallersOf, the same unit changes nothing.
	src := fmt.Sprintf(unit, "")
	if res := diffWith(t, src, src, Options{Kernel: true}, "-pg", "-mfentry"); len(res.Changed) != 0 || res.CallsFromReplaced("scan") == "" {
		t.Errorf("without CallersOf: changed %q, CallsFromReplaced %q; want nothing changed and the call not replaced", names(res.Changed), res.CallsFromReplaced("scan"))
	}
}
