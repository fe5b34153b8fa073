// Package kmod reads Linux kernel modules and the kernel's livepatch
// state; it is the only package that touches the kernel.
//
// The package is built around three rules:
//
//   - Kernel state is read through a root. [FS] reads procfs and sysfs
//     (identity, /sys/kernel/livepatch, /proc/modules, the taint mask, the
//     tasks blocking a transition) below a root folder, "/" on a running
//     system and a fixture tree (testdata/debian-6.1-cloud) or a
//     t.TempDir() tree in tests. Files are read with a size limit and
//     without trusting Stat (sysfs reports made-up sizes), values are
//     trimmed, and every error names the file. Each text source has an
//     exported reader and an unexported parser (parseModules, parseTaint,
//     parseBuildID) tested on literals.
//   - System calls will sit behind one seam, a single small interface, so
//     everything above it can be tested without privileges and without a
//     kernel. (Planned; no system calls are made yet.)
//   - Module bytes are untrusted input. [ReadModInfo] parses a module's ELF
//     metadata only after the caller has checked the bytes against a known
//     digest, and even then it treats them as hostile: it takes a byte slice,
//     never a path, refuses input larger than [MaxModuleSize], bounds every
//     section read by the size of the input, and runs all ELF parsing under
//     recover so a malformed file yields an error instead of a panic.
//
// [ReadModInfo] returns the .modinfo key/value pairs of a relocatable
// kernel module (name, vermagic, license, depends, livepatch flag, ...),
// the target architecture from the ELF header, and, for livepatch modules,
// a best-effort list of the kernel functions the module replaces, found by
// matching the relocations of its struct klp_func tables. Callers test
// failures with errors.Is against [ErrNotModule], [ErrNotLivepatch] and
// [ErrTooLarge].
package kmod
