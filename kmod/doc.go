// Package kmod reads Linux kernel modules and drives the kernel's
// livepatch machinery: it is the only package that touches the kernel.
//
// The package is built around four rules:
//
//   - Kernel state is read through a root. [FS] reads procfs and sysfs
//     (identity, /sys/kernel/livepatch, /proc/modules, the taint mask, the
//     tasks blocking a transition) below a root folder, "/" on a running
//     system and a fixture tree (testdata/debian-6.1-cloud) or a
//     t.TempDir() tree in tests. Files are read with a size limit and
//     without trusting Stat (sysfs reports made-up sizes), values are
//     trimmed, and every error names the file. Each text source has an
//     exported reader and an unexported parser (parseModules, parseTaint,
//     parseBuildID, parseKmsgRecord) tested on literals.
//   - System calls sit behind one seam. finit_module, delete_module and
//     the non-blocking /dev/kmsg reader live in sys_linux.go (raw
//     read(2): Go's os package blocks forever at the end of /dev/kmsg);
//     other systems get errors wrapping [ErrNotSupported]. Errnos become
//     sentinels ([ErrAlreadyLoaded], [ErrWrongKernel], [ErrKeyRejected],
//     [ErrNotPermitted], [ErrBusy], [ErrInUse], [ErrNoSyscall], [ErrNotLoaded]) with
//     the errno kept in the chain. Only this package imports
//     golang.org/x/sys/unix.
//   - [Linux] is the [Kernel] of a running system: reads through an [FS],
//     system calls through the seam (tests substitute a fake that plays
//     the kernel on a temporary tree). Load retries EBUSY (another
//     livepatch in transition) and Unload EBUSY and EAGAIN a bounded
//     number of times with a growing pause. Load checks that the module
//     registered the livepatch it was verified to be and backs it out
//     otherwise ([ErrSpecMismatch]). WaitTransition polls the patch's
//     transition file, signals blocking tasks after a stall, and if that
//     does not help reverses the transition and returns a
//     [*TransitionError] naming the blockers; it never writes the force
//     file. sysfs attributes are written only if they exist, never
//     created.
//   - Module bytes are untrusted input. [ReadModInfo] parses a module's ELF
//     metadata only after the caller has checked the bytes against a known
//     digest, and even then it treats them as hostile: it takes a byte slice,
//     never a path, refuses input larger than [MaxModuleSize], checks the
//     ELF and section headers of an ELF64 little-endian module by hand
//     before debug/elf parses them (internal/elf64, the reader klpgen and
//     objdiff share), bounds every section read by the size of the input,
//     and runs all ELF parsing under recover so a malformed file yields an
//     error instead of a panic. A module of another class or byte order is
//     parsed only to report its architecture.
//
// Before it touches the kernel, a caller can ask whether it may:
// [FS.CheckCapSysModule] reads the effective capability set (CapEff in
// proc/self/status, through the root like every other read) and refuses,
// with [ErrNoCapSysModule], a process that lacks CAP_SYS_MODULE, which
// finit_module and delete_module require; [FS.CheckKernelAccess] opens
// dev/kmsg and asks access(2) whether sys/kernel/livepatch is writable,
// which a sandbox set too tight would deny. [ExecLimited] executes a
// program with the capability bounding set cut and no_new_privs set (two
// prctl calls and an exec on one locked thread, in sys_linux.go), as
// systemd starts the agent's unit: the lab runs its guests' agents so.
//
// [ReadModInfo] returns the .modinfo key/value pairs of a relocatable
// kernel module (name, vermagic, license, depends, livepatch flag, ...),
// the target architecture from the ELF header, and, for livepatch modules,
// a best-effort list of the kernel functions the module replaces, found by
// matching the relocations of its struct klp_func tables. Callers test
// failures with errors.Is against [ErrNotModule], [ErrNotLivepatch] and
// [ErrTooLarge].
package kmod
