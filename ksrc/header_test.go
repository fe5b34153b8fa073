package ksrc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// includeTree is a small tree with the ways a kernel file reaches a
// header: <...> through include/ and the architecture, a generated
// <asm/x.h> wrapper of asm-generic, "x.h" beside the file, "../x.h",
// "x.h" through a folder's -I flag, a .c file #included by another, and
// files that must not count (another architecture, tools, a macro).
var includeTree = map[string]string{
	"include/linux/foo.h":         "#pragma once\nstatic inline int foo(void) { return 1; }\n",
	"include/linux/bar.h":         "  #  include <linux/foo.h>\n",
	"include/linux/unrelated.h":   "#include <linux/types.h>\n",
	"include/asm-generic/thing.h": "#include <linux/bar.h>\n",
	"fs/a/a.c":                    "#include <linux/bar.h>\nint a;\n",
	"fs/a/gen.c":                  "#include <asm/thing.h>\n",
	"fs/a/macro.c":                "#include TRACE_INCLUDE(foo)\n",
	"fs/a/none.c":                 "#include <linux/unrelated.h>\n",
	"fs/b/priv.h":                 "int priv;\n",
	"fs/b/wrap.h":                 "#include \"priv.h\"\n",
	"fs/b/b.c":                    "#include \"priv.h\"\n",
	"fs/c/c.c":                    "#include \"../b/wrap.h\"\n",
	"drivers/x/x.c":               "#include \"priv.h\"\n",
	"fs/d/inc.c":                  "#include <linux/foo.h>\n",
	"fs/d/main.c":                 "#include \"inc.c\"\n",
	"arch/arm64/kernel/y.c":       "#include <linux/foo.h>\n",
	"arch/x86/kernel/z.c":         "#include <linux/foo.h>\n",
	"tools/t.c":                   "#include <linux/foo.h>\n",
}

func TestIncluders(t *testing.T) {
	g, err := scanIncludes(testutil.TempTree(t, includeTree), "x86")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		headers       []string
		units, beside []string
	}{
		{[]string{"include/linux/foo.h"},
			[]string{"arch/x86/kernel/z.c", "fs/a/a.c", "fs/a/gen.c", "fs/d/inc.c", "fs/d/main.c"}, nil},
		// drivers/x/x.c has no priv.h beside it: it may reach fs/b's
		// through an -I flag, so it is a candidate that kbuild settles.
		// wrap.h finds priv.h beside itself: a build with the changed
		// priv.h needs a copy of wrap.h beside the copy.
		{[]string{"fs/b/priv.h"}, []string{"drivers/x/x.c", "fs/b/b.c", "fs/c/c.c"}, []string{"fs/b/wrap.h"}},
		{[]string{"include/linux/unrelated.h"}, []string{"fs/a/none.c"}, nil},
	} {
		units, beside, err := g.includers(tt.headers, 100)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.units, units); diff != "" {
			t.Errorf("%s: units (-want +got):\n%s", tt.headers, diff)
		}
		if diff := cmp.Diff(tt.beside, beside); diff != "" {
			t.Errorf("%s: beside (-want +got):\n%s", tt.headers, diff)
		}
	}
	if _, _, err := g.includers([]string{"include/linux/foo.h"}, 3); err == nil || !strings.Contains(err.Error(), "more than 3 files") {
		t.Errorf("includers beyond the bound = %v", err)
	}
}

// TestCompileRefusesAWideHeader: a header that more files include than
// the bound is refused before kbuild is run (the tree has no kbuild).
func TestCompileRefusesAWideHeader(t *testing.T) {
	files := map[string]string{"include/linux/wide.h": "struct wide {\n\tint a;\n};\n"}
	for i := 0; i <= maxIncludeClosure; i++ {
		files[fmt.Sprintf("drivers/d%d/f.c", i)] = "#include <linux/wide.h>\nint f(struct wide *w) { return w->a; }\n"
	}
	tree := &Tree{Source: testutil.TempTree(t, files), ObjDir: t.TempDir(), maxHeaderUnits: DefaultMaxHeaderUnits}
	_, err := tree.Compile(t.Context(), mustParse(t, "--- a/include/linux/wide.h\n+++ b/include/linux/wide.h\n@@ -1,3 +1,4 @@\n struct wide {\n+\tlong b;\n \tint a;\n };\n"), nil)
	var he *HeaderError
	if !errors.As(err, &he) || !errors.Is(err, ErrHeaderTooWide) {
		t.Fatalf("Compile = %v, want a HeaderError", err)
	}
	if !strings.Contains(err.Error(), "include/linux/wide.h") || !strings.Contains(err.Error(), fmt.Sprintf("more than %d ", maxIncludeClosure)) {
		t.Errorf("error %q does not name the header and the bound", err)
	}
	// The member the hunk adds is named as what no livepatch carries.
	if !strings.Contains(err.Error(), "the patch changes the members of struct wide: a data layout change") {
		t.Errorf("error %q does not name the layout change", err)
	}
	he = &HeaderError{Headers: []string{"include/net/route.h"}, Units: 612, Limit: 64}
	if !strings.Contains(he.Error(), "612 units the configuration builds include it, more than the limit of 64") {
		t.Errorf("HeaderError = %q", he)
	}
}

func TestDepsNames(t *testing.T) {
	cmd := `cmd_fs/proc/base.o := gcc -c -o fs/proc/base.o /src/fs/proc/base.c

source_fs/proc/base.o := /src/fs/proc/base.c

deps_fs/proc/base.o := \
  /src/include/linux/compiler-version.h \
    $(wildcard include/config/CC_VERSION_TEXT) \
  /src/fs/proc/../proc/internal.h \
  include/generated/autoconf.h \
  /src/include/linux/bar.h \

fs/proc/base.o: $(deps_fs/proc/base.o)

$(deps_fs/proc/base.o):
  /src/include/linux/late.h \
`
	got := depsNames([]byte(cmd), "fs/proc/base.o", "/src", []string{"include/linux/bar.h", "fs/proc/internal.h", "include/linux/late.h", "include/linux/nope.h"})
	if diff := cmp.Diff([]string{"fs/proc/internal.h", "include/linux/bar.h"}, got); diff != "" {
		t.Errorf("depsNames (-want +got):\n%s", diff)
	}
	if got := depsNames([]byte(cmd), "fs/proc/other.o", "/src", []string{"include/linux/bar.h"}); len(got) != 0 {
		t.Errorf("depsNames of another target = %q", got)
	}
}

// TestUnitCommandOverlay: the after side of a header patch finds the
// changed headers first, for every -I folder of the tree that holds one
// and for a header forced in with -include; folders outside the tree and
// folders without a changed header keep their place alone.
func TestUnitCommandOverlay(t *testing.T) {
	work := t.TempDir()
	for _, f := range []string{"b/include/linux/foo.h", "b/drivers/x/priv.h", "b/include/linux/kconfig.h", "b/drivers/y/sec.h"} {
		if err := os.MkdirAll(filepath.Join(work, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := filepath.Join(work, "b")
	r := recorded{source: "/src/drivers/x/x.c", argv: []string{
		"gcc", "-Wp,-MMD,drivers/x/.x.o.d", "-I/src/arch/x86/include", "-I./arch/x86/include/generated", "-I/src/include",
		"-I./include", "-include", "/src/include/linux/kconfig.h", "-include", "/src/include/linux/compiler_types.h",
		"-I", "/src/drivers/x", "-c", "-o", "drivers/x/x.o", "/src/drivers/x/x.c"}}
	argv, err := unitCommand(r, b+"/drivers/x/x.c", work+"/post/drivers/x/x.o", b, "/src/drivers/x", "/src", true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"gcc", "-iquote", "/src/drivers/x", "-fmacro-prefix-map=" + b + "/=", "-fdebug-prefix-map=" + b + "/=/src/",
		"-I/src/arch/x86/include", "-I./arch/x86/include/generated", "-I" + b + "/include", "-I/src/include",
		"-I./include", "-include", b + "/include/linux/kconfig.h", "-include", "/src/include/linux/compiler_types.h",
		"-I", b + "/drivers/x", "-I", "/src/drivers/x", "-c", "-o", work + "/post/drivers/x/x.o", b + "/drivers/x/x.c"}
	if diff := cmp.Diff(want, argv); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
	// A changed header of another folder: its siblings stay reachable
	// from the patched copy by a quote include.
	argv, err = unitCommand(r, b+"/drivers/x/x.c", work+"/post/drivers/x/x.o", b, "/src/drivers/x", "/src", true,
		"drivers/y.h", "drivers/z.h", "drivers/x/local.h")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"gcc", "-iquote", "/src/drivers/x", "-iquote", "/src/drivers", "-fmacro-prefix-map=" + b + "/="}; !slices.Equal(argv[:len(want)], want) {
		t.Errorf("argv starts %q, want %q", argv[:len(want)], want)
	}
	// A changed header of another folder that the unit reads by a quote
	// include through -I (security/selinux/ss/services.c reads
	// "security.h" of security/selinux/include): its patched copy comes
	// before its original folder on the quote path, which gcc searches
	// before the -I folders.
	argv, err = unitCommand(r, b+"/drivers/x/x.c", work+"/post/drivers/x/x.o", b, "/src/drivers/x", "/src", true,
		"drivers/y/sec.h")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"gcc", "-iquote", "/src/drivers/x", "-iquote", b + "/drivers/y", "-iquote", "/src/drivers/y", "-fmacro-prefix-map=" + b + "/="}; !slices.Equal(argv[:len(want)], want) {
		t.Errorf("argv starts %q, want %q", argv[:len(want)], want)
	}
	// The before side, or a patch without headers: nothing added.
	argv, err = unitCommand(r, b+"/drivers/x/x.c", work+"/pre/drivers/x/x.o", b, "/src/drivers/x", "/src", false, "drivers/y.h")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(argv[5:], " "), b) && !strings.HasSuffix(strings.Join(argv, " "), b+"/drivers/x/x.c") {
		t.Errorf("argv without overlay names the overlay: %q", argv)
	}
	for _, a := range argv[5 : len(argv)-1] {
		if strings.Contains(a, b) {
			t.Errorf("argv without overlay names the overlay in %q", a)
		}
	}
}
