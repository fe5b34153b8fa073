// SPDX-License-Identifier: GPL-2.0
/*
 * lp_cumulative_v1: a lab livepatch for Debian's 6.1 cloud kernel.
 *
 * An atomic-replace ("cumulative") patch: .replace = true, so enabling it
 * disables every livepatch enabled before it, in one transition. v1 and v2
 * both replace cmdline_proc_show() (fs/proc/cmdline.c); /proc/cmdline
 * reads "splicefleet: cumulative v1" while this one is the live patch.
 */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

/* Same signature as the original: static int cmdline_proc_show(struct seq_file *m, void *v). */
static int lp_cumulative_v1_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "splicefleet: cumulative v1\n");
	return 0;
}

static struct klp_func lp_cumulative_v1_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = lp_cumulative_v1_proc_show,
	},
	{}
};

static struct klp_object lp_cumulative_v1_objs[] = {
	{
		.name = NULL, /* vmlinux */
		.funcs = lp_cumulative_v1_funcs,
	},
	{}
};

static struct klp_patch lp_cumulative_v1_patch = {
	.mod = THIS_MODULE,
	.objs = lp_cumulative_v1_objs,
	.replace = true,
};

static int __init lp_cumulative_v1_init(void)
{
	return klp_enable_patch(&lp_cumulative_v1_patch);
}

static void __exit lp_cumulative_v1_exit(void)
{
}

module_init(lp_cumulative_v1_init);
module_exit(lp_cumulative_v1_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("splicefleet lab: atomic-replace patch, /proc/cmdline reads 'splicefleet: cumulative v1'");
MODULE_INFO(livepatch, "Y");
