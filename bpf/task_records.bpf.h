/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fork/exec/exit records, sent only with --all. They are frequent, so the reader
 * is woken once every TASK_RECORDS_PER_WAKEUP records per CPU (it also polls on
 * a timer): a wakeup costs far more than the record.
 */
#ifndef ADOPTWATCH_TASK_RECORDS_BPF_H
#define ADOPTWATCH_TASK_RECORDS_BPF_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "records.h"
#include "maps.bpf.h"
#include "task_info.bpf.h"

#define TASK_RECORDS_PER_WAKEUP 64

/*
 * Reserve a task record, or count the loss and leave the calling function.
 * A macro, not a helper returning NULL: 5.10's verifier does not see that a
 * pointer checked once is still non-NULL when the caller checks it again, and
 * then reports the reservation as leaked on the impossible path.
 */
#define RESERVE_TASK_RECORD(rec, kind)                                          \
	struct task_record *rec = bpf_ringbuf_reserve(&records, sizeof(*rec), 0); \
	if (!rec) {                                                             \
		count(COUNTER_LOST_TASK);                                       \
		return;                                                         \
	}                                                                       \
	__builtin_memset(rec, 0, sizeof(*rec));                                 \
	fill_header(&rec->hdr, kind)

static __always_inline void submit_task_record(struct task_record *rec)
{
	__u32 zero = 0;
	__u64 *sent = bpf_map_lookup_elem(&task_records_sent, &zero);
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (sent) {
		*sent += 1;
		if (*sent % TASK_RECORDS_PER_WAKEUP == 0)
			flags = BPF_RB_FORCE_WAKEUP;
	}
	bpf_ringbuf_submit(rec, flags);
}

static __always_inline void record_fork(struct task_struct *parent, struct task_struct *child)
{
	RESERVE_TASK_RECORD(rec, RECORD_FORK);
	fill_ident(&rec->task, parent);
	fill_ident(&rec->other, child);
	submit_task_record(rec);
}

static __always_inline void record_exec(struct task_struct *task)
{
	RESERVE_TASK_RECORD(rec, RECORD_EXEC);
	fill_ident(&rec->task, task);
	submit_task_record(rec);
}

static __always_inline void record_exit(struct task_struct *task)
{
	RESERVE_TASK_RECORD(rec, RECORD_EXIT);
	struct signal_struct *sig = BPF_CORE_READ(task, signal);

	fill_ident(&rec->task, task);
	/* signal->live was decremented before this tracepoint: 0 means the last thread. */
	if (BPF_CORE_READ(sig, live.counter) == 0) {
		rec->flags |= EXIT_GROUP_DEAD;
		rec->exit_code = process_exit_code(task);
	} else {
		rec->exit_code = BPF_CORE_READ(task, exit_code);
	}
	submit_task_record(rec);
}

#endif
