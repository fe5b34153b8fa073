package ksrc

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"

	"github.com/splicefleet/splicefleet/lab"
)

// cmdlineFix changes what /proc/cmdline prints, and includes a header of
// the unit's own folder with quotes, which must resolve from the copy.
const cmdlineFix = `diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -3,12 +3,13 @@
 #include <linux/init.h>
 #include <linux/proc_fs.h>
 #include <linux/seq_file.h>
+#include "internal.h"
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
 	seq_puts(m, saved_command_line);
-	seq_putc(m, '\n');
+	seq_puts(m, " livepatched\n");
 	return 0;
 }
 
 static int __init proc_cmdline_init(void)
 {
`

// TestLabKernelUnits prepares the Debian source of the lab kernel against
// its headers and compiles a patch to fs/proc/cmdline.c before and after.
// The first run prepares the object folder (minutes); later runs reuse it.
func TestLabKernelUnits(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches a kernel source package and builds part of the kernel; go test without -short runs it")
	}
	ctx := context.Background()
	log := testutil.LogWriter(t)
	k, err := lab.Fetch(ctx, lab.FetchOptions{Log: log})
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	src, err := lab.FetchSource(ctx, lab.FetchOptions{Log: log}, k)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	// From here on nothing may write into the tree (a fresh extraction
	// leaves some folders dated now, so the clock starts after it).
	testStart := time.Now()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Source: src, KernelBuild: k.HeadersDir, CacheDir: filepath.Join(root, ".cache", "ksrc"), Log: log}

	start := time.Now()
	tree, err := Prepare(ctx, opts)
	if err != nil {
		var te *ToolsError
		if errors.As(err, &te) {
			t.Fatalf("%v (scripts/test-deps.sh installs them)", err)
		}
		t.Fatal(err)
	}
	first := time.Since(start)
	start = time.Now()
	again, err := Prepare(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	second := time.Since(start)
	t.Logf("Prepare: first %.1fs (reused: %v), second %.1fs (reused: %v)", first.Seconds(), tree.Reused, second.Seconds(), again.Reused)
	if !again.Reused || again.ObjDir != tree.ObjDir {
		t.Errorf("second Prepare did not reuse %s: %+v", tree.ObjDir, again)
	}
	if second > testutil.Within(30*time.Second) {
		t.Errorf("second Prepare took %v", second)
	}
	if tree.Release != k.Release || tree.Version == "" || tree.CC == "" {
		t.Errorf("tree = %+v, want release %s", tree, k.Release)
	}

	patch, err := ParsePatch([]byte(cmdlineFix))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	units, err := tree.Compile(ctx, patch, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Compile of 1 unit: %.1fs", time.Since(start).Seconds())
	defer func() {
		if err := units.Cleanup(); err != nil {
			t.Error(err)
		}
	}()
	if len(units.List) != 1 {
		t.Fatalf("units = %+v", units.List)
	}
	u := units.List[0]
	t.Logf("unit: %s pre=%s post=%s module=%q after=%q", u.Path, u.Pre, u.Post, u.Module, u.After)
	t.Logf("command: %s", strings.Join(u.Command, " "))
	if u.Path != "fs/proc/cmdline.c" || u.Module != "" || u.Dir != tree.ObjDir {
		t.Errorf("unit = %+v", u)
	}
	if !strings.Contains(u.After, "objtool") {
		t.Errorf("unit.After = %q, want the objtool step kbuild records", u.After)
	}
	// objtool ran on both, as kbuild runs it: the ORC tables are there.
	for _, o := range []string{u.Pre, u.Post} {
		textSection(t, o, ".orc_unwind_ip")
	}
	pre := textSection(t, u.Pre, ".text.cmdline_proc_show")
	post := textSection(t, u.Post, ".text.cmdline_proc_show")
	if bytes.Equal(pre, post) {
		t.Errorf(".text.cmdline_proc_show is the same before and after the patch")
	}
	// The recorded command rebuilds what kbuild built: same code.
	kb := textSection(t, filepath.Join(tree.ObjDir, "fs/proc/cmdline.o"), ".text.cmdline_proc_show")
	if !bytes.Equal(pre, kb) {
		t.Errorf(".text.cmdline_proc_show of Pre differs from kbuild's object")
	}
	for _, s := range []string{"livepatched"} {
		if b, err := os.ReadFile(u.Post); err != nil || !bytes.Contains(b, []byte(s)) {
			t.Errorf("Post lacks the string %q", s)
		}
	}
	work := strings.TrimSuffix(u.Post, "/post/fs/proc/cmdline.o")
	for _, o := range []string{u.Pre, u.Post} {
		if b, err := os.ReadFile(o); err != nil || bytes.Contains(b, []byte(work)) {
			t.Errorf("%s names the temporary folder %s", o, work)
		}
	}

	// Nothing was written into the source tree.
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().After(testStart) {
			t.Errorf("the source tree changed: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := units.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(u.Pre); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Cleanup left %s: %v", u.Pre, err)
	}

	// A patch that does not compile: the compiler's messages name the
	// patched file as b/PATH, and the error says which side failed.
	broken := strings.Replace(cmdlineFix, `+	seq_puts(m, " livepatched\n");`, `+	seq_puts(m, undeclared_thing);`, 1)
	var out strings.Builder
	_, err = tree.Compile(ctx, mustParse(t, broken), io.MultiWriter(&out, log))
	if !errors.Is(err, ErrBuildFailed) || !strings.Contains(err.Error(), "after the patch") {
		t.Errorf("Compile of a broken patch = %v, want a build failure after the patch", err)
	}
	if !strings.Contains(out.String(), "b/fs/proc/cmdline.c:11:") || !strings.Contains(out.String(), "undeclared_thing") {
		t.Errorf("the log lacks the compiler's error about b/fs/proc/cmdline.c line 11")
	}
}

// textSection checks that name is a relocatable x86-64 ELF object and
// returns the bytes of the named section.
func textSection(t *testing.T, name, section string) []byte {
	t.Helper()
	f, err := elf.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_REL {
		t.Errorf("%s is %v %v %v, want a relocatable x86-64 object", name, f.Class, f.Machine, f.Type)
	}
	s := f.Section(section)
	if s == nil {
		t.Fatalf("%s has no %s section: did -ffunction-sections take?", name, section)
	}
	b, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fdHeaderFix changes proc_fd, the static inline of fs/proc/fd.h, so
// that fd 2 of /proc/PID/fd names fd 1. fd.h is included by fd.c, whose
// callers of proc_fd change, and by base.c, which does not call it.
const fdHeaderFix = `--- a/fs/proc/fd.h
+++ b/fs/proc/fd.h
@@ -15,7 +15,9 @@ extern int proc_fd_permission(struct user_namespace *mnt_userns,
 
 static inline unsigned int proc_fd(struct inode *inode)
 {
-	return PROC_I(inode)->fd;
+	unsigned int fd = PROC_I(inode)->fd;
+
+	return fd == 2 ? 1 : fd;
 }
 
 #endif /* __PROCFS_FD_H__ */
`

// labTree prepares (or reuses) the lab kernel's source tree.
func labTree(t *testing.T, log io.Writer) *Tree {
	t.Helper()
	if testing.Short() {
		t.Skip("fetches a kernel source package and builds part of the kernel; go test without -short runs it")
	}
	ctx := context.Background()
	k, err := lab.Fetch(ctx, lab.FetchOptions{Log: log})
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	src, err := lab.FetchSource(ctx, lab.FetchOptions{Log: log}, k)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tree, err := Prepare(ctx, Options{Source: src, KernelBuild: k.HeadersDir, CacheDir: filepath.Join(root, ".cache", "ksrc"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// TestLabKernelHeaderUnits compiles a patch to a header of the lab
// kernel: of the two units that read it, fs/proc/base.c never mentions
// the changed inline and is not compiled; fs/proc/fd.c, which calls it,
// is compiled before and after and its code changes. A header of the
// core kernel is refused with the count.
func TestLabKernelHeaderUnits(t *testing.T) {
	log := testutil.LogWriter(t)
	tree := labTree(t, log)
	ctx := context.Background()
	start := time.Now()
	units, err := tree.Compile(ctx, mustParse(t, fdHeaderFix), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Compile of a header patch: %.1fs", time.Since(start).Seconds())
	defer func() { _ = units.Cleanup() }()
	var paths []string
	for _, u := range units.List {
		paths = append(paths, u.Path)
		if len(u.Headers) != 1 || u.Headers[0] != "fs/proc/fd.h" || u.Module != "" {
			t.Errorf("unit %s: headers %q, module %q; want fs/proc/fd.h, vmlinux", u.Path, u.Headers, u.Module)
		}
	}
	if strings.Join(paths, " ") != "fs/proc/fd.c" {
		t.Fatalf("units = %q, want fs/proc/fd.c", paths)
	}
	if !slices.Equal(units.Headers, []string{"fs/proc/fd.h"}) {
		t.Errorf("Units.Headers = %q", units.Headers)
	}
	fd := units.List[0]
	if pre, post := textSection(t, fd.Pre, ".text.proc_fd_link"), textSection(t, fd.Post, ".text.proc_fd_link"); bytes.Equal(pre, post) {
		t.Errorf("fs/proc/fd.c: proc_fd_link, which calls proc_fd, did not change")
	}

	// A change to a struct of the core kernel reaches far more units
	// than the limit (a comment alone would reach none: it changes only
	// __LINE__ below it).
	wide := "--- a/include/net/route.h\n+++ b/include/net/route.h\n@@ -63,1 +63,1 @@\n-\tint\t\t\trt_genid;\n+\tlong\t\t\trt_genid;\n"
	start = time.Now()
	_, err = tree.Compile(ctx, mustParse(t, wide), log)
	var he *HeaderError
	if !errors.As(err, &he) {
		t.Fatalf("Compile of include/net/route.h = %v, want a HeaderError", err)
	}
	if he.Limit != DefaultMaxHeaderUnits || he.Units <= he.Limit {
		t.Errorf("route.h: %d units against a limit of %d, want more than the default %d", he.Units, he.Limit, DefaultMaxHeaderUnits)
	}
	t.Logf("refused in %.1fs: %v", time.Since(start).Seconds(), err)
}

// corpusTree prepares the source of the corpus kernel (Debian's
// 6.1.0-53-cloud-amd64, which make corpus prepares too) against its
// headers.
func corpusTree(t *testing.T, log io.Writer) *Tree {
	t.Helper()
	if testing.Short() {
		t.Skip("fetches a kernel source package and builds part of the kernel; go test without -short runs it")
	}
	ctx := context.Background()
	opts := lab.FetchOptions{ABI: "6.1.0-53", Log: log}
	k, err := lab.Fetch(ctx, opts)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	src, err := lab.FetchSource(ctx, opts, k)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tree, err := Prepare(ctx, Options{Source: src, KernelBuild: k.HeadersDir, CacheDir: filepath.Join(root, ".cache", "ksrc"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// authFix changes drivers/nvme/target/auth.c, which the cloud
// configuration does not build (CONFIG_NVME_TARGET_AUTH is not set).
const authFix = `--- a/drivers/nvme/target/auth.c
+++ b/drivers/nvme/target/auth.c
@@ -1,6 +1,7 @@
 // SPDX-License-Identifier: GPL-2.0
 /*
  * NVMe over Fabrics DH-HMAC-CHAP authentication.
+ * (changed)
  * Copyright (c) 2020 Hannes Reinecke, SUSE Software Solutions.
  * All rights reserved.
  */
`

// TestCorpusKernelSkipsUnbuiltFile: of a patch to a file the
// configuration builds and one it does not, only the first is compiled
// (kbuild's own listing says which); a patch to the second alone has
// nothing to patch.
func TestCorpusKernelSkipsUnbuiltFile(t *testing.T) {
	log := testutil.LogWriter(t)
	tree := corpusTree(t, log)
	ctx := context.Background()
	both := strings.Replace(cmdlineFix, "diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c\n", "", 1) + authFix
	units, err := tree.Compile(ctx, mustParse(t, both), log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = units.Cleanup() }()
	if len(units.List) != 1 || units.List[0].Path != "fs/proc/cmdline.c" {
		t.Errorf("units %+v, want fs/proc/cmdline.c alone", units.List)
	}
	if !slices.Equal(units.NotBuilt, []string{"drivers/nvme/target/auth.c"}) {
		t.Errorf("NotBuilt = %q, want drivers/nvme/target/auth.c", units.NotBuilt)
	}

	_, err = tree.Compile(ctx, mustParse(t, authFix), log)
	if !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), "drivers/nvme/target/auth.c") {
		t.Errorf("Compile of auth.c alone = %v, want ErrNotBuilt naming it", err)
	}
}

// hvcKconfigFix is Debian's change to drivers/tty/hvc/Kconfig (see
// hvcDCCFix) at its place in the real file.
var hvcKconfigFix = strings.Replace(hvcDCCFix, "@@ -18,7 +18,7 @@", "@@ -79,7 +79,7 @@", 1)

// TestCorpusKernelLeavesOutUnsetKconfig: against the cloud kernel's own
// configuration, which leaves HVC_DCC unset, a fix's Kconfig change to
// it is left out with a note, and the fix's C file is compiled.
func TestCorpusKernelLeavesOutUnsetKconfig(t *testing.T) {
	log := testutil.LogWriter(t)
	tree := corpusTree(t, log)
	units, err := tree.Compile(context.Background(), mustParse(t, hvcKconfigFix+cmdlineFix), log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = units.Cleanup() }()
	if len(units.List) != 1 || units.List[0].Path != "fs/proc/cmdline.c" {
		t.Errorf("units %+v, want fs/proc/cmdline.c alone", units.List)
	}
	if len(units.Kconfig) != 1 || !strings.Contains(units.Kconfig[0], "CONFIG_HVC_DCC, which this kernel's configuration leaves unset") {
		t.Errorf("Kconfig notes %q, want one for CONFIG_HVC_DCC", units.Kconfig)
	}
}

// identMapFix changes arch/x86/mm/ident_map.c, which no Makefile builds:
// arch/x86/mm/init_64.c #includes it, so its code is in init_64.o.
const identMapFix = `--- a/arch/x86/mm/ident_map.c
+++ b/arch/x86/mm/ident_map.c
@@ -107,7 +107,7 @@ int kernel_ident_mapping_init(struct x86_mapping_info *info, pgd_t *pgd_page,
 		info->kernpg_flag = _KERNPG_TABLE;
 
 	/* Filter out unsupported __PAGE_KERNEL_* bits: */
-	info->kernpg_flag &= __default_kernel_pte_mask;
+	info->kernpg_flag &= __default_kernel_pte_mask & ~_PAGE_GLOBAL;
 
 	for (; addr < end; addr = next) {
 		pgd_t *pgd = pgd_page + pgd_index(addr);
`

// TestCorpusKernelIncludedCFile: a .c file that a built file #includes
// is compiled through it, as a header through its readers: the unit is
// init_64.c, its after side reads the patched ident_map.c, and only
// kernel_ident_mapping_init's code differs.
func TestCorpusKernelIncludedCFile(t *testing.T) {
	log := testutil.LogWriter(t)
	tree := corpusTree(t, log)
	units, err := tree.Compile(context.Background(), mustParse(t, identMapFix), log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = units.Cleanup() }()
	if len(units.List) != 1 || units.List[0].Path != "arch/x86/mm/init_64.c" || !slices.Equal(units.List[0].Headers, []string{"arch/x86/mm/ident_map.c"}) {
		t.Fatalf("units %+v, want arch/x86/mm/init_64.c reading ident_map.c", units.List)
	}
	if !slices.Equal(units.Headers, []string{"arch/x86/mm/ident_map.c"}) || len(units.NotBuilt) != 0 {
		t.Errorf("Headers %q, NotBuilt %q: want ident_map.c compiled through its includer", units.Headers, units.NotBuilt)
	}
	u := units.List[0]
	text := func(name, fn string) []byte {
		f, err := elf.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Close() }()
		s := f.Section(".text." + fn)
		if s == nil {
			t.Fatalf("%s has no .text.%s", name, fn)
		}
		b, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if bytes.Equal(text(u.Pre, "kernel_ident_mapping_init"), text(u.Post, "kernel_ident_mapping_init")) {
		t.Error("kernel_ident_mapping_init compiles to the same code after the patch: the after side did not read the patched file")
	}
	if !bytes.Equal(text(u.Pre, "add_pages"), text(u.Post, "add_pages")) {
		t.Error("add_pages, which the patch does not touch, changed")
	}
}

// TestCorpusKernelCallers: the units that may call a global function of
// lib/ (built without ftrace, so livepatch cannot redirect it) are found
// over the whole tree and compiled once, unchanged, each object serving
// as before and after: of them, exactly mm/filemap.c and
// mm/huge_memory.c call xas_split_alloc (lib/test_xarray.c does too, and
// the configuration does not build it). Past the bound on units, the
// search is refused before anything is compiled.
func TestCorpusKernelCallers(t *testing.T) {
	log := testutil.LogWriter(t)
	tree := corpusTree(t, log)
	ctx := context.Background()
	units, err := tree.CompileCallers(ctx, []string{"xas_split_alloc"}, []string{"lib/xarray.c"}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = units.Cleanup() }()
	var paths, calling []string
	for _, u := range units.List {
		paths = append(paths, u.Path)
		if u.Pre != u.Post || !slices.Equal(u.Command, u.PreCommand) {
			t.Errorf("%s: Pre %s, Post %s: want one object compiled once", u.Path, u.Pre, u.Post)
		}
		f, err := elf.Open(u.Post)
		if err != nil {
			t.Fatal(err)
		}
		syms, err := f.Symbols()
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(syms, func(s elf.Symbol) bool { return s.Name == "xas_split_alloc" && s.Section == elf.SHN_UNDEF }) {
			calling = append(calling, u.Path)
		}
	}
	if !slices.Equal(calling, []string{"mm/filemap.c", "mm/huge_memory.c"}) {
		t.Errorf("of the units compiled (%q), %q call xas_split_alloc; want mm/filemap.c and mm/huge_memory.c", paths, calling)
	}
	if slices.Contains(paths, "lib/test_xarray.c") || slices.Contains(paths, "lib/xarray.c") {
		t.Errorf("units %q: want neither the unbuilt test nor the skipped file", paths)
	}
	narrow := *tree
	narrow.maxHeaderUnits = 1
	if _, err := narrow.CompileCallers(ctx, []string{"xas_split_alloc"}, []string{"lib/xarray.c"}, log); !errors.Is(err, ErrTooManyCallers) ||
		!strings.Contains(err.Error(), "more than the limit of 1") {
		t.Errorf("with a bound of 1 unit: %v, want ErrTooManyCallers naming the bound", err)
	}
}
