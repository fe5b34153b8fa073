// SPDX-License-Identifier: GPL-2.0
/*
 * lp_version: a lab livepatch for Debian's 6.1 cloud kernel.
 *
 * Replaces version_proc_show() (fs/proc/version.c) so that reading
 * /proc/version shows a fixed line while the patch is enabled. It touches
 * a different function from lp_cmdline, so the two stack side by side.
 */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

/* Same signature as the original: static int version_proc_show(struct seq_file *m, void *v). */
static int lp_version_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "splicefleet: version patched\n");
	return 0;
}

static struct klp_func lp_version_funcs[] = {
	{
		.old_name = "version_proc_show",
		.new_func = lp_version_proc_show,
	},
	{}
};

static struct klp_object lp_version_objs[] = {
	{
		.name = NULL, /* vmlinux */
		.funcs = lp_version_funcs,
	},
	{}
};

static struct klp_patch lp_version_patch = {
	.mod = THIS_MODULE,
	.objs = lp_version_objs,
};

static int __init lp_version_init(void)
{
	return klp_enable_patch(&lp_version_patch);
}

static void __exit lp_version_exit(void)
{
}

module_init(lp_version_init);
module_exit(lp_version_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("splicefleet lab: /proc/version reads 'splicefleet: version patched'");
MODULE_INFO(livepatch, "Y");
