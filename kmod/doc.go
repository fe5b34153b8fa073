// Package kmod reads and (later) loads Linux kernel modules, in particular
// Ksplice-style livepatch modules.
//
// The package is built around three rules:
//
//   - Kernel state is read through a root. Code that looks at /sys/module,
//     /proc/modules and friends takes a root directory instead of hard-coded
//     absolute paths, so tests can lay out a fake tree. (Planned; this
//     package does not read kernel state yet.)
//   - System calls such as finit_module and delete_module sit behind one
//     seam, a single small interface, so everything above it can be tested
//     without privileges and without a kernel. (Planned; no system calls
//     are made yet.)
//   - Module bytes are untrusted input. [ReadModInfo] parses a module's ELF
//     metadata only after the caller has checked the bytes against a known
//     digest, and even then it treats them as hostile: it takes a byte slice,
//     never a path, refuses input larger than [MaxModuleSize], bounds every
//     section read by the size of the input, and runs all ELF parsing under
//     recover so a malformed file yields an error instead of a panic.
//
// What exists today is module info: [ReadModInfo] returns the .modinfo
// key/value pairs of a relocatable kernel module (name, vermagic, license,
// depends, livepatch flag, ...), the target architecture from the ELF
// header, and, for livepatch modules, a best-effort list of the kernel
// functions the module replaces, found by matching the relocations of its
// struct klp_func tables. Callers test failures with errors.Is against
// [ErrNotModule], [ErrNotLivepatch] and [ErrTooLarge].
package kmod
