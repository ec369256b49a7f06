/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Reading who a task is, the same way on every kernel (CO-RE). */
#ifndef ADOPTWATCH_TASK_INFO_BPF_H
#define ADOPTWATCH_TASK_INFO_BPF_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "records.h"
#include "maps.bpf.h"

/* The pid number as the initial pid namespace sees it. */
static __always_inline __u32 pid_number(struct pid *pid)
{
	return BPF_CORE_READ(pid, numbers[0].nr);
}

static __always_inline __u32 session_of(struct task_struct *task)
{
	return pid_number(BPF_CORE_READ(task, signal, pids[PIDTYPE_SID]));
}

static __always_inline __u32 pgrp_of(struct task_struct *task)
{
	return pid_number(BPF_CORE_READ(task, signal, pids[PIDTYPE_PGID]));
}

/* The process's start: the group leader's, as /proc/PID/stat reports it. */
static __always_inline __u64 process_start(struct task_struct *task)
{
	return BPF_CORE_READ(task, group_leader, start_boottime);
}

static __always_inline void proc_key_of(struct task_struct *task, struct proc_key *key)
{
	key->pid = BPF_CORE_READ(task, tgid);
	key->pad = 0;
	key->start_ns = process_start(task);
}

/* The task's cgroup v2 id: its cgroup in the default hierarchy (which exists
 * whether or not cgroup2 is mounted, as on hybrid hosts). */
static __always_inline __u64 cgroup_id_of(struct task_struct *task)
{
	if (!bpf_core_field_exists(task->cgroups) || !bpf_core_field_exists(struct kernfs_node, id))
		return 0;
	return BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
}

/* Deepest pid namespace level looked at; the kernel allows 32 below the initial one. */
#define PID_NS_LEVELS 64

/* The pid namespace the task lives in (task_active_pid_ns()). */
static __always_inline struct pid_namespace *pid_ns_of(struct task_struct *task)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);

	return BPF_CORE_READ(pid, numbers[level & (PID_NS_LEVELS - 1)].ns);
}

static __always_inline __u32 pid_ns_inum(struct pid_namespace *ns)
{
	if (!bpf_core_field_exists(ns->ns.inum))
		return 0;
	return BPF_CORE_READ(ns, ns.inum);
}

/*
 * A process's pids as they were when one of its threads exited with children
 * (phase 1 of the exit-walk hook, bpf/adopt_exit_walk.bpf.h), keyed by that
 * thread (struct task_struct *) until its final switch has reported them:
 * its reaper may release it on another CPU, detaching its pids, before the
 * adoptions that name it as previous parent are sent. Its own pid namespace
 * and the numbers in it and the EXIT_PID_LEVELS - 1 namespaces above, the
 * deepest first. An LRU map: an entry whose final switch went unseen ages out.
 */
#define EXIT_PID_LEVELS 4

struct exit_pids {
	__u32 pidns_inum;
	__u32 count; /* levels filled */
	__u32 nr[EXIT_PID_LEVELS];
	__u64 ns[EXIT_PID_LEVELS]; /* struct pid_namespace *, only compared */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct exit_pids);
} exit_pids SEC(".maps");

/* pid's number as namespace ns sees it (pid_nr_ns()): 0 when it is not
 * visible there, or there is no pid (a process being freed). */
static __always_inline __u32 pid_nr_in_ns(struct pid *pid, struct pid_namespace *ns)
{
	unsigned int level = BPF_CORE_READ(ns, level) & (PID_NS_LEVELS - 1);

	if (!pid || !ns || level > BPF_CORE_READ(pid, level))
		return 0;
	if (BPF_CORE_READ(pid, numbers[level].ns) != ns)
		return 0;
	return BPF_CORE_READ(pid, numbers[level].nr);
}

/* Remember the pids of task's process before its exit re-parents anything. */
static __always_inline void remember_exit_pids(struct task_struct *task)
{
	struct pid *tgid = BPF_CORE_READ(task, signal, pids[PIDTYPE_TGID]);
	struct exit_pids v = {};
	__u64 key = (__u64)task;

	if (!tgid)
		return;
	unsigned int level = BPF_CORE_READ(tgid, level);
	v.pidns_inum = pid_ns_inum(pid_ns_of(task));
	for (int i = 0; i < EXIT_PID_LEVELS; i++) {
		if (i > level)
			break;
		unsigned int l = (level - i) & (PID_NS_LEVELS - 1);
		v.ns[i] = (__u64)BPF_CORE_READ(tgid, numbers[l].ns);
		v.nr[i] = BPF_CORE_READ(tgid, numbers[l].nr);
		v.count = i + 1;
	}
	bpf_map_update_elem(&exit_pids, &key, &v, BPF_ANY);
}

/* Its final switch is over: nothing will name it as previous parent now. */
static __always_inline void forget_exit_pids(struct task_struct *task)
{
	__u64 key = (__u64)task;

	bpf_map_delete_elem(&exit_pids, &key);
}

/* The namespace fields of id from what remember_exit_pids kept of task, for
 * a process already released (its pids detached). */
static __always_inline void ident_from_exit_pids(struct task_ident *id, struct task_struct *task,
						 struct pid_namespace *reaper_ns)
{
	__u64 key = (__u64)task;
	struct exit_pids *e = bpf_map_lookup_elem(&exit_pids, &key);

	if (!e || !e->count)
		return;
	id->pidns_inum = e->pidns_inum;
	id->ns_pid = e->nr[0];
	for (int i = 0; i < EXIT_PID_LEVELS; i++) {
		if (i < e->count && reaper_ns && e->ns[i] == (__u64)reaper_ns)
			id->reaper_ns_pid = e->nr[i];
	}
}

/*
 * fill_ident, and the process's pid as the reaper's namespace sees it
 * (reaper_ns; NULL: none asked). Both numbers are read through one pointer
 * to its pid: a process released meanwhile by its parent on another CPU
 * loses its pids, and must not then have one in its own namespace and none
 * in the reaper's (the struct pid itself outlives the RCU section we run in).
 */
static __always_inline void fill_ident_seen_by(struct task_ident *id, struct task_struct *task,
					       struct pid_namespace *reaper_ns)
{
	struct pid *tgid = BPF_CORE_READ(task, signal, pids[PIDTYPE_TGID]);

	id->pid = BPF_CORE_READ(task, tgid);
	id->tid = BPF_CORE_READ(task, pid);
	id->ppid = BPF_CORE_READ(task, real_parent, tgid);
	id->sid = session_of(task);
	id->pgid = pgrp_of(task);
	id->uid = BPF_CORE_READ(task, real_cred, uid.val);
	id->start_ns = process_start(task);
	BPF_CORE_READ_STR_INTO(&id->comm, task, comm);
	id->cgroup_id = cgroup_id_of(task);
	struct pid_namespace *ns = pid_ns_of(task);
	id->pidns_inum = pid_ns_inum(ns);
	id->ns_pid = pid_nr_in_ns(tgid, ns);
	id->reaper_ns_pid = reaper_ns ? pid_nr_in_ns(tgid, reaper_ns) : 0;
	id->pad = 0;
	if (!tgid) /* released: what its exit left, if one of its threads had children */
		ident_from_exit_pids(id, task, reaper_ns);
}

static __always_inline void fill_ident(struct task_ident *id, struct task_struct *task)
{
	fill_ident_seen_by(id, task, NULL);
}

/* What wait(2) reports for a process whose last thread has exited (see
 * wait_task_zombie()): the group's exit code if one was set for all, else the
 * group leader's. */
static __always_inline __u32 process_exit_code(struct task_struct *task)
{
	struct signal_struct *sig = BPF_CORE_READ(task, signal);

	if (BPF_CORE_READ(sig, flags) & SIGNAL_GROUP_EXIT)
		return BPF_CORE_READ(sig, group_exit_code);
	return BPF_CORE_READ(task, group_leader, exit_code);
}

static __always_inline void fill_header(struct record_header *hdr, __u32 kind)
{
	hdr->ts_ns = bpf_ktime_get_boot_ns();
	hdr->kind = kind;
	hdr->cpu = bpf_get_smp_processor_id();
}

#endif
