// SPDX-License-Identifier: GPL-2.0
/*
 * lp_stall: a lab livepatch whose transition cannot finish while a task
 * sleeps in pause(2). See README.md beside this file.
 *
 * It replaces __x64_sys_pause, the x86-64 entry of the pause system call
 * (kernel/signal.c, SYSCALL_DEFINE0(pause)), with a copy that behaves the
 * same. A task blocked in pause() has __x64_sys_pause on its kernel stack,
 * so the livepatch consistency model cannot switch it to the new code until
 * it leaves the system call: the transition stays pending.
 */
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>

/*
 * Same signature as the original: long __x64_sys_pause(const struct
 * pt_regs *regs). Same body as 6.1's SYSCALL_DEFINE0(pause): sleep until a
 * signal is pending, then ask for a restart unless a handler runs.
 */
static long lp_stall_sys_pause(const struct pt_regs *regs)
{
	while (!signal_pending(current)) {
		__set_current_state(TASK_INTERRUPTIBLE);
		schedule();
	}
	return -ERESTARTNOHAND;
}

static struct klp_func lp_stall_funcs[] = {
	{
		.old_name = "__x64_sys_pause",
		.new_func = lp_stall_sys_pause,
	},
	{}
};

static struct klp_object lp_stall_objs[] = {
	{
		.name = NULL, /* vmlinux */
		.funcs = lp_stall_funcs,
	},
	{}
};

static struct klp_patch lp_stall_patch = {
	.mod = THIS_MODULE,
	.objs = lp_stall_objs,
};

static int __init lp_stall_init(void)
{
	return klp_enable_patch(&lp_stall_patch);
}

static void __exit lp_stall_exit(void)
{
}

module_init(lp_stall_init);
module_exit(lp_stall_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("splicefleet lab: replaces pause(2) so a task sleeping in it holds the transition");
MODULE_INFO(livepatch, "Y");
