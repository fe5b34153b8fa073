package ksrc

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// cmdFile is a shortened .cmd file as kbuild 6.1 writes it for an
// out-of-tree object folder.
const cmdFile = `cmd_fs/proc/cmdline.o := gcc-12 -Wp,-MMD,fs/proc/.cmdline.o.d -nostdinc -I/src/arch/x86/include -I./arch/x86/include/generated -include /src/include/linux/kconfig.h -D__KERNEL__ -fmacro-prefix-map=/src/= -O2 -g -ffunction-sections -fdata-sections -I /src/fs/proc -I ./fs/proc    -DKBUILD_MODFILE='"fs/proc/proc"' -DKBUILD_BASENAME='"cmdline"' -DKBUILD_MODNAME='"proc"' -D__KBUILD_MODNAME=kmod_proc -DHASH='"a$$b"' -c -o fs/proc/cmdline.o /src/fs/proc/cmdline.c   ; ./tools/objtool/objtool --hacks=jump_label --orc   fs/proc/cmdline.o

source_fs/proc/cmdline.o := /src/fs/proc/cmdline.c

deps_fs/proc/cmdline.o := \
  include/linux/compiler-version.h \

fs/proc/cmdline.o: $(deps_fs/proc/cmdline.o)

$(deps_fs/proc/cmdline.o):
`

func TestParseCmdFile(t *testing.T) {
	r, err := parseCmdFile([]byte(cmdFile), "fs/proc/cmdline.o")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"gcc-12", "-Wp,-MMD,fs/proc/.cmdline.o.d", "-nostdinc", "-I/src/arch/x86/include", "-I./arch/x86/include/generated",
		"-include", "/src/include/linux/kconfig.h", "-D__KERNEL__", "-fmacro-prefix-map=/src/=", "-O2", "-g",
		"-ffunction-sections", "-fdata-sections", "-I", "/src/fs/proc", "-I", "./fs/proc",
		`-DKBUILD_MODFILE="fs/proc/proc"`, `-DKBUILD_BASENAME="cmdline"`, `-DKBUILD_MODNAME="proc"`, "-D__KBUILD_MODNAME=kmod_proc",
		`-DHASH="a$b"`, "-c", "-o", "fs/proc/cmdline.o", "/src/fs/proc/cmdline.c"}
	if diff := cmp.Diff(want, r.argv); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
	if r.source != "/src/fs/proc/cmdline.c" || r.after != "; ./tools/objtool/objtool --hacks=jump_label --orc   fs/proc/cmdline.o" {
		t.Errorf("source %q, after %q", r.source, r.after)
	}

	// Linux 6.3 and later name the variable savedcmd_.
	saved := strings.Replace(cmdFile, "cmd_fs/proc/cmdline.o :=", "savedcmd_fs/proc/cmdline.o :=", 1)
	if r2, err := parseCmdFile([]byte(saved), "fs/proc/cmdline.o"); err != nil || !cmp.Equal(r2.argv, r.argv) {
		t.Errorf("savedcmd_: %v", err)
	}
	if _, err := parseCmdFile([]byte(cmdFile), "fs/proc/other.o"); err == nil {
		t.Error("parseCmdFile found a command for another target")
	}
	withVar := strings.Replace(cmdFile, "-O2", "$(KBUILD_CFLAGS)", 1)
	if _, err := parseCmdFile([]byte(withVar), "fs/proc/cmdline.o"); err == nil || !strings.Contains(err.Error(), "make variables") {
		t.Errorf("parseCmdFile with a make variable = %v", err)
	}
}

func TestShellSplit(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
		rest string
		err  string
	}{
		{`a 'b c' "d \"e\" \$" f\ g`, []string{"a", "b c", `d "e" $`, "f g"}, "", ""},
		{`-D'"x"'y ''`, []string{`-D"x"y`, ""}, "", ""},
		{"cc -c x.c && objtool x.o", []string{"cc", "-c", "x.c"}, "&& objtool x.o", ""},
		{"cc x.c | tee", []string{"cc", "x.c"}, "| tee", ""},
		{"a#b c", []string{"a#b", "c"}, "", ""},
		{"cc $(shell x)", nil, "", "shell syntax"},
		{"cc `x`", nil, "", "shell syntax"},
		{"cc > out", nil, "", "shell syntax"},
		{"cc *.c", nil, "", "shell syntax"},
		{`cc "$HOME"`, nil, "", "expansion"},
		{"cc 'x", nil, "", "unterminated single"},
		{`cc "x`, nil, "", "unterminated double"},
		{`cc x\`, nil, "", "trailing backslash"},
	} {
		got, rest, err := shellSplit(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("shellSplit(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || !cmp.Equal(got, tt.want) || rest != tt.rest {
			t.Errorf("shellSplit(%q) = %q, %q, %v; want %q, %q", tt.in, got, rest, err, tt.want, tt.rest)
		}
	}
}

func TestUnitCommand(t *testing.T) {
	r, err := parseCmdFile([]byte(cmdFile), "fs/proc/cmdline.o")
	if err != nil {
		t.Fatal(err)
	}
	argv, err := unitCommand(r, "/tmp/w/b/fs/proc/cmdline.c", "/tmp/w/post/fs/proc/cmdline.o", "/tmp/w/b", "/src/fs/proc", "/src", false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"gcc-12", "-iquote", "/src/fs/proc", "-fmacro-prefix-map=/tmp/w/b/=", "-fdebug-prefix-map=/tmp/w/b/=/src/"}
	if diff := cmp.Diff(want, argv[:5]); diff != "" {
		t.Errorf("added flags (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"-c", "-o", "/tmp/w/post/fs/proc/cmdline.o", "/tmp/w/b/fs/proc/cmdline.c"}, argv[len(argv)-4:]); diff != "" {
		t.Errorf("input and output (-want +got):\n%s", diff)
	}
	for _, a := range argv {
		if strings.HasPrefix(a, "-Wp,-MMD") || a == "fs/proc/cmdline.o" || a == "/src/fs/proc/cmdline.c" {
			t.Errorf("argv keeps %q", a)
		}
	}

	r.argv = append(r.argv, r.source)
	if _, err := unitCommand(r, "x.c", "x.o", "/w", "/src", "/src", false); err == nil || !strings.Contains(err.Error(), "2 times") {
		t.Errorf("unitCommand with two inputs = %v", err)
	}
	r.argv = []string{"gcc", "-S", "-o", "x.s", r.source}
	if _, err := unitCommand(r, "x.c", "x.o", "/w", "/src", "/src", false); err == nil || !strings.Contains(err.Error(), "-c") {
		t.Errorf("unitCommand without -c = %v", err)
	}
}

func TestCompileRefusals(t *testing.T) {
	src := testutil.TempTree(t, map[string]string{"fs/proc/cmdline.c": "a\nb\nc\n", "fs/proc/internal.h": "a\n"})
	tree := &Tree{Source: src, ObjDir: t.TempDir(), maxHeaderUnits: DefaultMaxHeaderUnits}
	for _, tt := range []struct {
		name, patch string
		want        error
		text        string
	}{
		{"tools header", "--- a/tools/include/x.h\n+++ b/tools/include/x.h\n@@ -1 +1 @@\n-a\n+b\n", ErrUnsupportedFile,
			"tools/include/x.h (not kernel code)"},
		{"header no unit reads", "--- a/fs/proc/internal.h\n+++ b/fs/proc/internal.h\n@@ -1 +1 @@\n-a\n+b\n", ErrHeaderUnused,
			"fs/proc/internal.h"},
		{"makefile", "--- a/fs/Makefile\n+++ b/fs/Makefile\n@@ -1 +1 @@\n-a\n+b\n", ErrUnsupportedFile, "fs/Makefile: only C files"},
		{"tools", "--- a/tools/x.c\n+++ b/tools/x.c\n@@ -1 +1 @@\n-a\n+b\n", ErrUnsupportedFile, "tools/x.c (not kernel code, and no kernel Makefile builds an object from it)"},
		{"does not apply", "--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -2 +2 @@\n-x\n+y\n", nil, "fs/proc/cmdline.c: hunk #1"},
		{"missing file", "--- a/fs/proc/nope.c\n+++ b/fs/proc/nope.c\n@@ -1 +1 @@\n-a\n+b\n", nil, "not in the kernel source"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			units, err := tree.Compile(t.Context(), mustParse(t, tt.patch), nil)
			if err == nil {
				_ = units.Cleanup()
				t.Fatal("Compile succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Compile = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q lacks %q", err, tt.text)
			}
		})
	}
}

// TestForeignObjects: a .c file outside the kernel's folders is a unit
// when a kernel Makefile builds an object from it by a rule of its own
// (kernel/bpf/Makefile's relo_core.o from tools/lib/bpf/relo_core.c);
// kbuild then lists that object, and the unit's command is its.
func TestForeignObjects(t *testing.T) {
	src := testutil.TempTree(t, map[string]string{
		"kernel/bpf/Makefile": "obj-$(CONFIG_BPF_SYSCALL) += relo_core.o\n" +
			"$(obj)/relo_core.o: $(srctree)/tools/lib/bpf/relo_core.c FORCE\n\t$(call if_changed_rule,cc_o_c)\n",
		"tools/lib/bpf/relo_core.c": "int x;\n",
		"tools/lib/bpf/Makefile":    "$(obj)/other.o: $(srctree)/tools/lib/bpf/other.c\n",
		"tools/lib/bpf/other.c":     "int y;\n",
		"fs/proc/cmdline.c":         "int z;\n",
	})
	tree := &Tree{Source: src}
	got, err := tree.foreignObjects([]string{"tools/lib/bpf/relo_core.c", "tools/lib/bpf/other.c", "fs/proc/cmdline.c"})
	if err != nil {
		t.Fatal(err)
	}
	// tools/'s own Makefiles build no kernel object.
	if len(got) != 1 || got["tools/lib/bpf/relo_core.c"] != "kernel/bpf/relo_core.o" {
		t.Errorf("foreign objects %v, want relo_core.c built as kernel/bpf/relo_core.o alone", got)
	}
	tree.foreign = got
	if o := tree.objectOf("tools/lib/bpf/relo_core.c"); o != "kernel/bpf/relo_core.o" {
		t.Errorf("objectOf = %s", o)
	}
	if o := tree.objectOf("fs/proc/cmdline.c"); o != "fs/proc/cmdline.o" {
		t.Errorf("objectOf = %s", o)
	}
}

func TestObjtoolCommand(t *testing.T) {
	after := " ; ./tools/objtool/objtool --hacks=jump_label --orc --retpoline   fs/proc/cmdline.o"
	got := objtoolCommand(after, "fs/proc/cmdline.o", "/tmp/w/post/fs/proc/cmdline.o")
	want := []string{"./tools/objtool/objtool", "--hacks=jump_label", "--orc", "--retpoline", "/tmp/w/post/fs/proc/cmdline.o"}
	if !slices.Equal(got, want) {
		t.Errorf("objtool step: %q, want %q", got, want)
	}
	for _, a := range []string{"", "; scripts/other fs/proc/cmdline.o", "; ./tools/objtool/objtool --orc fs/other.o"} {
		if got := objtoolCommand(a, "fs/proc/cmdline.o", "/x.o"); got != nil {
			t.Errorf("%q: %q, want none", a, got)
		}
	}
}
