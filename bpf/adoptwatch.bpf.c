//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * adoptwatch's kernel side: every entry point (SEC program) is in this file;
 * the helpers they use are in headers, one concern each, each standing alone:
 *
 *   records.h             the records sent to user space (the only definition)
 *   kernel_types.h        the kernel fields read, as CO-RE relocations
 *   config.bpf.h          what the loader sets before loading
 *   maps.bpf.h            the maps, and the counters of what was dropped
 *   task_info.bpf.h       who a task is: pid, start, session, comm
 *   scope_cgroups.bpf.h   the cgroups --unit and --container chose (a map user space keeps current)
 *   watch.bpf.h           the per-process watch flag: entry, seed, cgroup, or watch_all
 *   lineage.bpf.h         each watched process carries its ancestry
 *   adopt.bpf.h           build and send one adoption record
 *   adoptee.bpf.h         follow each adopted process to its exit and release
 *   adopt_exit_walk.bpf.h the portable fallback: exit snapshot + final sched_switch
 *   task_records.bpf.h    fork/exec/exit records, only when user space asks (--all)
 *   copies.bpf.h          spare copies of the fork/exec/exit programs (preemption)
 *
 * User space loads only the programs of the hook it chose (loader/).
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <asm/ptrace.h> /* the architecture's struct pt_regs, which BPF_KPROBE reads */
#include <bpf/bpf_tracing.h>
#include "records.h"
#include "config.bpf.h"
#include "maps.bpf.h"
#include "task_info.bpf.h"
#include "scope_cgroups.bpf.h"
#include "watch.bpf.h"
#include "lineage.bpf.h"
#include "adopt.bpf.h"
#include "adoptee.bpf.h"
#include "adopt_exit_walk.bpf.h"
#include "task_records.bpf.h"
#include "copies.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Make the record types part of the object's BTF so bpf2go generates them. */
const struct adopt_record *unused_adopt_record __attribute__((unused));
const struct task_record *unused_task_record __attribute__((unused));
const struct adoptee_record *unused_adoptee_record __attribute__((unused));
const enum adoptee_flag *unused_adoptee_flag __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum record_kind *unused_record_kind __attribute__((unused));
const enum adopt_hook *unused_adopt_hook __attribute__((unused));
const enum reaper_flag *unused_reaper_flag __attribute__((unused));
const enum lineage_flag *unused_lineage_flag __attribute__((unused));
const enum watch_flag *unused_watch_flag __attribute__((unused));
const enum seed_state *unused_seed_state __attribute__((unused));
const enum exit_flag *unused_exit_flag __attribute__((unused));
const enum limit *unused_limit __attribute__((unused));

/* ---- Lineage, adoptees, and fork/exec/exit records: whatever the hook ---- */

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

static __always_inline void handle_exec(struct task_struct *task)
{
	struct lineage *lin = lineage_of(task);
	bool off;

	if (lin)
		lin->self_flags |= LINEAGE_EXECED;
	if (emit_task_records && is_watched(task, lin, task, &off))
		record_exec(task);
}

static __always_inline void handle_exit(void *ctx, struct task_struct *task, __u32 copy)
{
	if (exit_walk && BPF_CORE_READ(task, pid) == BPF_CORE_READ(task, tgid))
		resolve_pending_child(task, true); /* first: it may make task an adoptee */
	adoptee_exit(task);
	if (emit_task_records && watched(task))
		record_exit(task);
	if (exit_walk)
		snapshot_children(ctx, task, copy); /* last: it may tail-call */
}

COPIES(sched_process_fork, on_fork, 0, child, handle_fork(parent, child, copy),
       struct task_struct *parent, struct task_struct *child)
COPIES(sched_process_exec, on_exec, 1, task, handle_exec(task), struct task_struct *task)
COPIES(sched_process_exit, on_exit, 2, task, handle_exit(ctx, task, copy), struct task_struct *task)

/* The task struct is freed: its process can no longer be adopted or be an ancestor
 * that user space must find, so its lineage entry goes. */
SEC("raw_tp/sched_process_free")
int BPF_PROG(on_free, struct task_struct *task)
{
	struct proc_key key;

	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
		return 0; /* a thread: the process's entry belongs to its leader */
	if (exit_walk)
		resolve_pending_child(task, false); /* needs the lineage entry: first */
	adoptee_released(task);        /* after its adoption, if that was just now */
	key.pid = BPF_CORE_READ(task, tgid);
	key.pad = 0;
	key.start_ns = BPF_CORE_READ(task, start_boottime);
	bpf_map_delete_elem(&lineages, &key);
	if (seeds_in_use() && seed_of(task))
		bpf_map_delete_elem(&seeds, &key.pid);
	return 0;
}

/* ---- The exact hook ----
 * forget_original_parent() calls reparent_leader() for every child adopted
 * outside the dying thread group, and that calls kill_orphaned_pgrp(child,
 * old_parent) after child->real_parent already points at the new reaper.
 * exit_notify() also calls it with parent == NULL: not an adoption. Re-parents
 * to a sibling thread never get here.
 */

SEC("fentry/kill_orphaned_pgrp")
int BPF_PROG(adopt_fentry, struct task_struct *child, struct task_struct *old_parent)
{
	if (old_parent)
		report_adoption((__u64)child, (__u64)old_parent, HOOK_EXACT,
				BPF_CORE_READ(child, exit_state));
	return 0;
}

/* The same hook where fentry is refused but kprobes exist. */
SEC("kprobe/kill_orphaned_pgrp")
int BPF_KPROBE(adopt_kprobe, struct task_struct *child, struct task_struct *old_parent)
{
	if (old_parent)
		report_adoption((__u64)child, (__u64)old_parent, HOOK_EXACT,
				BPF_CORE_READ(child, exit_state));
	return 0;
}

/* ---- The exit-walk hook, phase 2 (phase 1 is on_exit) ---- */

/* Phase 1 goes on here when a thread has more children than one run walks:
 * one program per copy of on_exit (snapshot_progs[copy]). */
SEC("raw_tp")
int BPF_PROG(snapshot_more, struct task_struct *task)
{
	snapshot_continue(ctx, task, 0);
	return 0;
}

SEC("raw_tp")
int BPF_PROG(snapshot_more_spare, struct task_struct *task)
{
	snapshot_continue(ctx, task, 1);
	return 0;
}

SEC("raw_tp")
int BPF_PROG(snapshot_more_spare2, struct task_struct *task)
{
	snapshot_continue(ctx, task, 2);
	return 0;
}

/* ... and beyond EXIT_WALK_MAX_CHILDREN, only counts (count_progs[copy]). */
SEC("raw_tp")
int BPF_PROG(count_more, struct task_struct *task)
{
	count_continue(ctx, task, 0);
	return 0;
}

SEC("raw_tp")
int BPF_PROG(count_more_spare, struct task_struct *task)
{
	count_continue(ctx, task, 1);
	return 0;
}

SEC("raw_tp")
int BPF_PROG(count_more_spare2, struct task_struct *task)
{
	count_continue(ctx, task, 2);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev)
{
	resolve_children(ctx, prev);
	return 0;
}

/* Phase 2 goes on here (resolve_progs[0]). */
SEC("raw_tp")
int BPF_PROG(resolve_more, bool preempt, struct task_struct *prev)
{
	resolve_continue(ctx, prev);
	return 0;
}
