package ksrc

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// condMacros stand for a kernel without lockdep, with a module option
// and a string option, as its autoconf.h says.
var condMacros = autoconfMacros([]byte(`/* Automatically generated file; DO NOT EDIT. */
#define CONFIG_LOCKDEP_SUPPORT 1
#define CONFIG_NET 1
#define CONFIG_DEMO_DRIVER_MODULE 1
#define CONFIG_DEFAULT_HOSTNAME "(none)"
`))

func TestEvalCond(t *testing.T) {
	for cond, want := range map[string]tri{
		"defined(CONFIG_NET)":            yes,
		"defined CONFIG_LOCKDEP":         no,
		"!defined(CONFIG_LOCKDEP)":       yes,
		"IS_ENABLED(CONFIG_DEMO_DRIVER)": yes,
		"IS_BUILTIN(CONFIG_DEMO_DRIVER)": no,
		"IS_MODULE(CONFIG_DEMO_DRIVER)":  yes,
		"CONFIG_NET":                     yes,
		"CONFIG_LOCKDEP":                 no,
		"! CONFIG_LOCKDEP":               yes,
		"CONFIG_DEFAULT_HOSTNAME":        unknown, // a value, not a boolean
		"0":                              no,
		"defined(CONFIG_NET) && defined(CONFIG_LOCKDEP)": unknown,
		"__GNUC__ >= 12":         unknown,
		"defined(_LINUX_DEMO_H)": unknown,
	} {
		if got := evalCond(cond, condMacros); got != want {
			t.Errorf("evalCond(%q) = %v, want %v", cond, got, want)
		}
	}
}

// condText has a guard (unknown), a lockdep-only group with a nested
// group, an #else, an #elif chain, a group of an unknown condition, and
// a comment that quotes a directive.
const condText = `#ifndef _DEMO_H
#define _DEMO_H
#ifdef CONFIG_LOCKDEP
struct held { int a; };
#ifdef CONFIG_NET
int nested;
#endif
#else
struct held { };
#endif
#if IS_ENABLED(CONFIG_LOCKDEP)
int one;
#elif defined(CONFIG_NET)
int two;
#else
int three;
#endif
#if FOO > 1
int four;
#else
int five;
#endif
/*
#ifdef CONFIG_LOCKDEP
*/
int six;
#endif
`

func TestCondLines(t *testing.T) {
	off, known := condLines([]byte(condText), condMacros)
	lineOf := func(text string) int {
		for i, l := range strings.Split(condText, "\n") {
			if l == text {
				return i + 1
			}
		}
		t.Fatalf("%q is not a line", text)
		return 0
	}
	var wantOff []int
	for _, l := range []string{"struct held { int a; };", "#ifdef CONFIG_NET", "int nested;", "int three;"} {
		wantOff = append(wantOff, lineOf(l))
	}
	wantOff = append(wantOff, lineOf("int one;"), 7) // the nested #endif
	slices.Sort(wantOff)
	if d := cmp.Diff(wantOff, slices.Sorted(maps.Keys(off))); d != "" {
		t.Errorf("skipped lines (-want +got):\n%s", d)
	}
	for _, l := range []int{3, 8, 10, 11, 13, 15, 17} {
		if !known[l] {
			t.Errorf("line %d is a conditional whose outcome is known", l)
		}
	}
	for _, l := range []int{1, 18, 20, 22, lineOf("int six;"), lineOf("int four;"), lineOf("int five;"), lineOf("int two;")} {
		if known[l] || off[l] {
			t.Errorf("line %d: known %v, skipped %v; want read and not judged", l, known[l], off[l])
		}
	}
	if off, known := condLines([]byte(condText), nil); len(off)+len(known) != 0 {
		t.Errorf("without the configuration's macros nothing is judged: %v %v", off, known)
	}
	if off, _ := condLines([]byte("#endif\nint x;\n#ifdef CONFIG_LOCKDEP\nint y;\n"), condMacros); len(off) != 0 {
		t.Errorf("an unbalanced text is judged: %v", off)
	}
}

// lockdepBase is shaped like include/linux/lockdep.h: a struct that
// exists only with lockdep, and an annotation defined either way.
const lockdepBase = `#ifndef _DEMO_LOCKDEP_H
#define _DEMO_LOCKDEP_H
#ifdef CONFIG_LOCKDEP
struct held_lock {
	unsigned int check:1;
	unsigned int references:12;
};
#endif

struct lock_shared {
	int count;
#ifdef CONFIG_LOCKDEP
	int depth;
#endif
};

#define lock_annotate(x) do { } while (0)
#endif
`

// TestChangedDefsConfiguration: under a configuration without lockdep,
// a change inside #ifdef CONFIG_LOCKDEP changes nothing (Debian's
// held_lock change, which refused its unit as reaching 24,841 units);
// a new #ifdef/#else group names only the branch the kernel reads (the
// lock_set_cmp_fn annotation); a struct whose skipped member changes is
// still changed (it is read); with lockdep, or without the macros, the
// change counts as before.
func TestChangedDefsConfiguration(t *testing.T) {
	member := [2]string{"\tunsigned int references:12;\n", "\tunsigned int sync:1;\n\tunsigned int references:11;\n"}
	before, after, fp := patchText(t, lockdepBase, member[0], member[1])
	names, why := changedDefs(before, after, fp, condMacros)
	if why != "" || len(names) != 0 {
		t.Errorf("a change lockdep alone compiles: names %q, why %q; want none", names, why)
	}
	withLockdep := maps.Clone(condMacros)
	withLockdep["CONFIG_LOCKDEP"] = "1"
	if names, why := changedDefs(before, after, fp, withLockdep); why != "" || !slices.Equal(names, []string{"held_lock"}) {
		t.Errorf("with lockdep: names %q, why %q; want held_lock", names, why)
	}

	group := "#ifdef CONFIG_PROVE_LOCKING\nvoid lockdep_set_cmp(int);\n#define lock_set_cmp_fn(l) lockdep_set_cmp(l)\n#else\n#define lock_set_cmp_fn(l) do { } while (0)\n#endif\n"
	before, after, fp = patchText(t, lockdepBase, "#define lock_annotate", group+"#define lock_annotate")
	if names, why := changedDefs(before, after, fp, condMacros); why != "" || !slices.Equal(names, []string{"lock_set_cmp_fn"}) {
		t.Errorf("a new group: names %q, why %q; want the #else branch's lock_set_cmp_fn", names, why)
	}
	if _, why := changedDefs(before, after, fp, nil); why == "" {
		t.Error("without the macros, a new conditional must stop the narrowing")
	}

	before, after, fp = patchText(t, lockdepBase, "\tint depth;\n", "\tlong depth;\n")
	if names, why := changedDefs(before, after, fp, condMacros); why != "" || !slices.Contains(names, "lock_shared") {
		t.Errorf("a skipped member of a read struct: names %q, why %q; want lock_shared", names, why)
	}
}
