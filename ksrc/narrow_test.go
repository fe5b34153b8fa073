package ksrc

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// hdrBase is a small header with one of each kind of definition.
const hdrBase = `/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_DEMO_H
#define _LINUX_DEMO_H

#include <linux/types.h>

#define DEMO_MAX(a, b) \
	((a) > (b) ? \
	 (a) : (b))

/* A comment about demo_base. */
typedef unsigned int demo_base_t;
typedef demo_base_t demo_id_t;

struct demo_port {
	demo_id_t id;
	int flags; /* what it does */
};

enum demo_state {
	DEMO_IDLE,
	DEMO_BUSY = 4,
};

extern int demo_count __read_mostly;

static inline int demo_hop(const struct demo_port *p)
{
	int h = p->flags;

	return h + 1;
}

static inline int demo_other(void)
{
	return 2;
}

DECLARE_PER_CPU(int, demo_pcpu);

#endif
`

// patchHeader makes a patch of hdrBase with diff -u from the edit.
func patchHeader(t *testing.T, from, to string) (before, after []byte, fp *FilePatch) {
	t.Helper()
	return patchText(t, hdrBase, from, to)
}

func patchText(t *testing.T, base, from, to string) (before, after []byte, fp *FilePatch) {
	t.Helper()
	if !strings.Contains(base, from) {
		t.Fatalf("%q is not in the header", from)
	}
	edited := strings.Replace(base, from, to, 1)
	dir := testutil.TempTree(t, map[string]string{"a/demo.h": base, "b/demo.h": edited})
	out, err := exec.Command("diff", "-u", "--label", "a/include/linux/demo.h", "--label", "b/include/linux/demo.h",
		filepath.Join(dir, "a/demo.h"), filepath.Join(dir, "b/demo.h")).Output()
	if len(out) == 0 {
		t.Fatalf("diff: %v", err)
	}
	p := mustParse(t, string(out))
	return []byte(base), []byte(edited), p.File("include/linux/demo.h")
}

func TestChangedDefs(t *testing.T) {
	for _, tt := range []struct {
		name, from, to string
		want           []string
	}{
		{"function body", "int h = p->flags;", "int h = p->flags * 2;", []string{"demo_hop"}},
		{"struct member", "\tint flags; /* what it does */", "\tlong flags; /* what it does */",
			[]string{"demo_hop", "demo_port"}},
		{"macro continuation line", "((a) > (b) ?", "((a) >= (b) ?", []string{"DEMO_MAX"}},
		{"enum", "DEMO_BUSY = 4,", "DEMO_BUSY = 5,", []string{"DEMO_BUSY", "DEMO_IDLE", "demo_state"}},
		// demo_id_t is defined from demo_base_t, demo_port from
		// demo_id_t, demo_hop reads demo_port: the fixpoint.
		{"typedef chain", "typedef unsigned int demo_base_t;", "typedef unsigned long demo_base_t;",
			[]string{"demo_base_t", "demo_hop", "demo_id_t", "demo_port"}},
		{"variable", "extern int demo_count __read_mostly;", "extern long demo_count __read_mostly;", []string{"demo_count"}},
		// A helper the patch adds is used only by what changed with it:
		// an unchanged unit cannot have called it, so only demo_hop
		// counts; a struct the patch adds likewise.
		{"new helper", "\treturn h + 1;\n}\n", "\treturn demo_twice(h);\n}\n\nstatic inline int demo_twice(int x)\n{\n\treturn 2 * x;\n}\n",
			[]string{"demo_hop"}},
		{"new struct", "enum demo_state {", "struct demo_pair {\n\tint a, b;\n};\n\nenum demo_state {", nil},
		// A new macro rewrites every token of its name, wherever it is.
		{"new macro", "typedef unsigned int demo_base_t;", "#define DEMO_NEW 3\ntypedef unsigned int demo_base_t;", []string{"DEMO_NEW"}},
		// A new function named as a member the header already had
		// (flags) is not new: the name is sought, and so is what
		// mentions it.
		{"new name the header mentioned", "\treturn h + 1;\n}\n", "\treturn h + 1;\n}\n\nstatic inline int flags(void)\n{\n\treturn 1;\n}\n",
			[]string{"demo_hop", "demo_port", "flags"}},
		{"comment only", "/* A comment about demo_base. */", "/* A comment about demo_base_t. */", nil},
		// The lines below it move: __LINE__ in demo_other, which only
		// ever prints, does not make it a change.
		{"blank line added", "\treturn 2;\n", "\n\treturn 2;\n", nil},
		{"blank line at the end", "#endif\n", "\n#endif\n", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, after, fp := patchHeader(t, tt.from, tt.to)
			names, why := changedDefs(before, after, fp, nil)
			if why != "" {
				t.Fatalf("changedDefs did not narrow: %s", why)
			}
			if diff := cmp.Diff(tt.want, names); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
		})
	}
}

// TestChangedDefsLineShift: a hunk that adds a line moves __LINE__ in
// every function below it; that alone changes only the line numbers
// printed, and names none of them.
func TestChangedDefsLineShift(t *testing.T) {
	before, after, fp := patchHeader(t, "\tint flags; /* what it does */\n", "\tint flags; /* what it does */\n\tint more;\n")
	names, why := changedDefs(before, after, fp, nil)
	if why != "" {
		t.Fatal(why)
	}
	if diff := cmp.Diff([]string{"demo_hop", "demo_port"}, names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

// TestChangedDefsFallsBack: a change the scanner cannot attribute to a
// definition it can name leaves every reader in.
func TestChangedDefsFallsBack(t *testing.T) {
	for _, tt := range []struct {
		name, from, to, why string
	}{
		{"include", "#include <linux/types.h>", "#include <linux/kernel.h>", "an #include line"},
		{"if", "#ifndef _LINUX_DEMO_H", "#if !defined(_LINUX_DEMO_H)", "a conditional"},
		{"undef", "DECLARE_PER_CPU", "#undef DEMO_MAX\nDECLARE_PER_CPU", "an #undef line"},
		{"macro invocation", "DECLARE_PER_CPU(int, demo_pcpu);", "DECLARE_PER_CPU(long, demo_pcpu);", "macro invocation"},
		// Every object that reads them carries them, used or not.
		{"top-level asm", "extern int demo_count __read_mostly;", "asm(\".pushsection .demo\\n.popsection\");",
			"line 25 after the patch is in a macro invocation, a top-level asm"},
		{"used variable", "extern int demo_count __read_mostly;", "static int demo_count __used = 1;",
			"line 25 after the patch is in a macro invocation, a top-level asm or used definition"},
		{"a comment left open", "/* A comment about demo_base. */", "/* A comment about demo_base.", "the text after the patch: c scanner: line 18: unbalanced }"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, after, fp := patchHeader(t, tt.from, tt.to)
			names, why := changedDefs(before, after, fp, nil)
			if !strings.Contains(why, tt.why) {
				t.Errorf("changedDefs = %q, %q; want a fallback saying %q", names, why, tt.why)
			}
		})
	}
}

// TestChangedDefsRestReadsOtherwise: a changed comment line that leaves
// a comment open hides the definitions below it, on no changed line.
func TestChangedDefsRestReadsOtherwise(t *testing.T) {
	base := "/* one */\nint a;\nint b; /* two */\nint c;\n"
	before, after, fp := patchText(t, base, "/* one */", "/* one")
	if names, why := changedDefs(before, after, fp, nil); !strings.Contains(why, "how the rest of the header reads") {
		t.Errorf("changedDefs = %q, %q; want a fallback", names, why)
	}
}

// TestChangedDefsInvocationMentions: a macro invocation that mentions a
// changed definition may define anything from it.
func TestChangedDefsInvocationMentions(t *testing.T) {
	base := strings.Replace(hdrBase, "DECLARE_PER_CPU(int, demo_pcpu);", "DECLARE_PER_CPU(struct demo_port, demo_pcpu);", 1)
	before, after, fp := patchText(t, base, "\tint flags; /* what it does */", "\tlong flags; /* what it does */")
	if names, why := changedDefs(before, after, fp, nil); !strings.Contains(why, "a macro invocation (or a top-level asm or used definition) at line 39 mentions a changed definition") {
		t.Errorf("changedDefs = %q, %q; want a fallback for the invocation", names, why)
	}
}

func TestScanHeaderItems(t *testing.T) {
	src := `struct __attribute__((packed)) tagged { int a; };
struct tagged t1, *t2;
typedef int (*demo_fn)(int);
void __printf(1, 2) demo_log(const char *fmt, ...);
static const char demo_str[] = "a /* not a comment */ b";
union { struct inner { int x; } in; enum { IN_A, IN_B } e; } demo_u;
_Static_assert(sizeof(int) == 4, "int");
`
	sc, err := scanHeader([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for _, it := range sc.items {
		got = append(got, it.names)
	}
	want := [][]string{{"tagged"}, {"t1", "t2"}, {"demo_fn"}, {"demo_log"}, {"demo_str"},
		{"IN_A", "IN_B", "demo_u", "inner"}, nil}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func TestMentions(t *testing.T) {
	for _, tt := range []struct {
		text string
		want bool
	}{
		{"int x = demo_hop(p);\n", true},
		{"int x = demo_hopper(p);\n", false},
		{"/* demo_hop */ int x;\n// demo_hop\n", false},
		{`asm("call demo_hop");`, true},
		{"#define CALL(p) p##_hop(p)\n", true},               // a piece that ends demo_hop
		{"#define CALL(hop, p) demo_##hop(p)\n", true},       // one that begins it
		{"#define CAT(demo, b) demo##b\n", false},            // demo is a parameter, not a piece
		{"#define HOPS(p) p##_hops\n", false},                // demo_hop does not end in _hops
		{"#define P(p, q) p##op##q\n", true},                 // demo_h, op and nothing
		{"#define M(s) (x)->s##_hop + (y).s##_hop\n", false}, // members, not demo_hop
		{"#define U(p) u##p\n", false},
		{"#define I(s) demo_##s##_iterate\n", false}, // demo_hop does not end in _iterate
		{"#define J(s) de##s##op\n", true},
		{"#define K demo_##hop\n", true}, // pieces of an object-like macro are all literal                       // demo_hop does not begin with u
		// A generator the file #undefs after its invocations makes
		// exactly their names (asm/io.h's BUILDIO: inb_p, outw, ...).
		{"#define GEN(x) de##x(void);\nGEN(mo_hip)\nGEN(mo_hap)\n#undef GEN\n", false},
		{"#define GEN(x) de##x(void);\nGEN(mo_hip)\nGEN(mo_hop)\n#undef GEN\n", true},
		{"#define GEN(x, y) de##x##y(void);\nGEN(mo_, hop)\n#undef GEN\n", true},
		{"#define GEN(x, y) de##x##y(void);\nGEN(mo_h, )\nGEN(mo_, hip)\n#undef GEN\n", false},
		{"#define GEN(x, y) de##x##y(void);\nGEN(mo_h, )\nGEN(, mo_hop)\n#undef GEN\n", true},
		// Not #undef'd, invoked by another macro, with an argument of
		// several tokens, or variadic: any argument may make it.
		{"#define GEN(x) de##x(void);\nGEN(mo_hip)\n", true},
		{"#define GEN(x) de##x(void);\n#define TWICE(x) GEN(x)\nGEN(mo_hip)\n#undef GEN\n", true},
		{"#define GEN(x) de##x(void);\nGEN(mo_hip + 1)\n#undef GEN\n", true},
		{"#define GEN(x...) de##x(void);\nGEN(mo_hip)\n#undef GEN\n", true},
		{"#define GEN(x) de##x(void);\nGEN(mo_hip)\n#include \"gen_list.h\"\n#undef GEN\n", true}, // the list may hold mo_hop
	} {
		if got := mentions([]byte(tt.text), []string{"demo_hop"}); got != tt.want {
			t.Errorf("mentions(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
}

// TestUsersOf: of the units that read the changed header, those kept
// mention a changed name, or a name another header makes from one
// (however deep), or include a header whose use of one the scanner
// cannot follow; one that merely includes the header is dropped.
func TestUsersOf(t *testing.T) {
	tree := map[string]string{
		"include/linux/demo.h":           hdrBase,
		"include/linux/user.h":           "#include <linux/demo.h>\nstatic inline int user(struct demo_port *p) { return demo_hop(p); }\n",
		"include/linux/mid.h":            "#include <linux/user.h>\n#define MID(p) user(p)\n",
		"include/linux/other.h":          "#include <linux/demo.h>\n/* demo_hop */\n",
		"include/linux/paste.h":          "#include <linux/demo.h>\n#define HOP(p) demo_##p(0)\n",
		"include/linux/compiler_types.h": "#define __force\n",
		"drivers/a/direct.c":             "#include <linux/demo.h>\nint f(void) { return demo_hop(0); }\n",
		"drivers/a/deep.c":               "#include <linux/mid.h>\nint g(void) { return MID(0); }\n",
		"drivers/a/deepunused.c":         "#include <linux/mid.h>\nint g(void) { return 0; }\n",
		"drivers/a/plain.c":              "#include <linux/demo.h>\nint h(void) { return demo_other(); }\n",
		"drivers/a/comment.c":            "#include <linux/other.h>\n",
		"drivers/a/paste.c":              "#include <linux/paste.h>\n",
		"drivers/a/local.c":              "#include \"local.h\"\nint l(void) { return L(0); }\n",
		"drivers/a/local.h":              "#include <linux/demo.h>\n#define L demo_hop\n",
	}
	root := testutil.TempTree(t, tree)
	g, err := scanIncludes(root, "x86")
	if err != nil {
		t.Fatal(err)
	}
	readers, _, err := g.includers([]string{"include/linux/demo.h"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	kept, derived, err := g.usersOf(root, readers, map[string][]string{"include/linux/demo.h": {"demo_hop"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"drivers/a/deep.c", "drivers/a/direct.c", "drivers/a/local.c", "drivers/a/paste.c"}, kept); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	if derived != 3 { // user, MID, L
		t.Errorf("derived = %d, want 3", derived)
	}
}

// TestUsersOfSecondSide: another changed header that mentions a
// changed name only after the patch (its second side) is scanned for
// that side alone, and its readers are kept.
func TestUsersOfSecondSide(t *testing.T) {
	before := "#include <linux/demo.h>\nstatic inline int two(void) { return 0; }\n"
	after := "#include <linux/demo.h>\nstatic inline int two(void) { return demo_hop(0); }\n"
	root := testutil.TempTree(t, map[string]string{
		"include/linux/demo.h": hdrBase,
		"include/linux/two.h":  before,
		"drivers/a/two.c":      "#include <linux/two.h>\nint t(void) { return two(); }\n",
		"drivers/a/plain.c":    "#include <linux/demo.h>\nint h(void) { return demo_other(); }\n",
	})
	g, err := scanIncludes(root, "x86")
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string][][]byte{"include/linux/two.h": {[]byte(before), []byte(after)}}
	kept, _, err := g.usersOf(root, []string{"drivers/a/plain.c", "drivers/a/two.c"}, map[string][]string{"include/linux/demo.h": {"demo_hop"}}, texts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"drivers/a/two.c"}, kept); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
}

// TestUsersOfTooManyNames: a change that names more definitions than
// usersOf searches for keeps every reader, without searching.
func TestUsersOfTooManyNames(t *testing.T) {
	root := testutil.TempTree(t, map[string]string{
		"include/linux/demo.h": hdrBase,
		"drivers/a/plain.c":    "#include <linux/demo.h>\nint h(void) { return 0; }\n",
	})
	g, err := scanIncludes(root, "x86")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := 0; i <= maxChangedNames; i++ {
		names = append(names, fmt.Sprintf("demo_name_%d", i))
	}
	kept, _, err := g.usersOf(root, []string{"drivers/a/plain.c"}, map[string][]string{"include/linux/demo.h": names}, nil)
	if err != nil || !slices.Equal(kept, []string{"drivers/a/plain.c"}) {
		t.Errorf("kept %q, %v; want every reader", kept, err)
	}
}

// TestUsersOfForcedHeader: a forced header (-include compiler_types.h)
// whose use of a changed name the scanner cannot follow reaches every
// unit.
func TestUsersOfForcedHeader(t *testing.T) {
	root := testutil.TempTree(t, map[string]string{
		"include/linux/demo.h":           hdrBase,
		"include/linux/compiler_types.h": "#define __force\nDECLARE_THING(demo_hop);\n",
		"drivers/a/plain.c":              "#include <linux/demo.h>\nint h(void) { return demo_other(); }\n",
		"drivers/a/other.c":              "#include <linux/demo.h>\n",
	})
	g, err := scanIncludes(root, "x86")
	if err != nil {
		t.Fatal(err)
	}
	kept, _, err := g.usersOf(root, []string{"drivers/a/other.c", "drivers/a/plain.c"}, map[string][]string{"include/linux/demo.h": {"demo_hop"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"drivers/a/other.c", "drivers/a/plain.c"}, kept); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
}

// TestCompileNarrowsBeforeTheBound: a header more files include than
// the bound gets past it when few use what the patch changes (here none:
// nothing to patch, found before kbuild is run; the tree has none), and
// is refused, naming the definitions, when too many do.
func TestCompileNarrowsBeforeTheBound(t *testing.T) {
	const hdr = "struct wide_a {\n\tint x;\n};\n\nstruct wide_b {\n\tint y;\n};\n"
	files := map[string]string{"include/linux/wide.h": hdr}
	for i := 0; i <= maxIncludeClosure; i++ {
		files[fmt.Sprintf("drivers/d%d/f.c", i)] = "#include <linux/wide.h>\nint f(struct wide_b *b) { return b->y; }\n"
	}
	tree := &Tree{Source: testutil.TempTree(t, files), ObjDir: t.TempDir(), maxHeaderUnits: DefaultMaxHeaderUnits}
	var log strings.Builder
	_, err := tree.Compile(t.Context(), mustParse(t, "--- a/include/linux/wide.h\n+++ b/include/linux/wide.h\n@@ -1,3 +1,3 @@\n struct wide_a {\n-\tint x;\n+\tlong x;\n };\n"), &log)
	if !errors.Is(err, ErrHeaderUnused) {
		t.Fatalf("Compile = %v, want ErrHeaderUnused", err)
	}
	if want := fmt.Sprintf("include/linux/wide.h: %d units read it; 0 use wide_a (the changed definitions)", maxIncludeClosure+1); !strings.Contains(log.String(), want) {
		t.Errorf("log %q does not say %q", log.String(), want)
	}
	_, err = tree.Compile(t.Context(), mustParse(t, "--- a/include/linux/wide.h\n+++ b/include/linux/wide.h\n@@ -5,3 +5,3 @@\n struct wide_b {\n-\tint y;\n+\tlong y;\n };\n"), nil)
	var he *HeaderError
	if !errors.As(err, &he) || he.Users != maxIncludeClosure+1 {
		t.Fatalf("Compile = %v, want a HeaderError counting %d users", err, maxIncludeClosure+1)
	}
	if want := fmt.Sprintf("%d units of the tree use what the patch changes in it (wide_b, ", maxIncludeClosure+1); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}
