/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The records the BPF programs send to user space through the ring buffer.
 * This header is the only definition of their layout: bpf2go generates the
 * Go types from it (see gen.go), so never describe these structs by hand in Go.
 */
#ifndef ADOPTWATCH_RECORDS_H
#define ADOPTWATCH_RECORDS_H

#include <linux/types.h>

#define COMM_LEN 16
/* Generations of ancestry each watched process carries (oldest dropped first). */
#define LINEAGE_MAX 8

/* Bounds user space reports in its messages. */
enum limit {
	EXIT_WALK_MAX_CHILDREN = 4096, /* children the exit walk follows per exiting thread */
};

/* record_header.kind */
enum record_kind {
	RECORD_ADOPT = 1,
	RECORD_FORK = 2,
	RECORD_EXEC = 3,
	RECORD_EXIT = 4,
	RECORD_ADOPTEE_EXIT = 5,   /* an adopted process's last thread exited */
	RECORD_ADOPTEE_REAPED = 6, /* an adopted process was released: reaped, or autoreaped */
};

/* adopt_record.hook: which kernel path saw the adoption. */
enum adopt_hook {
	HOOK_EXACT = 1,     /* fentry/kprobe on kill_orphaned_pgrp(child, old_parent) */
	HOOK_EXIT_WALK = 2, /* sched_process_exit snapshot + final sched_switch */
};

/* adopt_record.reaper_flags: facts user space needs to name the reaper kind. */
enum reaper_flag {
	REAPER_IS_NS_CHILD_REAPER = 1 << 0, /* new parent is its pid namespace's reaper */
	REAPER_IS_CHILD_SUBREAPER = 1 << 1, /* new parent set PR_SET_CHILD_SUBREAPER */
};

/* ancestor.flags and lineage.flags */
enum lineage_flag {
	LINEAGE_EXECED = 1 << 0,      /* ancestor: this generation called execve at least once */
	LINEAGE_TRUNCATED = 1 << 1,   /* lineage: older generations were dropped (LINEAGE_MAX) */
	LINEAGE_PREEXISTING = 1 << 2, /* lineage: the oldest generation was already running
	                                 when adoptwatch started: user space knows the rest */
};

/* exit_record.flags */
enum exit_flag {
	EXIT_GROUP_DEAD = 1 << 0, /* the last thread of the process: the process is gone */
};

/* adoptee_record.flags */
enum adoptee_flag {
	ADOPTEE_EXITED_BEFORE = 1 << 0, /* exit: it was a zombie when adopted; ts_ns is the
	                                   adoption's, exit_code what wait(2) will say */
	ADOPTEE_EXIT_UNSEEN = 1 << 1,   /* reaped: its exit was not seen (exit_ns is 0, the
	                                   reaper zeroes, exit_code read at the release) */
};

/* Who a task is. Process identity is (pid, start_ns), never pid alone. */
struct task_ident {
	__u32 pid;      /* thread group id, as user space calls a pid */
	__u32 tid;      /* the thread involved */
	__u32 ppid;     /* real parent's pid */
	__u32 sid;      /* session id */
	__u32 pgid;     /* process group id */
	__u32 uid;      /* real uid */
	__u64 start_ns; /* group leader start, CLOCK_BOOTTIME ns (as /proc/PID/stat) */
	char comm[COMM_LEN];
	__u64 cgroup_id;      /* its cgroup v2 (kernfs node id = the directory's inode
	                         number); 0: unknown */
	__u32 pidns_inum;     /* its pid namespace (inode of /proc/PID/ns/pid); 0: unknown */
	__u32 ns_pid;         /* pid as its own pid namespace sees it */
	__u32 reaper_ns_pid;  /* adopt_record only: pid as the new parent's pid namespace
	                         sees it, 0 where it is not visible there */
	__u32 pad;
};

/* One generation of a process's ancestry, as it was when it forked its child. */
struct ancestor {
	__u32 pid;
	__u32 sid;
	__u32 pgid;
	__u32 flags; /* LINEAGE_EXECED */
	__u64 start_ns;
	char comm[COMM_LEN];
	__u64 cgroup_id; /* its cgroup v2 then (0: unknown) */
};

struct record_header {
	__u64 ts_ns; /* CLOCK_BOOTTIME */
	__u32 kind;  /* enum record_kind */
	__u32 cpu;
};

/* RECORD_ADOPT: child was re-parented from prev_parent to new_parent. */
struct adopt_record {
	struct record_header hdr;
	__u32 hook;         /* enum adopt_hook */
	__u32 reaper_flags; /* enum reaper_flag */
	__u32 ns_level;     /* depth of the child's pid namespace (0: the initial one) */
	__u32 exit_state;   /* child's exit_state: non-zero for an adopted zombie */
	struct task_ident child;
	struct task_ident prev_parent;
	struct task_ident new_parent;
	__u32 lineage_len;   /* valid entries in lineage[] */
	__u32 lineage_flags; /* enum lineage_flag */
	struct ancestor lineage[LINEAGE_MAX]; /* oldest first; the child itself is not in it */
};

/* RECORD_FORK, RECORD_EXEC, RECORD_EXIT (only with --all). */
struct task_record {
	struct record_header hdr;
	struct task_ident task;  /* fork: the parent; exec: the new image; exit: the thread */
	struct task_ident other; /* fork: the child; exec: zeroes except comm = old comm */
	__u32 exit_code;         /* exit: wait(2) status of the thread (or the group) */
	__u32 flags;             /* enum exit_flag */
};

/*
 * RECORD_ADOPTEE_EXIT, RECORD_ADOPTEE_REAPED: what became of a process whose
 * adoption was reported, sent whatever the options. For each one, the exit
 * record comes before the reaped record.
 */
struct adoptee_record {
	struct record_header hdr;  /* ts_ns: when it exited; when it was released */
	__u64 exit_ns;             /* when it exited, CLOCK_BOOTTIME (0: not seen) */
	__u32 exit_code;           /* wait(2) status of the process */
	__u32 flags;               /* enum adoptee_flag */
	struct task_ident adoptee; /* exit: as its last thread exited; reaped: pid, tid,
	                              start_ns, comm and cgroup_id only */
	struct task_ident reaper;  /* its parent when it exited (the same in both records) */
};

/* Indexes of the counters map: what the kernel side could not do, never silent. */
enum counter {
	COUNTER_LOST_ADOPT = 0,      /* adoption records that found the ring buffer full */
	COUNTER_LOST_TASK,           /* fork/exec/exit records that found it full */
	COUNTER_LINEAGE_FULL,        /* forks whose lineage did not fit the lineage map */
	COUNTER_SNAPSHOT_FULL,       /* exiting threads the exit walk could not remember (map
	                                full): their children are counted as unfollowed */
	COUNTER_CHILDREN_TRUNCATED,  /* exiting threads with more children than the exit walk
	                                can even count: COUNTER_UNFOLLOWED is a lower bound */
	COUNTER_STALE_CHILD,         /* snapshotted children gone before the final switch */
	COUNTER_ADOPTIONS,           /* adoptions seen in the kernel (sent or lost) */
	COUNTER_UNWATCHED_ADOPTIONS, /* adoptions of unwatched processes: not sent, by design */
	COUNTER_UNWATCH_MARKS_FULL,  /* children of unwatched parents left without their
	                                "unwatched" mark: the lineage map was full */
	COUNTER_SPARE_RUNS,          /* forks, execs, exits handled by a spare copy of a
	                                program (the first was preempted on that CPU) */
	COUNTER_UNFOLLOWED,          /* adoptions the exit walk could not follow (children
	                                beyond EXIT_WALK_MAX_CHILDREN of one exiting thread,
	                                or its maps full): lost, one per child */
	COUNTER_ADOPTEES_FULL,       /* reported adoptions whose process could not be
	                                followed to its end: the adoptees map was full */
	COUNTER_LOST_ADOPTEE,        /* adoptee exit/reaped records that found the ring
	                                buffer full */
	COUNTER_MAX,
};

#endif
