// SPDX-License-Identifier: GPL-2.0
/*
 * The smallest useful kernel module: one printk line on load, one on unload.
 * modvm's own end-to-end test loads and unloads it in a throw-away guest.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>

static int __init hello_init(void)
{
	pr_info("Hello, Kernel World!\n");
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("Goodbye, Kernel World!\n");
}

module_init(hello_init);
module_exit(hello_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Prints a greeting on load and a farewell on unload");
MODULE_AUTHOR("modvm developers");
