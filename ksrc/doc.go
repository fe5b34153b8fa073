// Package ksrc is the kernel source side of building a livepatch from a
// source patch (ksplice-create or kpatch-build style): it compiles exactly
// the compilation units a patch touches, before and after the patch, as
// the target kernel's own build compiled them plus -ffunction-sections
// -fdata-sections, so that an object differ can compare them function by
// function.
//
// Three steps, each usable on its own:
//
//   - ParsePatch reads a unified diff (git's or diff -u's, -p1 paths) in
//     pure Go, bounded in size and file count, and refuses what a source
//     livepatch cannot be built from: renames and copies, mode changes,
//     new and deleted files, binary patches, and paths that are absolute
//     or contain "..". Apply applies one file's hunks with exact context
//     and patch(1)'s offset search, without fuzz, and names the file and
//     hunk that does not apply. No patch program is run.
//   - Prepare readies an out-of-tree kbuild object folder
//     (make -C SOURCE O=CACHE/obj-KEY) for the target's configuration:
//     the .config from the target's headers, its compiler (the first word
//     of CONFIG_CC_VERSION_TEXT, e.g. gcc-12), its release (Debian's
//     .kernelvariables, else include/config/kernel.release) as
//     KERNELRELEASE, then `olddefconfig` and `modules_prepare`, which is
//     enough for kbuild to build single objects. The source tree is never
//     written and may be read-only. The key hashes the source tree's path
//     and version, the .config, the compiler's version and the release,
//     so a second call, or another process, reuses the folder: it is
//     prepared under an flock and stamped ready last. Prepare refuses a
//     source whose VERSION.PATCHLEVEL.SUBLEVEL differs from the headers'
//     (naming both), a configuration kbuild changes here beyond toolchain
//     version numbers (the host's tools differ from the kernel's), and a
//     host without the build tools, listing the Debian packages.
//   - Compile lets kbuild build each touched unit once in the object
//     folder, which records the exact compiler command in
//     O/dir/.file.o.cmd, and then compiles the pristine file and the
//     patched file, both copied into a temporary folder, with that
//     command: input and output swapped, the dependency file dropped, the
//     original folder on the quote include path, and __FILE__ and debug
//     info mapped back to the original path. Building both sides the same
//     way, rather than taking kbuild's object as "before", means they
//     differ only by the patch; kbuild's objtool step (recorded in
//     Unit.After) then runs on both, so they carry the ORC unwind tables
//     and site lists a livepatch module needs for its new code. A changed
//     header adds every unit of the configuration that reads it and may
//     use what the patch changes there (found by the tree's #include
//     lines, then by the names of the changed definitions, which a small
//     C scanner reads from the header and follows through the other
//     headers, then kbuild's evaluation of the folders' Makefiles, then
//     kbuild's dependency records; see header.go and narrow.go), whose
//     after side reads the patched header from the copy folder, put ahead
//     of the original on the include path. The names sought leave out
//     declarations the patch adds (no unchanged unit could use them), and
//     a macro's ## pastes count as making a name only where its arguments
//     may (a generator the file #undefs makes just its invocations'
//     names). More than MaxHeaderUnits such units (256 by default, a
//     quarter of an hour of compiling) is refused before anything is
//     compiled. CompileOnTop does the
//     same for a patch made on top of earlier updates: both sides start
//     from the files with those updates applied, so they still differ
//     only by the patch.
//   - BuildModule builds an out-of-tree module (create --source's, or the
//     livepatch module create --patch generated) against the target's
//     build folder, in a copy of its source, and returns the .ko: the
//     same runner and the same cleaned environment as the compile stage,
//     so both stages build for the same target.
//
// A changed .c file the configuration does not build (kbuild's own
// evaluation of its folders' Makefiles lists no object of it) is not
// compiled: nothing of it runs, and Units.NotBuilt names it; a patch with
// no built file and no header has nothing to patch (ErrNotBuilt). One
// that built files #include (arch/x86/mm/ident_map.c, which init_64.c
// includes) is compiled through them, as a changed header is through
// its readers: the includers are units, and the after side of each
// reads the patched text. One outside the kernel's folders that a kernel
// Makefile builds by a rule of its own (tools/lib/bpf/relo_core.c, built
// as kernel/bpf/relo_core.o) is compiled as that object (foreign.go).
//
// CompileCallers compiles, once and unchanged, every unit of the
// configuration that may call given functions: the callers of a changed
// function livepatch cannot redirect, which a bundle carries as a new
// function and must replace (callers.go). They are found as a header's
// users are, with the functions' names as the changed definitions and
// every .c file of the tree as a reader, bounded like a header's reach.
//
// Known limits: gcc-built kernels only, no cross-building.
//
// Package ksrc runs make and the compiler, which the lint rules otherwise
// allow only in cmd, the lab and tests: running them is its purpose. Every
// run is in its own process group, killed as a whole when the context
// ends, with an environment cleaned of variables that would change the
// build (KCFLAGS, ARCH, CROSS_COMPILE, a parent make's MAKEFLAGS, ...).
package ksrc
