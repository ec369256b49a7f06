/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The exact hook. forget_original_parent() calls reparent_leader() for every
 * child adopted outside the dying thread group, and that calls
 * kill_orphaned_pgrp(child, old_parent) after child->real_parent already points
 * at the new reaper. exit_notify() also calls it with parent == NULL: not an
 * adoption. Re-parents to a sibling thread never get here.
 */

SEC("fentry/kill_orphaned_pgrp")
int BPF_PROG(adopt_fentry, struct task_struct *child, struct task_struct *old_parent)
{
	if (old_parent)
		emit_adoption(child, old_parent, HOOK_EXACT);
	return 0;
}

/* The same hook where fentry is refused but kprobes exist. */
SEC("kprobe/kill_orphaned_pgrp")
int adopt_kprobe(struct pt_regs *ctx)
{
	struct task_struct *child = (struct task_struct *)ctx->di;
	struct task_struct *old_parent = (struct task_struct *)ctx->si;

	if (old_parent)
		emit_adoption(child, old_parent, HOOK_EXACT);
	return 0;
}
