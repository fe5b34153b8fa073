// SPDX-License-Identifier: GPL-2.0
/*
 * fs/proc/cmdline.c of Debian's 6.1 kernel with a patch applied:
 * /proc/cmdline starts with "splicefleet: ". klpgen's kernel test builds
 * it with the kernel's flags (as a module object, hence module_init for
 * fs_initcall) and generates a livepatch that replaces
 * cmdline_proc_show. The original reads:
 *
 *	seq_puts(m, saved_command_line);
 *	seq_putc(m, '\n');
 */
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>

static int cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "splicefleet: ");
	seq_puts(m, saved_command_line);
	seq_putc(m, '\n');
	return 0;
}

static int __init proc_cmdline_init(void)
{
	proc_create_single("cmdline", 0, NULL, cmdline_proc_show);
	return 0;
}
module_init(proc_cmdline_init);
