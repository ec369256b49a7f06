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
 * A child can exit, be reaped by its new parent and be freed before phase 2
 * runs (a slow or preempted CPU): its own exit, once it has moved, or else
 * sched_process_free resolves it instead, while its task struct is still
 * valid (see pending_children and resolve_pending_child).
 *
 * Many children (a prefork server's master dies). Up to EXIT_WALK_MAX_CHILDREN
 * are followed per exiting thread, on every kernel: 5.10 has no bpf_loop and
 * the verifier walks every iteration of a bounded loop, so each phase handles
 * a batch per program run and tail-calls itself for the next batch (a chain
 * of at least 33 runs on every kernel). Children are remembered in chunks of
 * EXIT_WALK_CHUNK, keyed by (thread, chunk index). Children beyond the limit,
 * or that found a map full, are only counted ("unfollowed"); at the final
 * switch, when it is known whether a sibling thread took them (not an
 * adoption), they are added to COUNTER_UNFOLLOWED: reported + unfollowed +
 * other losses = adoptions. An exit without children costs one read.
 */
#ifndef ADOPTWATCH_ADOPT_EXIT_WALK_BPF_H
#define ADOPTWATCH_ADOPT_EXIT_WALK_BPF_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "records.h"
#include "config.bpf.h"
#include "maps.bpf.h"
#include "watch.bpf.h"
#include "adopt.bpf.h"

#define EXIT_WALK_CHUNK 64 /* children per exit_chunks value */
#define EXIT_WALK_CHUNKS (EXIT_WALK_MAX_CHILDREN / EXIT_WALK_CHUNK)
/* Runs of one program in a tail-call chain, on every supported kernel: the
 * first plus 32 tail calls (MAX_TAIL_CALL_CNT was 32 before 5.17, 33 since). */
#define CHAIN_RUNS 33
/* Per run at exit: chunks remembered, or else children only counted. */
#define SNAPSHOT_CHUNKS_PER_RUN 4
#define COUNT_PER_RUN 256
/* Per run at the final switch: chunks resolved (each child may send a record). */
#define RESOLVE_CHUNKS_PER_RUN 2

_Static_assert(EXIT_WALK_MAX_CHILDREN % EXIT_WALK_CHUNK == 0, "whole chunks");
_Static_assert(EXIT_WALK_CHUNKS <= SNAPSHOT_CHUNKS_PER_RUN * CHAIN_RUNS,
	       "phase 1 must reach the limit within one chain");
_Static_assert(EXIT_WALK_CHUNKS <= RESOLVE_CHUNKS_PER_RUN * CHAIN_RUNS,
	       "phase 2 must resolve every chunk within one chain");

struct child_ref {
	__u64 task; /* struct task_struct *, only ever read with probe reads */
	__u32 pid;  /* to tell whether the pointer still names the same task */
	__u32 pad;
};

/* Up to EXIT_WALK_CHUNK children of an exiting thread, as they were just
 * before exit_notify() re-parented them. */
struct children_chunk {
	__u32 count;
	__u32 pad;
	struct child_ref kids[EXIT_WALK_CHUNK];
};

struct chunk_key {
	__u32 tid;   /* the exiting thread */
	__u32 index; /* 0, 1, ... in the order of its children list */
};

/* exiting_thread.reaper */
#define REAPER_SEEN 1    /* a followed child showed where the children went */
#define REAPER_SIBLING 2 /* ... to a sibling thread: not adoptions */

/* One exiting thread with children, from its exit to its final switch. */
struct exiting_thread {
	__u64 task;       /* the exiting thread (struct task_struct *) */
	__u64 pos;        /* phase 1: the next node of its children list to read */
	__u32 chunks;     /* chunks remembered in exit_chunks */
	__u32 resolved;   /* phase 2: chunks resolved so far */
	__u32 unfollowed; /* watched children neither remembered nor reported */
	__u32 reaper;     /* REAPER_SEEN, REAPER_SIBLING */
	__u32 direct;     /* not in exiting_threads (map full): count losses at once */
	__u32 pad;
};

/* A remembered child waiting for its exiting parent's final switch. */
struct pending_child {
	__u64 child_task;  /* the child (struct task_struct *): a freed task that had
	                      the same pid before is not it */
	__u64 parent_task; /* the exiting thread (struct task_struct *) */
	__u32 parent_tid;  /* which exiting thread owns the child now */
	__u32 pad;
};

/* Keyed by thread id, between sched_process_exit and the thread's final switch. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct exiting_thread);
} exiting_threads SEC(".maps");

/* The remembered children of the threads in exiting_threads. A prefork
 * master with 4096 children takes 64 chunks; a daemon's middle one. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct chunk_key);
	__type(value, struct children_chunk);
} exit_chunks SEC(".maps");

/*
 * Keyed by child pid: the children in exit_chunks, so that a child freed
 * (reaped by its new parent) before its old parent's final switch is resolved
 * at sched_process_free, while its task struct is still valid. Whoever deletes
 * the entry first (the final switch or the free) reports the child.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct pending_child);
} pending_children SEC(".maps");

/* A chunk being built, and the state of a walk whose thread found
 * exiting_threads full: one slot per copy of on_exit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct children_chunk);
} chunk_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct exiting_thread);
} walk_scratch SEC(".maps");

/* Tail calls: phase 1 continues in snapshot_more, then count_more (one
 * program per copy of on_exit, index = copy), phase 2 in resolve_more
 * (index 0). The loader fills them. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} snapshot_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} count_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} resolve_progs SEC(".maps");

static __always_inline struct task_struct *child_of_node(struct list_head *node)
{
	/* list_entry(node, struct task_struct, sibling) */
	return (void *)node - bpf_core_field_offset(struct task_struct, sibling);
}

static __always_inline struct list_head *children_head(struct task_struct *task)
{
	return (void *)task + bpf_core_field_offset(struct task_struct, children);
}

/* Remember up to EXIT_WALK_CHUNK children from pos on as chunk st->chunks.
 * Returns where the walk goes on. */
static __always_inline struct list_head *snapshot_chunk(struct task_struct *task, __u32 tid,
							struct list_head *pos,
							struct list_head *head,
							struct exiting_thread *st, __u32 copy)
{
	struct children_chunk *chunk = bpf_map_lookup_elem(&chunk_scratch, &copy);
	struct pending_child pending = {.parent_task = (__u64)task, .parent_tid = tid};

	if (!chunk)
		return head;
	chunk->count = 0;
	for (int i = 0; i < EXIT_WALK_CHUNK; i++) {
		if (pos == head)
			break;
		struct task_struct *child = child_of_node(pos);
		pos = BPF_CORE_READ(child, sibling.next);
		/* Whether it is watched is asked when it is reported (emit_adoption). */
		__u32 pid = BPF_CORE_READ(child, pid);
		pending.child_task = (__u64)child;
		if (bpf_map_update_elem(&pending_children, &pid, &pending, BPF_ANY)) {
			st->unfollowed++;
			continue;
		}
		__u32 n = chunk->count & (EXIT_WALK_CHUNK - 1); /* < 64: one per iteration */
		chunk->kids[n].task = (__u64)child;
		chunk->kids[n].pid = pid;
		chunk->count = n + 1;
	}
	if (!chunk->count)
		return pos;
	struct chunk_key key = {.tid = tid, .index = st->chunks};
	if (!bpf_map_update_elem(&exit_chunks, &key, chunk, BPF_ANY)) {
		st->chunks++;
		return pos;
	}
	/* Not remembered: nobody may report these children later either. */
	for (int i = 0; i < EXIT_WALK_CHUNK; i++) {
		if (i >= chunk->count)
			break;
		bpf_map_delete_elem(&pending_children, &chunk->kids[i].pid);
	}
	st->unfollowed += chunk->count;
	return pos;
}

/* Would this child's adoption be reported? As watched() asks it, but without
 * the walk up the cgroup tree, which is too long to verify for thousands of
 * children: a process without lineage entry nor seed counts as watch_all says
 * (in a --cgroup scope, one that predates adoptwatch is then not counted). */
static __always_inline __u32 counts_as_watched(struct task_struct *child, bool seeded)
{
	struct lineage *lin = lineage_of(child);
	__u32 w = watch_all;

	if (lin)
		w = !(lin->watch & WATCH_OFF);
	else if (seeded) {
		/* Seeds go at their process's free: no need to compare starts. */
		__u32 pid = BPF_CORE_READ(child, tgid);
		struct seed *s = bpf_map_lookup_elem(&seeds, &pid);
		if (s)
			w = s->state != SEED_UNWATCH;
	}
	return w;
}

/* Count, without remembering, the watched children from pos on. */
static __always_inline struct list_head *count_children(struct list_head *pos,
							struct list_head *head,
							struct exiting_thread *st)
{
	bool seeded = seeds_in_use();
	__u32 n = 0;

	for (int i = 0; i < COUNT_PER_RUN; i++) {
		if (pos == head)
			break;
		struct task_struct *child = child_of_node(pos);
		pos = BPF_CORE_READ(child, sibling.next);
		n += counts_as_watched(child, seeded);
	}
	st->unfollowed += n;
	return pos;
}

/* After a run of phase 1 stopped at pos: the next run (a tail call, which does
 * not return) or the end of the walk. */
static __always_inline void walk_next(void *ctx, struct list_head *pos, struct list_head *head,
				      struct exiting_thread *st, __u32 copy)
{
	st->pos = (__u64)pos;
	if (pos != head) {
		if (!st->direct && st->chunks < EXIT_WALK_CHUNKS)
			bpf_tail_call(ctx, &snapshot_progs, copy);
		else
			bpf_tail_call(ctx, &count_progs, copy);
		/* The chain is spent: children remain that were not even counted. */
		count(COUNTER_CHILDREN_TRUNCATED);
	}
	if (st->direct) {
		/* Nothing remembered: whatever the reaper, these are lost now. */
		count_n(COUNTER_UNFOLLOWED, st->unfollowed);
		st->unfollowed = 0;
	}
}

/* A run of phase 1 that remembers children, a batch of chunks. */
static __always_inline void snapshot_run(void *ctx, struct task_struct *task,
					 struct exiting_thread *st, __u32 copy)
{
	struct list_head *head = children_head(task);
	struct list_head *pos = (void *)st->pos;
	__u32 tid = BPF_CORE_READ(task, pid);

	for (int c = 0; c < SNAPSHOT_CHUNKS_PER_RUN; c++) {
		if (pos == head || st->direct || st->chunks >= EXIT_WALK_CHUNKS)
			break;
		pos = snapshot_chunk(task, tid, pos, head, st, copy);
	}
	walk_next(ctx, pos, head, st, copy);
}

/* A run of phase 1 that only counts, beyond the limit. */
static __always_inline void count_run(void *ctx, struct task_struct *task,
				      struct exiting_thread *st, __u32 copy)
{
	struct list_head *head = children_head(task);
	struct list_head *pos = count_children((void *)st->pos, head, st);

	walk_next(ctx, pos, head, st, copy);
}

/* Phase 1, from on_exit: start the walk of an exiting thread's children. */
static __always_inline void snapshot_children(void *ctx, struct task_struct *task, __u32 copy)
{
	struct list_head *head = children_head(task);
	struct list_head *first = BPF_CORE_READ(task, children.next);
	__u32 tid;

	if (first == head)
		return; /* no children: the common case */
	remember_exit_pids(task); /* they may name it after its reaper released it */

	struct exiting_thread init = {.task = (__u64)task, .pos = (__u64)first};
	struct exiting_thread *st;
	tid = BPF_CORE_READ(task, pid);
	if (bpf_map_update_elem(&exiting_threads, &tid, &init, BPF_ANY) ||
	    !(st = bpf_map_lookup_elem(&exiting_threads, &tid))) {
		count(COUNTER_SNAPSHOT_FULL);
		st = bpf_map_lookup_elem(&walk_scratch, &copy);
		if (!st)
			return;
		*st = init;
		st->direct = 1;
		walk_next(ctx, first, head, st, copy); /* to counting */
		return;
	}
	snapshot_run(ctx, task, st, copy);
}

/* The walk a tail-called run of phase 1 goes on with. */
static __always_inline struct exiting_thread *walk_of(struct task_struct *task, __u32 copy)
{
	__u32 tid = BPF_CORE_READ(task, pid);
	struct exiting_thread *st = bpf_map_lookup_elem(&exiting_threads, &tid);

	if (st && st->task == (__u64)task)
		return st;
	st = bpf_map_lookup_elem(&walk_scratch, &copy);
	if (st && st->direct && st->task == (__u64)task)
		return st;
	return NULL;
}

/* Phase 1, in tail-called runs: go on where the previous run stopped. */
static __always_inline void snapshot_continue(void *ctx, struct task_struct *task, __u32 copy)
{
	struct exiting_thread *st = walk_of(task, copy);

	if (st)
		snapshot_run(ctx, task, st, copy);
}

static __always_inline void count_continue(void *ctx, struct task_struct *task, __u32 copy)
{
	struct exiting_thread *st = walk_of(task, copy);

	if (st)
		count_run(ctx, task, st, copy);
}

/* Take a pending child for exiting thread parent_tid: true if that thread
 * still owns it and nobody took it first. */
static __always_inline bool claim_child(__u32 child_pid, __u32 parent_tid)
{
	struct pending_child *p = bpf_map_lookup_elem(&pending_children, &child_pid);

	if (!p || p->parent_tid != parent_tid)
		return false; /* taken at its free, or a later snapshot owns it */
	return bpf_map_delete_elem(&pending_children, &child_pid) == 0;
}

/* Report child if it no longer belongs to the dying thread's process.
 * Returns whether a sibling thread took it. exit_state is the child's, read
 * before its pending entry was taken (see resolve_run). */
static __always_inline bool resolve_child(struct task_struct *child, struct task_struct *dying,
					  __u32 exit_state)
{
	if (BPF_CORE_READ(child, real_parent, tgid) == BPF_CORE_READ(dying, tgid))
		return true; /* a sibling thread took it: a threaded re-parent */
	report_adoption((__u64)child, (__u64)dying, HOOK_EXIT_WALK, exit_state);
	return false;
}

/*
 * An adopted child is followed (adoptee.bpf.h) before the final switch
 * claims it, not only once its adoption is sent: the child may be exiting on
 * another CPU right now, and its exit tracepoint (resolve_pending_child, then
 * adoptee_exit) must find it followed whether it lost the claim or found it
 * already taken; otherwise its exit record would never be sent. Its exit
 * record may then reach the ring before the adoption: user space keeps it
 * for the adoption (internal/reaping). A child that is not watched, or that
 * a sibling thread took, is not followed.
 */
static __always_inline void follow_before_claim(struct task_struct *child, __u32 pid,
						struct task_struct *dying)
{
	if (BPF_CORE_READ(child, pid) != pid)
		return; /* freed, its pointer reused: not ours to follow */
	if (BPF_CORE_READ(child, real_parent, tgid) == BPF_CORE_READ(dying, tgid))
		return;
	if (watched(child))
		follow_adoptee(child);
}

/*
 * A remembered child resolved away from its old parent's final switch:
 * whoever deletes its pending entry first (that switch, or this) reports it.
 *
 * From sched_process_free (before the lineage entry goes): the child is
 * being freed, so its parent is final. From sched_process_exit of a group
 * leader (only_if_moved), before its own children are remembered: a child
 * re-parented by its old parent's exit_notify() may exit, be reaped and be
 * freed before the old parent's final switch, and sched_process_free runs
 * from RCU callbacks where a run can be missed. Its own exit comes first and
 * runs in its own context: it is resolved there once it has moved (its
 * real_parent is no longer the dying thread's process). Not moved yet:
 * exit_notify() has not re-parented it (or a sibling thread took it); the
 * final switch or the free decides.
 */
static __always_inline void resolve_pending_child(struct task_struct *child, bool only_if_moved)
{
	__u32 pid = BPF_CORE_READ(child, pid);
	struct pending_child *p = bpf_map_lookup_elem(&pending_children, &pid);

	if (!p || p->child_task != (__u64)child)
		return;
	struct task_struct *dying = (struct task_struct *)p->parent_task;
	if (only_if_moved && BPF_CORE_READ(child, real_parent, tgid) == BPF_CORE_READ(dying, tgid))
		return;
	__u32 exit_state = BPF_CORE_READ(child, exit_state);
	if (bpf_map_delete_elem(&pending_children, &pid))
		return; /* the final switch took it meanwhile */
	resolve_child(child, dying, exit_state);
}

/* Phase 2 is over for thread tid: settle the unfollowed children. */
static __always_inline void resolve_done(struct task_struct *prev, __u32 tid,
					 struct exiting_thread *st)
{
	if (st->unfollowed) {
		bool sibling;
		if (st->reaper & REAPER_SEEN)
			sibling = st->reaper & REAPER_SIBLING;
		else /* no followed child to ask: is a thread of its process left? */
			sibling = BPF_CORE_READ(prev, signal, live.counter) > 0;
		if (!sibling)
			count_n(COUNTER_UNFOLLOWED, st->unfollowed);
	}
	bpf_map_delete_elem(&exiting_threads, &tid);
	forget_exit_pids(prev);
}

/* One run of phase 2: resolve a batch of chunks, then the next run (a tail
 * call) or the end. */
static __always_inline void resolve_run(void *ctx, struct task_struct *prev, __u32 tid,
					struct exiting_thread *st)
{
	for (int c = 0; c < RESOLVE_CHUNKS_PER_RUN; c++) {
		__u32 index = st->resolved;
		if (index >= st->chunks)
			break;
		struct chunk_key key = {.tid = tid, .index = index};
		struct children_chunk *chunk = bpf_map_lookup_elem(&exit_chunks, &key);
		if (chunk) {
			for (int i = 0; i < EXIT_WALK_CHUNK; i++) {
				if (i >= chunk->count)
					break;
				__u32 pid = chunk->kids[i].pid;
				struct task_struct *child = (struct task_struct *)chunk->kids[i].task;
				follow_before_claim(child, pid, prev);
				/* Whether it was a zombie when adopted: read while it
				 * is still pending. Had it exited since its re-parenting,
				 * its own exit found it moved and pending, and took it
				 * (resolve_pending_child), so the claim below fails. Read
				 * after the claim, it could have exited since. */
				__u32 exit_state = BPF_CORE_READ(child, exit_state);
				if (!claim_child(pid, tid))
					continue;
				if (BPF_CORE_READ(child, pid) != pid) {
					count(COUNTER_STALE_CHILD);
					continue;
				}
				bool sibling = resolve_child(child, prev, exit_state);
				st->reaper = REAPER_SEEN | (sibling ? REAPER_SIBLING : 0);
			}
			bpf_map_delete_elem(&exit_chunks, &key);
		}
		st->resolved = index + 1;
	}
	if (st->resolved < st->chunks)
		bpf_tail_call(ctx, &resolve_progs, 0);
	/* Done (or, were the chain spent, the rest resolve at their free). */
	resolve_done(prev, tid, st);
}

/* Phase 2, from the final sched_switch of an exiting thread. */
static __always_inline void resolve_children(void *ctx, struct task_struct *prev)
{
	/* Runs on every context switch: leave at once unless prev has exited. */
	if (!BPF_CORE_READ(prev, exit_state))
		return;
	__u32 tid = BPF_CORE_READ(prev, pid);
	struct exiting_thread *st = bpf_map_lookup_elem(&exiting_threads, &tid);
	if (!st)
		return;
	if (st->task != (__u64)prev) {
		/* Left by an earlier thread of this tid whose switch went unseen. */
		bpf_map_delete_elem(&exiting_threads, &tid);
		return;
	}
	resolve_run(ctx, prev, tid, st);
}

/* Phase 2, in a tail-called run. */
static __always_inline void resolve_continue(void *ctx, struct task_struct *prev)
{
	__u32 tid = BPF_CORE_READ(prev, pid);
	struct exiting_thread *st = bpf_map_lookup_elem(&exiting_threads, &tid);

	if (st && st->task == (__u64)prev)
		resolve_run(ctx, prev, tid, st);
}

#endif
