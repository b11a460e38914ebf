// SPDX-License-Identifier: GPL-2.0
/*
 * modvm's fault-injection helper, loaded before the module under test.
 *
 * When the module named `target` is coming, its init function is swapped
 * for a wrapper that arms the kernel's fail-nth counter of the loading
 * task (`current->fail_nth`, the field behind /proc/<pid>/fail-nth) for
 * the duration of init only. So only allocations made by init and by what
 * init calls are counted and failed, not the loader's own; `nth=0` only
 * counts them. The wrapper also prints where each section of the target
 * lies (one function symbol per section), so that frames of a module that
 * failed to load, and is gone, can still be named.
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/sched.h>

static char *target = "";
module_param(target, charp, 0400);
MODULE_PARM_DESC(target, "name of the module whose init is injected");
static unsigned int nth;
module_param(nth, uint, 0400);
MODULE_PARM_DESC(nth, "fail the nth allocation of its init (0: count them)");

static struct module *target_mod;
static int (*target_init)(void);
/* busybox's insmod loads again (init_module) when finit_module failed. */
static bool failed;
static int failure;

static void print_placement(struct module *mod)
{
	unsigned int shndx[64];
	unsigned int seen = 0, i, j;
	struct mod_kallsyms *ks;

	preempt_disable();
	ks = rcu_dereference_sched(mod->kallsyms);
	for (i = 0; ks && i < ks->num_symtab && seen < ARRAY_SIZE(shndx); i++) {
		const Elf_Sym *sym = &ks->symtab[i];
		char type = ks->typetab[i];

		if ((type != 't' && type != 'T') || !sym->st_value ||
		    ELF_ST_TYPE(sym->st_info) != STT_FUNC)
			continue;
		for (j = 0; j < seen && shndx[j] != sym->st_shndx; j++)
			;
		if (j < seen)
			continue;
		shndx[seen++] = sym->st_shndx;
		pr_info("modvm-faults: placed %s 0x%lx\n", ks->strtab + sym->st_name,
			(unsigned long)sym->st_value);
	}
	preempt_enable();
}

static int wrapped_init(void)
{
	unsigned int left;
	int ret;

	print_placement(target_mod);
	current->fail_nth = nth ? nth : UINT_MAX;
	ret = target_init();
	left = current->fail_nth;
	current->fail_nth = 0;
	if (!nth)
		pr_info("modvm-faults: counted %u\n", UINT_MAX - left);
	else if (left)
		pr_info("modvm-faults: not reached %u (counted %u)\n", nth, nth - left);
	else
		pr_info("modvm-faults: injected %u, init returned %d\n", nth, ret);
	failed = ret != 0;
	failure = ret;
	return ret;
}

/* The second load of a failed one: the same answer, init not run again. */
static int repeated_failure(void)
{
	return failure;
}

static int coming(struct notifier_block *nb, unsigned long state, void *data)
{
	struct module *mod = data;

	if (state != MODULE_STATE_COMING || strcmp(mod->name, target))
		return NOTIFY_DONE;
	if (!mod->init) {
		pr_info("modvm-faults: counted 0 (no init function)\n");
		return NOTIFY_DONE;
	}
	if (failed) {
		mod->init = repeated_failure;
		return NOTIFY_OK;
	}
	target_mod = mod;
	target_init = mod->init;
	mod->init = wrapped_init;
	return NOTIFY_OK;
}

static struct notifier_block nb = { .notifier_call = coming };

static int __init modvm_faults_init(void)
{
	return register_module_notifier(&nb);
}

static void __exit modvm_faults_exit(void)
{
	unregister_module_notifier(&nb);
}

module_init(modvm_faults_init);
module_exit(modvm_faults_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modvm: fail the nth allocation of a module's init");
