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

static __always_inline void fill_ident(struct task_ident *id, struct task_struct *task)
{
	id->pid = BPF_CORE_READ(task, tgid);
	id->tid = BPF_CORE_READ(task, pid);
	id->ppid = BPF_CORE_READ(task, real_parent, tgid);
	id->sid = session_of(task);
	id->pgid = pgrp_of(task);
	id->uid = BPF_CORE_READ(task, real_cred, uid.val);
	id->start_ns = process_start(task);
	BPF_CORE_READ_STR_INTO(&id->comm, task, comm);
}

static __always_inline void fill_header(struct record_header *hdr, __u32 kind)
{
	hdr->ts_ns = bpf_ktime_get_boot_ns();
	hdr->kind = kind;
	hdr->cpu = bpf_get_smp_processor_id();
}

#endif
