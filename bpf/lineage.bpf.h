/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Lineage: at fork the child copies its parent's ancestry and appends the
 * parent as it is now (pid, start, comm, session). So when a daemon is adopted
 * its whole chain is at hand, although the intermediates have long exited, and
 * no record per fork had to reach user space.
 */
#ifndef ADOPTWATCH_LINEAGE_BPF_H
#define ADOPTWATCH_LINEAGE_BPF_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "config.bpf.h"
#include "maps.bpf.h"
#include "task_info.bpf.h"
#include "scope_cgroups.bpf.h"
#include "watch.bpf.h"

static __always_inline void append_ancestor(struct lineage *lin, struct task_struct *parent,
					    __u32 parent_flags)
{
	__u32 n = lin->len;

	if (n >= LINEAGE_MAX) {
		/* Full: drop the oldest generation. */
		for (int i = 0; i < LINEAGE_MAX - 1; i++)
			lin->gen[i] = lin->gen[i + 1];
		n = LINEAGE_MAX - 1;
		lin->flags |= LINEAGE_TRUNCATED;
	}
	struct ancestor *a = &lin->gen[n & (LINEAGE_MAX - 1)];

	a->pid = BPF_CORE_READ(parent, tgid);
	a->sid = session_of(parent);
	a->pgid = pgrp_of(parent);
	a->flags = parent_flags & LINEAGE_EXECED;
	a->start_ns = process_start(parent);
	BPF_CORE_READ_STR_INTO(&a->comm, parent, comm);
	a->cgroup_id = cgroup_id_of(parent);
	lin->len = n + 1;
}

/* The child of an explicitly unwatched parent stays unwatched even where
 * entry-less processes count as watched (watch_all, a cgroup): it gets an entry
 * that says so. */
static __always_inline void mark_unwatched(struct proc_key *child_key, struct lineage *parent_lin,
					   __u32 copy)
{
	struct lineage *lin = parent_lin;

	if (!watch_all && !cgroup_scoped())
		return; /* entry-less children are unwatched anyway */
	if (!lin) {
		lin = bpf_map_lookup_elem(&lineage_scratch, &copy);
		if (!lin)
			return;
		__builtin_memset(lin, 0, sizeof(*lin));
		lin->watch = WATCH_OFF;
	}
	/* The parent's entry already says WATCH_OFF: store it as the child's. */
	if (bpf_map_update_elem(&lineages, child_key, lin, BPF_ANY))
		count(COUNTER_UNWATCH_MARKS_FULL);
}

/* Returns the new child's lineage entry, or NULL when the child is not watched. */
static __always_inline struct lineage *inherit_lineage(struct task_struct *parent,
							struct task_struct *child, __u32 copy)
{
	struct proc_key parent_key, child_key;
	bool off;

	proc_key_of(parent, &parent_key);
	struct lineage *parent_lin = bpf_map_lookup_elem(&lineages, &parent_key);
	if (!parent_lin && !watch_all && !cgroup_scoped() && !seeds_in_use())
		return NULL; /* unwatched tree, nothing seeded: the cheapest way out */

	child_key.pid = BPF_CORE_READ(child, tgid);
	child_key.pad = 0;
	child_key.start_ns = BPF_CORE_READ(child, start_boottime);
	if (!is_watched(parent, parent_lin, child, &off)) {
		if (off)
			mark_unwatched(&child_key, parent_lin, copy);
		return NULL;
	}

	struct lineage *lin = bpf_map_lookup_elem(&lineage_scratch, &copy);
	if (!lin)
		return NULL;
	if (parent_lin) {
		*lin = *parent_lin;
	} else {
		/* The parent predates adoptwatch: user space knows its ancestors. */
		__builtin_memset(lin, 0, sizeof(*lin));
		lin->flags = LINEAGE_PREEXISTING;
	}
	append_ancestor(lin, parent, parent_lin ? parent_lin->self_flags : 0);
	lin->self_flags = 0;
	lin->watch = 0;

	if (bpf_map_update_elem(&lineages, &child_key, lin, BPF_ANY)) {
		count(COUNTER_LINEAGE_FULL);
		return NULL;
	}
	return lin;
}

#endif
