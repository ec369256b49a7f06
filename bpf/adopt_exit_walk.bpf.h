/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The portable fallback, in two phases (see DESIGN.md for why prediction at
 * exit time alone loses adoptions):
 *   1. sched_process_exit, before exit_notify(): remember the exiting thread's
 *      children (task pointer and pid of each).
 *   2. that thread's final sched_switch (exit_state is set only after
 *      exit_notify() re-parented everything): read each child's real_parent.
 *      A sibling thread of the same process took it: not an adoption.
 *      Anyone else: an adoption, exactly as the kernel chose the reaper.
 */

static __always_inline void snapshot_children(struct task_struct *task)
{
	struct list_head *head = &task->children;
	struct list_head *pos = BPF_CORE_READ(task, children.next);
	__u32 zero = 0, tid;

	if (pos == head)
		return; /* no children: the common case */

	struct children_snapshot *snap = bpf_map_lookup_elem(&snapshot_scratch, &zero);
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
	if (bpf_map_update_elem(&exiting_children, &tid, snap, BPF_ANY))
		count(COUNTER_SNAPSHOT_FULL);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev)
{
	/* Runs on every context switch: leave at once unless prev has exited. */
	if (!BPF_CORE_READ(prev, exit_state))
		return 0;

	__u32 tid = BPF_CORE_READ(prev, pid);
	struct children_snapshot *snap = bpf_map_lookup_elem(&exiting_children, &tid);
	if (!snap)
		return 0;

	__u32 dying_tgid = BPF_CORE_READ(prev, tgid);
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (i >= snap->count)
			break;
		struct task_struct *child = (struct task_struct *)snap->kids[i].task;
		if (BPF_CORE_READ(child, pid) != snap->kids[i].pid) {
			count(COUNTER_STALE_CHILD);
			continue;
		}
		if (BPF_CORE_READ(child, real_parent, tgid) == dying_tgid)
			continue; /* a sibling thread took it: a threaded re-parent */
		emit_adoption(child, prev, HOOK_EXIT_WALK);
	}
	bpf_map_delete_elem(&exiting_children, &tid);
	return 0;
}
