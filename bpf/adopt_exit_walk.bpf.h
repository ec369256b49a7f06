/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The portable fallback, in two phases. Predicting the reaper at exit time
 * (re-doing find_new_reaper()) loses adoptions: children hang off the thread
 * that forked them, and in an exit_group the sibling threads become
 * PF_EXITING only as each gets to run. So the kernel's own choice is read
 * after it has been made:
 *   1. sched_process_exit, before exit_notify(): remember the exiting thread's
 *      children (task pointer and pid of each).
 *   2. that thread's final sched_switch (exit_state is set only after
 *      exit_notify() re-parented everything): read each child's real_parent.
 *      A sibling thread of the same process took it: not an adoption.
 *      Anyone else: an adoption, exactly as the kernel chose the reaper.
 * A child can be reaped by its new parent and freed before phase 2 runs (a
 * slow or preempted CPU, with preemptible RCU): sched_process_free then
 * resolves it instead, while its task struct is still valid (see
 * pending_children).
 */
#ifndef ADOPTWATCH_ADOPT_EXIT_WALK_BPF_H
#define ADOPTWATCH_ADOPT_EXIT_WALK_BPF_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "config.bpf.h"
#include "maps.bpf.h"
#include "watch.bpf.h"
#include "adopt.bpf.h"

static __always_inline void snapshot_children(struct task_struct *task, __u32 copy)
{
	struct list_head *head = &task->children;
	struct list_head *pos = BPF_CORE_READ(task, children.next);
	__u32 tid;

	if (pos == head)
		return; /* no children: the common case */

	struct children_snapshot *snap = bpf_map_lookup_elem(&snapshot_scratch, &copy);
	if (!snap)
		return;
	snap->count = 0;
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (pos == head)
			break;
		/* list_entry(pos, struct task_struct, sibling) */
		struct task_struct *child =
			(void *)pos - bpf_core_field_offset(struct task_struct, sibling);
		pos = BPF_CORE_READ(child, sibling.next);
		/* Scoped: follow only watched children, and skip the map when none is. */
		if (!watch_all && !watched(child))
			continue;
		__u32 n = snap->count;
		if (n >= MAX_CHILDREN)
			break;
		snap->kids[n].task = (__u64)child;
		snap->kids[n].pid = BPF_CORE_READ(child, pid);
		snap->count = n + 1;
	}
	if (pos != head)
		count(COUNTER_CHILDREN_TRUNCATED);
	if (!snap->count)
		return;

	tid = BPF_CORE_READ(task, pid);
	if (bpf_map_update_elem(&exiting_children, &tid, snap, BPF_ANY)) {
		count(COUNTER_SNAPSHOT_FULL);
		return;
	}
	struct pending_child pending = {.parent_task = (__u64)task, .parent_tid = tid};
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (i >= snap->count)
			break;
		pending.child_task = snap->kids[i].task;
		if (bpf_map_update_elem(&pending_children, &snap->kids[i].pid, &pending, BPF_ANY))
			count(COUNTER_SNAPSHOT_FULL);
	}
}

/* Take a pending child for the snapshot of thread parent_tid: true if that
 * snapshot still owns it and nobody took it first. */
static __always_inline bool claim_child(__u32 child_pid, __u32 parent_tid)
{
	struct pending_child *p = bpf_map_lookup_elem(&pending_children, &child_pid);

	if (!p || p->parent_tid != parent_tid)
		return false; /* taken at its free, or a later snapshot owns it */
	return bpf_map_delete_elem(&pending_children, &child_pid) == 0;
}

/* Report child if it no longer belongs to the dying thread's process. */
static __always_inline void resolve_child(struct task_struct *child, struct task_struct *dying)
{
	if (BPF_CORE_READ(child, real_parent, tgid) == BPF_CORE_READ(dying, tgid))
		return; /* a sibling thread took it: a threaded re-parent */
	emit_adoption(child, dying, HOOK_EXIT_WALK);
}

/* Called from sched_process_free, before the lineage entry goes. */
static __always_inline void resolve_freed_child(struct task_struct *child)
{
	__u32 pid = BPF_CORE_READ(child, pid);
	struct pending_child *p = bpf_map_lookup_elem(&pending_children, &pid);

	if (!p || p->child_task != (__u64)child)
		return;
	struct task_struct *dying = (struct task_struct *)p->parent_task;
	if (bpf_map_delete_elem(&pending_children, &pid))
		return; /* the final switch took it meanwhile */
	resolve_child(child, dying);
}

#endif
