/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Lineage: at fork the child copies its parent's ancestry and appends the
 * parent as it is now (pid, start, comm, session). So when a daemon is adopted
 * its whole chain is at hand, although the intermediates have long exited, and
 * no record per fork had to reach user space.
 */

static __always_inline void append_ancestor(struct lineage *lin, struct task_struct *parent,
					    __u32 parent_flags)
{
	__u32 n = lin->len;

	if (n >= LINEAGE_MAX) {
		/* Full: drop the oldest generation. */
		for (int i = 0; i < LINEAGE_MAX - 1; i++)
			lin->gen[i] = lin->gen[i + 1];
		n = LINEAGE_MAX - 1;
		lin->flags |= LINEAGE_TRUNCATED;
	}
	struct ancestor *a = &lin->gen[n & (LINEAGE_MAX - 1)];

	a->pid = BPF_CORE_READ(parent, tgid);
	a->sid = session_of(parent);
	a->pgid = pgrp_of(parent);
	a->flags = parent_flags & LINEAGE_EXECED;
	a->start_ns = process_start(parent);
	BPF_CORE_READ_STR_INTO(&a->comm, parent, comm);
	lin->len = n + 1;
}

/* The child of an explicitly unwatched parent stays unwatched even where
 * entry-less processes count as watched (watch_all, a cgroup): it gets an entry
 * that says so. */
static __always_inline void mark_unwatched(struct proc_key *child_key, struct lineage *parent_lin,
					   __u32 copy)
{
	struct lineage *lin = parent_lin;

	if (!watch_all && !watch_cgroup_id)
		return; /* entry-less children are unwatched anyway */
	if (!lin) {
		lin = bpf_map_lookup_elem(&lineage_scratch, &copy);
		if (!lin)
			return;
		__builtin_memset(lin, 0, sizeof(*lin));
		lin->watch = WATCH_OFF;
	}
	/* The parent's entry already says WATCH_OFF: store it as the child's. */
	if (bpf_map_update_elem(&lineages, child_key, lin, BPF_ANY))
		count(COUNTER_UNWATCH_MARKS_FULL);
}

/* Returns the new child's lineage entry, or NULL when the child is not watched. */
static __always_inline struct lineage *inherit_lineage(struct task_struct *parent,
							struct task_struct *child, __u32 copy)
{
	struct proc_key parent_key, child_key;
	bool off;

	proc_key_of(parent, &parent_key);
	struct lineage *parent_lin = bpf_map_lookup_elem(&lineages, &parent_key);
	if (!parent_lin && !watch_all && !watch_cgroup_id && !seeds_in_use())
		return NULL; /* unwatched tree, nothing seeded: the cheapest way out */

	child_key.pid = BPF_CORE_READ(child, tgid);
	child_key.pad = 0;
	child_key.start_ns = BPF_CORE_READ(child, start_boottime);
	if (!is_watched(parent, parent_lin, child, &off)) {
		if (off)
			mark_unwatched(&child_key, parent_lin, copy);
		return NULL;
	}

	struct lineage *lin = bpf_map_lookup_elem(&lineage_scratch, &copy);
	if (!lin)
		return NULL;
	if (parent_lin) {
		*lin = *parent_lin;
	} else {
		/* The parent predates adoptwatch: user space knows its ancestors. */
		__builtin_memset(lin, 0, sizeof(*lin));
		lin->flags = LINEAGE_PREEXISTING;
	}
	append_ancestor(lin, parent, parent_lin ? parent_lin->self_flags : 0);
	lin->self_flags = 0;
	lin->watch = 0;

	if (bpf_map_update_elem(&lineages, &child_key, lin, BPF_ANY)) {
		count(COUNTER_LINEAGE_FULL);
		return NULL;
	}
	return lin;
}

static __always_inline void record_fork(struct task_struct *parent, struct task_struct *child);
static __always_inline void record_exec(struct task_struct *task);
static __always_inline void record_exit(struct task_struct *task);
static __always_inline void snapshot_children(struct task_struct *task, __u32 copy);
static __always_inline void resolve_freed_child(struct task_struct *child);

static __always_inline void handle_fork(struct task_struct *parent, struct task_struct *child,
					__u32 copy)
{
	/* A new thread is not a new process: it shares its process's lineage. */
	if (BPF_CORE_READ(child, tgid) == BPF_CORE_READ(parent, tgid))
		return;
	if (!inherit_lineage(parent, child, copy))
		return;
	if (emit_task_records)
		record_fork(parent, child);
}

static __always_inline void handle_exec(struct task_struct *task, __u32 copy)
{
	(void)copy; /* exec builds nothing in scratch */
	struct lineage *lin = lineage_of(task);
	bool off;

	if (lin)
		lin->self_flags |= LINEAGE_EXECED;
	if (emit_task_records && is_watched(task, lin, task, &off))
		record_exec(task);
}

static __always_inline void handle_exit(struct task_struct *task, __u32 copy)
{
	if (exit_walk)
		snapshot_children(task, copy);
	if (emit_task_records && watched(task))
		record_exit(task);
}

/*
 * Copies. Recent kernels (7.x) may preempt a running BPF program, and the
 * kernel skips a program that is already running on the CPU (a "recursion
 * miss"): an exit on this CPU while on_exit is preempted there would go unseen,
 * and with it the adoptions it causes. So each of these programs is attached
 * three times. Each copy claims the event (the task it is about) in a per-CPU
 * slot and does the work only if no earlier copy claimed it: one handles it
 * normally; while a copy is preempted, the next one takes the events it
 * misses. The last copy clears the slot, so the next event about the same
 * task (a second exec, or a new task in a reused task struct) is claimed anew.
 * An event is unseen only if all three are busy on that CPU; the last copy's
 * recursion misses bound that (Counters.UnseenEvents). Each copy builds its
 * values in its own scratch slot (`copy`): a preempted copy's half-built value
 * must not be overwritten by the copy that takes over, and no copy can run
 * twice at once on one CPU. After an interleaving
 * an event may be handled twice: harmless, as the work is idempotent (a
 * --all record may then be printed twice).
 */
#define COPIES(tp, name, slot_index, task_arg, handle, ...)                     \
	static __always_inline bool name##_claim(struct task_struct *t, bool last) \
	{                                                                       \
		__u32 slot = slot_index;                                        \
		__u64 *claimed = bpf_map_lookup_elem(&claimed_event, &slot);    \
		if (!claimed)                                                   \
			return true;                                            \
		if (*claimed == (__u64)t) {                                     \
			if (last)                                               \
				*claimed = 0;                                   \
			return false; /* an earlier copy has it */              \
		}                                                               \
		*claimed = last ? 0 : (__u64)t;                                 \
		return true;                                                    \
	}                                                                       \
	SEC("raw_tp/" #tp)                                                      \
	int BPF_PROG(name, __VA_ARGS__)                                         \
	{                                                                       \
		const __u32 copy = 0;                                           \
		if (name##_claim(task_arg, false))                              \
			handle;                                                 \
		return 0;                                                       \
	}                                                                       \
	SEC("raw_tp/" #tp)                                                      \
	int BPF_PROG(name##_spare, __VA_ARGS__)                                 \
	{                                                                       \
		const __u32 copy = 1;                                           \
		if (name##_claim(task_arg, false)) {                            \
			count(COUNTER_SPARE_RUNS);                              \
			handle;                                                 \
		}                                                               \
		return 0;                                                       \
	}                                                                       \
	SEC("raw_tp/" #tp)                                                      \
	int BPF_PROG(name##_spare2, __VA_ARGS__)                                \
	{                                                                       \
		const __u32 copy = 2;                                           \
		if (name##_claim(task_arg, true)) {                             \
			count(COUNTER_SPARE_RUNS);                              \
			handle;                                                 \
		}                                                               \
		return 0;                                                       \
	}

COPIES(sched_process_fork, on_fork, 0, child, handle_fork(parent, child, copy),
       struct task_struct *parent, struct task_struct *child)
COPIES(sched_process_exec, on_exec, 1, task, handle_exec(task, copy), struct task_struct *task)
COPIES(sched_process_exit, on_exit, 2, task, handle_exit(task, copy), struct task_struct *task)

/* The task struct is freed: its process can no longer be adopted or be an ancestor
 * that user space must find, so its lineage entry goes. */
SEC("raw_tp/sched_process_free")
int BPF_PROG(on_free, struct task_struct *task)
{
	struct proc_key key;

	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
		return 0; /* a thread: the process's entry belongs to its leader */
	if (exit_walk)
		resolve_freed_child(task); /* needs the lineage entry: first */
	key.pid = BPF_CORE_READ(task, tgid);
	key.pad = 0;
	key.start_ns = BPF_CORE_READ(task, start_boottime);
	bpf_map_delete_elem(&lineages, &key);
	if (seeds_in_use() && seed_of(task))
		bpf_map_delete_elem(&seeds, &key.pid);
	return 0;
}
