/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types the programs read, declared with only the fields used.
 * preserve_access_index makes every access a CO-RE relocation: libbpf-style
 * loaders (cilium/ebpf here) patch field offsets from the running kernel's BTF,
 * so one object works on every kernel from 5.10 on. The layouts below are
 * therefore not the kernel's: field order and sizes need not match.
 */
#ifndef ADOPTWATCH_KERNEL_TYPES_H
#define ADOPTWATCH_KERNEL_TYPES_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct list_head {
	struct list_head *next;
	struct list_head *prev;
};

typedef struct {
	int counter;
} atomic_t;

typedef struct {
	__u32 val;
} kuid_t;

struct pid_namespace;

struct upid {
	int nr;
	struct pid_namespace *ns;
};

struct pid {
	unsigned int level;
	struct upid numbers[1];
};

enum pid_type {
	PIDTYPE_PID,
	PIDTYPE_TGID,
	PIDTYPE_PGID,
	PIDTYPE_SID,
	PIDTYPE_MAX,
};

struct signal_struct {
	atomic_t live;
	unsigned int flags;
	int group_exit_code;
	unsigned int is_child_subreaper:1;
	struct pid *pids[PIDTYPE_MAX];
};

struct cred {
	kuid_t uid;
};

struct kernfs_node {
	__u64 id; /* a u64 since 5.5: the cgroup id, the directory's inode number */
};

struct cgroup_subsys_state {
	struct cgroup_subsys_state *parent;
};

struct cgroup {
	struct cgroup_subsys_state self; /* parent->self links the hierarchy */
	struct kernfs_node *kn;
};

struct css_set {
	struct cgroup *dfl_cgrp; /* the task's cgroup v2 */
};

struct task_struct {
	int pid;
	int tgid;
	int exit_state;
	int exit_code;
	char comm[16];
	__u64 start_boottime;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct list_head children;
	struct list_head sibling;
	struct signal_struct *signal;
	const struct cred *real_cred;
	struct pid *thread_pid;
	struct css_set *cgroups;
};

struct ns_common {
	unsigned int inum; /* the inode number the links in /proc/PID/ns name */
};

struct pid_namespace {
	struct task_struct *child_reaper;
	unsigned int level;
	struct ns_common ns;
};

#pragma clang attribute pop

/* signal_struct.flags: the group is exiting (exit_group or a fatal signal). */
#define SIGNAL_GROUP_EXIT 0x00000004

#endif
