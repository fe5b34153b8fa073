// SPDX-License-Identifier: GPL-2.0
/*
 * livepatch_cmdline: a tiny livepatch used as a test fixture by splicefleet.
 *
 * It swaps the kernel's cmdline_proc_show() for a version that prints a
 * fixed sentence, so reading /proc/cmdline shows whether the patch is live.
 * The module is never loaded by the tests; they only read its ELF metadata
 * (.modinfo and the relocations of the klp_func table).
 */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static int splicefleet_cmdline_show(struct seq_file *sf, void *unused)
{
	seq_puts(sf, "this has been live patched\n");
	return 0;
}

/* Functions replaced in vmlinux; the table ends with an empty entry. */
static struct klp_func cmdline_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = splicefleet_cmdline_show,
	},
	{}
};

/* A NULL object name stands for vmlinux itself. */
static struct klp_object cmdline_objs[] = {
	{
		.name = NULL,
		.funcs = cmdline_funcs,
	},
	{}
};

static struct klp_patch cmdline_patch = {
	.mod = THIS_MODULE,
	.objs = cmdline_objs,
};

static int __init livepatch_cmdline_init(void)
{
	return klp_enable_patch(&cmdline_patch);
}

static void __exit livepatch_cmdline_exit(void)
{
	/* The livepatch core disables and frees the patch via sysfs. */
}

module_init(livepatch_cmdline_init);
module_exit(livepatch_cmdline_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("splicefleet test fixture: patch /proc/cmdline");
MODULE_INFO(livepatch, "Y");
