// SPDX-License-Identifier: GPL-2.0
/*
 * lp_refuse: a lab livepatch that the kernel must refuse to enable.
 *
 * Its vmlinux object has a pre_patch callback that fails. The livepatch
 * core runs pre_patch callbacks inside klp_enable_patch(), before any
 * function is redirected; a failure makes klp_enable_patch() undo
 * everything and return the error, so this module's init fails and the
 * module load (finit_module) fails with EINVAL, leaving the kernel as it
 * was. EINVAL rather than EPERM: a kernel in lockdown refuses unsigned
 * modules with EPERM, and the lab tells the two cases apart.
 *
 * The function it names, cmdline_proc_show(), is never replaced.
 */
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static int lp_refuse_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "splicefleet: refused patch ran\n");
	return 0;
}

static int lp_refuse_pre_patch(struct klp_object *obj)
{
	pr_err("lp_refuse: pre_patch callback refuses to patch %s: this lab patch always fails, to test that a refused livepatch leaves the kernel unchanged\n",
	       obj->name ? obj->name : "vmlinux");
	return -EINVAL;
}

static struct klp_func lp_refuse_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = lp_refuse_proc_show,
	},
	{}
};

static struct klp_object lp_refuse_objs[] = {
	{
		.name = NULL, /* vmlinux */
		.funcs = lp_refuse_funcs,
		.callbacks = {
			.pre_patch = lp_refuse_pre_patch,
		},
	},
	{}
};

static struct klp_patch lp_refuse_patch = {
	.mod = THIS_MODULE,
	.objs = lp_refuse_objs,
};

static int __init lp_refuse_init(void)
{
	return klp_enable_patch(&lp_refuse_patch);
}

static void __exit lp_refuse_exit(void)
{
}

module_init(lp_refuse_init);
module_exit(lp_refuse_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("splicefleet lab: a livepatch whose pre_patch callback fails");
MODULE_INFO(livepatch, "Y");
