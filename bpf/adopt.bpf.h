/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* One adoption record: the child, its previous and new parent, and its lineage. */
#ifndef ADOPTWATCH_ADOPT_BPF_H
#define ADOPTWATCH_ADOPT_BPF_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "records.h"
#include "maps.bpf.h"
#include "task_info.bpf.h"
#include "watch.bpf.h"
#include "adoptee.bpf.h"

/* What user space needs to name the reaper: namespace reaper, subreaper, or neither. */
static __always_inline __u32 reaper_flags_of(struct task_struct *child,
					     struct task_struct *new_parent, __u32 *ns_level)
{
	struct pid *pid = BPF_CORE_READ(child, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct pid_namespace *ns;
	__u32 flags = 0;

	/* numbers[] has one entry per namespace level; the child's own is the deepest. */
	ns = BPF_CORE_READ(pid, numbers[level & 31].ns);
	*ns_level = level;
	if (BPF_CORE_READ(ns, child_reaper, tgid) == BPF_CORE_READ(new_parent, tgid))
		flags |= REAPER_IS_NS_CHILD_REAPER;

	struct signal_struct *sig = BPF_CORE_READ(new_parent, signal);
	if (BPF_CORE_READ_BITFIELD_PROBED(sig, is_child_subreaper))
		flags |= REAPER_IS_CHILD_SUBREAPER;
	return flags;
}

/*
 * The reader's promise (loader/reader.go): it looks at the ring again by this
 * time (bpf_ktime_get_boot_ns, the records' clock) whatever happens. 0: no
 * promise. User space writes it through the mapped .bss when adoptions come
 * faster than one per 500 µs; adoptions sent well before the promised time
 * then need no wakeup, and are taken together at the next look.
 */
__u64 reader_looks_by_ns = 0;

/* Time a record has to be committed between its timestamp and the reader's look. */
#define WAKEUP_MARGIN_NS 100000

/*
 * A wakeup costs the reader far more than a record (issue 12): an adoption
 * wakes the reader unless the reader has promised to look anyway well after
 * this record. Without a promise (adoptions are rare, or the reader has
 * withdrawn it) each adoption wakes the reader at once.
 */
static __always_inline __u64 adoption_wakeup(__u64 ts)
{
	__u64 by = *(volatile __u64 *)&reader_looks_by_ns;

	return by > ts + WAKEUP_MARGIN_NS ? BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP;
}

/* exit_state: the child's, read when it was known to be re-parented (the
 * exit walk reads it before another program can take the child: read later,
 * a child that exits right after being adopted would look adopted a zombie). */
static __always_inline void emit_adoption(struct task_struct *child,
					  struct task_struct *old_parent, __u32 hook,
					  __u32 exit_state)
{
	count(COUNTER_ADOPTIONS);
	if (!watched(child)) {
		count(COUNTER_UNWATCHED_ADOPTIONS);
		return;
	}
	/* Follow it first: the kernel set its real_parent before this hook ran,
	 * and a child that sees that and exits on another CPU must find itself
	 * followed, or its exit goes unseen. Its exit record may then come
	 * before the adoption: user space keeps it for the adoption. */
	follow_adoptee(child);
	struct task_struct *new_parent = BPF_CORE_READ(child, real_parent);

	struct adopt_record *rec = bpf_ringbuf_reserve(&records, sizeof(*rec), 0);
	if (!rec) {
		count(COUNTER_LOST_ADOPT);
		return;
	}
	fill_header(&rec->hdr, RECORD_ADOPT);
	rec->hook = hook;
	rec->reaper_flags = reaper_flags_of(child, new_parent, &rec->ns_level);
	rec->exit_state = exit_state;
	/* With the pids the reaper itself sees (in a container: the container's). */
	struct pid_namespace *reaper_ns = pid_ns_of(new_parent);
	fill_ident_seen_by(&rec->child, child, reaper_ns);
	fill_ident_seen_by(&rec->prev_parent, old_parent, reaper_ns);
	fill_ident_seen_by(&rec->new_parent, new_parent, reaper_ns);
	struct lineage *lin = lineage_of(child);
	if (lin && lin->len) {
		rec->lineage_len = lin->len;
		rec->lineage_flags = lin->flags;
		__builtin_memcpy(rec->lineage, lin->gen, sizeof(rec->lineage));
	} else {
		/* Started before adoptwatch: user space fills in the lineage. */
		rec->lineage_len = 0;
		rec->lineage_flags = LINEAGE_PREEXISTING;
		__builtin_memset(rec->lineage, 0, sizeof(rec->lineage));
	}
	bpf_ringbuf_submit(rec, adoption_wakeup(rec->hdr.ts_ns));
}

/*
 * Every hook reports through this global function: the verifier checks a
 * global function once, on its own, instead of once per call site, and the
 * exit walk calls it for each of up to 128 children per program run, in a
 * loop the verifier unrolls (5.10 has no bpf_loop). Its arguments are plain
 * numbers, as global functions require: the tasks are only ever probe-read.
 */
__noinline int report_adoption(__u64 child, __u64 old_parent, __u32 hook, __u32 exit_state)
{
	emit_adoption((struct task_struct *)child, (struct task_struct *)old_parent, hook, exit_state);
	return 0;
}

#endif
