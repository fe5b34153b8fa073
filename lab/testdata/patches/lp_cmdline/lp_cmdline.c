// SPDX-License-Identifier: GPL-2.0
/*
 * lp_cmdline: a lab livepatch for Debian's 6.1 cloud kernel.
 *
 * Replaces cmdline_proc_show() (fs/proc/cmdline.c) so that reading
 * /proc/cmdline shows a fixed line while the patch is enabled.
 */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

/* Same signature as the original: static int cmdline_proc_show(struct seq_file *m, void *v). */
static int lp_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "splicefleet: cmdline patched\n");
	return 0;
}

static struct klp_func lp_cmdline_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = lp_cmdline_proc_show,
	},
	{}
};

static struct klp_object lp_cmdline_objs[] = {
	{
		.name = NULL, /* vmlinux */
		.funcs = lp_cmdline_funcs,
	},
	{}
};

static struct klp_patch lp_cmdline_patch = {
	.mod = THIS_MODULE,
	.objs = lp_cmdline_objs,
};

static int __init lp_cmdline_init(void)
{
	return klp_enable_patch(&lp_cmdline_patch);
}

static void __exit lp_cmdline_exit(void)
{
}

module_init(lp_cmdline_init);
module_exit(lp_cmdline_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("splicefleet lab: /proc/cmdline reads 'splicefleet: cmdline patched'");
MODULE_INFO(livepatch, "Y");
