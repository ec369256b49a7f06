/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps shared by all programs. Sizes here are defaults; the loader may resize. */
#ifndef ADOPTWATCH_MAPS_BPF_H
#define ADOPTWATCH_MAPS_BPF_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include "records.h"

/* Process identity: a pid is only unique together with its start time. */
struct proc_key {
	__u32 pid;
	__u32 pad;
	__u64 start_ns;
};

/* lineage.watch */
enum watch_flag {
	WATCH_OFF = 1 << 0, /* unwatched (Unwatch): no records, children inherit it */
};

/* A process's ancestry, oldest first; it does not include the process. An entry
 * is the process's watch flag: present and without WATCH_OFF means watched. */
struct lineage {
	__u32 len;
	__u32 flags;      /* enum lineage_flag */
	__u32 self_flags; /* LINEAGE_EXECED once the process itself has exec'd */
	__u32 watch;      /* enum watch_flag */
	struct ancestor gen[LINEAGE_MAX];
};

/* seed.state */
enum seed_state {
	SEED_WATCH = 1,   /* a process running before adoptwatch, in a watched tree */
	SEED_UNWATCH = 2, /* a process running before adoptwatch, switched off */
};

/* Watch decisions user space made for processes that have no lineage entry
 * (they predate adoptwatch). Keyed by pid; user space knows a process's start
 * only to /proc's precision (USER_HZ ticks), so that is what is compared. */
struct seed {
	__u64 start_ticks; /* start_boottime / (NSEC_PER_SEC / USER_HZ) */
	__u32 state;       /* enum seed_state */
	__u32 pad;
};

/* Written by user space at run time (the loader, or `adoptwatch unwatch`). */
struct settings {
	__u32 seeds_in_use;    /* the seeds map may hold entries: consult it */
	__u32 default_watched; /* for user space: entry-less processes are watched
	                          (watch_all or a cgroup), so Unwatch must seed them */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} records SEC(".maps");

/* Presence in this map is the per-process "watched" flag. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct proc_key);
	__type(value, struct lineage);
} lineages SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct seed);
} seeds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} watch_settings SEC(".maps");

/* Values too large for the 512-byte BPF stack are built here, one slot per
 * copy of a program (see copies.bpf.h). */
#define SCRATCH_SLOTS 3

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct lineage);
} lineage_scratch SEC(".maps");

/* Per CPU, for fork, exec and exit: the task of the event a copy of the
 * program last claimed (see copies.bpf.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} claimed_event SEC(".maps");

/* enum counter: everything the kernel side had to drop, summed by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Task records sent on this CPU, to batch wakeups. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} task_records_sent SEC(".maps");

static __always_inline void count_n(__u32 counter, __u64 n)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &counter);

	if (value)
		*value += n;
}

static __always_inline void count(__u32 counter)
{
	count_n(counter, 1);
}

#endif
