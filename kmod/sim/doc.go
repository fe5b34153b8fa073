// Package sim is a simulated Linux kernel for splicefleet: a TEST DOUBLE
// that implements [kmod.Kernel] without loading anything into a real
// kernel. Fleet tests, crash tests and the demo drive it instead of
// /sys/kernel/livepatch; nothing it does changes the machine it runs on.
// [Kernel.Identity] reports Simulated: true and everything that prints its
// state starts with "SIMULATED kernel", so it is never mistaken for a real
// one.
//
// # One kernel, many processes
//
// The whole kernel lives in one folder (see [Open]): kernel.json holds its
// identity, modules, livepatches, taint and log; faults.json (see
// [SetFaults]) holds injected faults. Every operation, reads included,
// takes an exclusive flock on the folder's lock file, reads kernel.json,
// applies what time has done since (a transition whose time is up
// completes), performs the operation and, when anything changed, writes
// kernel.json back atomically (temporary file, fsync, rename, fsync of the
// folder). So a CLI and an agent, or a process that is SIGKILLed and
// started again, see one kernel and never lose each other's updates.
//
// # What it models
//
// The livepatch semantics of a modern kernel (5.1 and later, as Debian 12's
// 6.1), as far as splicefleet can observe them:
//
//   - Load refuses what the kernel refuses: a file that is not a livepatch
//     module, or one built for another release or architecture
//     ([kmod.ErrWrongKernel]); a second module of the same name
//     ([kmod.ErrAlreadyLoaded]); any livepatch while another patch is in a
//     transition ([kmod.ErrBusy], as klp_enable_patch returns -EBUSY); and
//     everything on a kernel built without CONFIG_LIVEPATCH
//     ([kmod.ErrNoLivepatch]). A loaded module's init enables its patch,
//     which starts a transition; the kernel gains the taint bits of an
//     unsigned out-of-tree livepatch module (45056 in total).
//   - One transition at a time, system-wide. Transitions are timed, not
//     simulated task by task: each records its start and duration (from
//     the faults; 0 completes at once), so any process that looks after the
//     deadline sees it completed. A transition can be made to never finish,
//     or to finish once the blocking tasks are signalled.
//   - /sys/kernel/livepatch lists only the patches that are enabled or in a
//     transition (the kernel's klp_patches list). When a disable transition
//     completes, or when an atomic-replace patch finishes enabling and so
//     replaces every older patch, those patches disappear from
//     [Kernel.Livepatches]; their modules stay loaded, no longer busy, until
//     they are unloaded. A disabled patch cannot be enabled again; load its
//     module again instead. StackOrder is the position in that list (1 is
//     the oldest), as stack_order shows it on Linux 6.7 and later.
//   - Any patch may be disabled (the "only the top of the stack" rule was
//     removed from Linux in 5.1); splicefleet's lifecycle, not the kernel,
//     undoes patches in order.
//   - A module whose patch is listed cannot be unloaded ([kmod.ErrBusy]).
//   - The log works like /dev/kmsg records: numbered from 1, read after a
//     cursor, bounded (the oldest records are dropped), with the messages a
//     6.1 kernel prints for the same events.
//   - Taint is sticky until [Reboot], which also unloads everything and
//     clears the log.
//
// Where it departs from the kernel, on purpose: reversing a transition
// completes at once; log sequence numbers continue across [Reboot] (Linux
// starts again from 0), so a cursor taken before a reboot never hides
// records written after it; and faults ([Faults]) can make any step fail
// on demand.
package sim
