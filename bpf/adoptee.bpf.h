/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Adoptees: each process whose adoption was reported is followed to its end,
 * so that user space can tell a reaper that does not reap. When its last
 * thread exits, an exit record (with the exit code and its parent then); when
 * it is released (sched_process_free of its group leader: reaped by its
 * parent, or autoreaped), a reaped record. Any other process costs one map
 * lookup at its exit and one at its free.
 *
 * Why sched_process_free: it is the tracepoint every kernel has where a
 * process is released (release_task() itself has none), and it fires for
 * every way of being released. It comes an RCU grace period after the
 * release (milliseconds), while unreaped zombies are told apart in seconds.
 *
 * An adoptee that had already exited when adopted (a zombie) gets its exit
 * record at once, flagged ADOPTEE_EXITED_BEFORE. One caught in the middle of
 * exiting (its exit tracepoint ran before it was adopted) gets only the
 * reaped record, flagged ADOPTEE_EXIT_UNSEEN.
 *
 * These records are sent without waking the reader (it polls, and the next
 * adoption wakes it): in a storm of short-lived daemons they are two per
 * adoption, and a wakeup costs far more than a record.
 */
#ifndef ADOPTWATCH_ADOPTEE_BPF_H
#define ADOPTWATCH_ADOPTEE_BPF_H

#include "kernel_types.h"
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "records.h"
#include "maps.bpf.h"
#include "task_info.bpf.h"

/* What is known of an adoptee until it is released. */
struct adoptee {
	__u64 exit_ns;   /* 0 until its exit is seen */
	__u32 exit_code;
	__u32 flags;     /* enum adoptee_flag */
	struct task_ident reaper; /* its parent when it exited */
};

/* Keyed by process identity: the adoptees not yet released. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct proc_key);
	__type(value, struct adoptee);
} adoptees SEC(".maps");

/* Send the exit record of adoptee a (the process of task) and remember it. */
static __always_inline void adoptee_exited(struct task_struct *task, struct adoptee *a, __u32 flags)
{
	struct adoptee_record *rec = bpf_ringbuf_reserve(&records, sizeof(*rec), 0);

	if (!rec) {
		count(COUNTER_LOST_ADOPTEE);
		return;
	}
	fill_header(&rec->hdr, RECORD_ADOPTEE_EXIT);
	rec->exit_ns = rec->hdr.ts_ns;
	rec->exit_code = process_exit_code(task);
	rec->flags = flags;
	fill_ident(&rec->adoptee, task);
	fill_ident(&rec->reaper, BPF_CORE_READ(task, real_parent));
	a->exit_ns = rec->exit_ns;
	a->exit_code = rec->exit_code;
	a->flags = flags;
	a->reaper = rec->reaper;
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP); /* the reader also polls */
}

/* The process of task was adopted and reported: follow it. */
static __always_inline void follow_adoptee(struct task_struct *task)
{
	struct adoptee init = {};
	struct proc_key key;

	proc_key_of(task, &key);
	/* Adopted again (its reaper died first): what is known stays. */
	int err = bpf_map_update_elem(&adoptees, &key, &init, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		count(COUNTER_ADOPTEES_FULL);
		return;
	}
	if (!BPF_CORE_READ(task, exit_state))
		return; /* alive: its exit is still to come */
	struct adoptee *a = bpf_map_lookup_elem(&adoptees, &key);
	if (a && !a->exit_ns)
		adoptee_exited(task, a, ADOPTEE_EXITED_BEFORE);
}

/* sched_process_exit: the last thread of an adoptee exits. */
static __always_inline void adoptee_exit(struct task_struct *task)
{
	if (BPF_CORE_READ(task, signal, live.counter))
		return; /* not the last thread */
	struct proc_key key;
	proc_key_of(task, &key);
	struct adoptee *a = bpf_map_lookup_elem(&adoptees, &key);
	if (a && !a->exit_ns)
		adoptee_exited(task, a, 0);
}

/* sched_process_free of a group leader: an adoptee is released. */
static __always_inline void adoptee_released(struct task_struct *task)
{
	struct proc_key key;

	key.pid = BPF_CORE_READ(task, tgid);
	key.pad = 0;
	key.start_ns = BPF_CORE_READ(task, start_boottime);
	struct adoptee *a = bpf_map_lookup_elem(&adoptees, &key);
	if (!a)
		return;
	struct adoptee_record *rec = bpf_ringbuf_reserve(&records, sizeof(*rec), 0);
	if (!rec) {
		count(COUNTER_LOST_ADOPTEE);
		bpf_map_delete_elem(&adoptees, &key);
		return;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	fill_header(&rec->hdr, RECORD_ADOPTEE_REAPED);
	rec->exit_ns = a->exit_ns;
	rec->flags = a->flags & ~ADOPTEE_EXITED_BEFORE;
	if (a->exit_ns) {
		rec->exit_code = a->exit_code;
		rec->reaper = a->reaper;
	} else {
		rec->exit_code = process_exit_code(task);
		rec->flags |= ADOPTEE_EXIT_UNSEEN;
	}
	/* Being freed, it has no pids or parent worth reading any more. */
	rec->adoptee.pid = key.pid;
	rec->adoptee.tid = key.pid;
	rec->adoptee.start_ns = key.start_ns;
	BPF_CORE_READ_STR_INTO(&rec->adoptee.comm, task, comm);
	rec->adoptee.cgroup_id = cgroup_id_of(task);
	bpf_map_delete_elem(&adoptees, &key);
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP); /* the reader also polls */
}

#endif
