package objdiff

import (
	"slices"
	"testing"
)

// exportMacro writes an export as Linux 6.1's include/linux/export.h
// does on x86-64: the name and namespace in __ksymtab_strings and a
// relative entry in a section of its own, ___ksymtab_gpl+NAME.
const exportMacro = `
#define EXPORT_SYMBOL_GPL(sym) \
	extern typeof(sym) sym; \
	asm("	.section \"__ksymtab_strings\",\"aMS\",%progbits,1\n" \
	    "__kstrtab_" #sym ":\n	.asciz \"" #sym "\"\n" \
	    "__kstrtabns_" #sym ":\n	.asciz \"\"\n	.previous\n"); \
	asm("	.section \"___ksymtab_gpl+" #sym "\", \"a\"\n	.balign 4\n" \
	    "__ksymtab_" #sym ":\n	.long " #sym "- .\n" \
	    "	.long __kstrtab_" #sym "- .\n	.long __kstrtabns_" #sym "- .\n	.previous\n")
`

// A new exported function (mlx4_core's mlx4_put_qp in Debian's 6.1.190
// update) adds its own export entry and strings: no unpatched code
// knows the name, so that is not refused; Result.AddedExports names it.
func TestDiffNewExportedFunction(t *testing.T) {
	res := diff(t, exportMacro+`
int old_api(int x) { return x + 1; }
EXPORT_SYMBOL_GPL(old_api);
`, exportMacro+`
int new_api(int x) { return x * 3; }
EXPORT_SYMBOL_GPL(new_api);
int old_api(int x) { return x + 1; }
EXPORT_SYMBOL_GPL(old_api);
`, false)
	check(t, res, want{added: []string{"new_api"}})
	if !slices.Equal(res.AddedExports, []string{"new_api"}) {
		t.Errorf("AddedExports = %q, want [new_api]", res.AddedExports)
	}
}

// An export entry for a function the kernel already has changes what
// other modules bind to: still refused.
func TestDiffNewExportOfOldFunction(t *testing.T) {
	res := diff(t, exportMacro+`
int old_api(int x) { return x + 1; }
`, exportMacro+`
int old_api(int x) { return x + 1; }
EXPORT_SYMBOL_GPL(old_api);
`, false)
	check(t, res, want{unsafe: []string{"section ___ksymtab_gpl+old_api", "section __ksymtab_strings"}})
	if len(res.AddedExports) != 0 {
		t.Errorf("AddedExports = %q, want none", res.AddedExports)
	}
}

// A renamed exported function (rcu_momentary_dyntick_idle, which
// Debian's 6.1.190 update renames rcu_momentary_eqs) loses its export
// entry and strings with it: the running kernel keeps both, so that is
// not refused; Result.RemovedExports names it, and the new name is an
// added export.
func TestDiffRenamedExportedFunction(t *testing.T) {
	res := diff(t, exportMacro+`
extern int sink(int);
__attribute__((noinline)) int old_name(int x) { return sink(x + 1); }
EXPORT_SYMBOL_GPL(old_name);
int user(int x) { return old_name(x) * 2; }
`, exportMacro+`
extern int sink(int);
__attribute__((noinline)) int new_name(int x) { return sink(x + 1); }
EXPORT_SYMBOL_GPL(new_name);
int user(int x) { return new_name(x) * 2; }
`, false)
	check(t, res, want{changed: []string{"user"}, added: []string{"new_name"}, removed: []string{"old_name"}})
	if !slices.Equal(res.RemovedExports, []string{"old_name"}) || !slices.Equal(res.AddedExports, []string{"new_name"}) {
		t.Errorf("RemovedExports = %q, AddedExports = %q; want [old_name] and [new_name]", res.RemovedExports, res.AddedExports)
	}
}

// An export removed from a function the patch keeps changes what other
// modules can bind to: still refused.
func TestDiffRemovedExportOfKeptFunction(t *testing.T) {
	res := diff(t, exportMacro+`
int api(int x) { return x + 1; }
EXPORT_SYMBOL_GPL(api);
`, exportMacro+`
int api(int x) { return x + 1; }
`, false)
	check(t, res, want{unsafe: []string{"section ___ksymtab_gpl+api", "section __ksymtab_strings"}})
	if len(res.RemovedExports) != 0 {
		t.Errorf("RemovedExports = %q, want none", res.RemovedExports)
	}
}
