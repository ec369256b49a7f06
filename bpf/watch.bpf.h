/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-process watch flag. A process is watched when:
 *   - it has a lineage entry without WATCH_OFF (the common case: the flag was
 *     inherited at fork), else
 *   - user space seeded it (it predates adoptwatch): SEED_WATCH / SEED_UNWATCH, else
 *   - it is in a watched cgroup v2 subtree (--cgroup's watch_cgroup_id, or one
 *     of the scope_cgroups --unit and --container chose), else
 *   - everything is watched (watch_all).
 * Unwatched processes cost one hash lookup at fork and send nothing.
 */
#ifndef ADOPTWATCH_WATCH_BPF_H
#define ADOPTWATCH_WATCH_BPF_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "config.bpf.h"
#include "maps.bpf.h"
#include "task_info.bpf.h"
#include "scope_cgroups.bpf.h"

/* USER_HZ: /proc/PID/stat counts start times in these. */
#define NSEC_PER_USER_TICK 10000000ULL
/* Deepest cgroup nesting followed up to the watched cgroup. */
#define MAX_CGROUP_DEPTH 32

static __always_inline struct lineage *lineage_of(struct task_struct *task)
{
	struct proc_key key;

	proc_key_of(task, &key);
	return bpf_map_lookup_elem(&lineages, &key);
}

static __always_inline bool seeds_in_use(void)
{
	__u32 zero = 0;
	struct settings *s = bpf_map_lookup_elem(&watch_settings, &zero);

	return s && s->seeds_in_use;
}

/* The seed for this process, if user space left one (and the pid was not reused). */
static __always_inline struct seed *seed_of(struct task_struct *task)
{
	__u32 pid = BPF_CORE_READ(task, tgid);
	struct seed *s = bpf_map_lookup_elem(&seeds, &pid);

	if (s && s->start_ticks != process_start(task) / NSEC_PER_USER_TICK)
		return NULL;
	return s;
}

/* Is the task's cgroup v2 a chosen one, or beneath one? */
static __always_inline bool in_watched_cgroup(struct task_struct *task)
{
	if (!cgroup_scoped())
		return false;
	struct cgroup *cgrp = BPF_CORE_READ(task, cgroups, dfl_cgrp);

	for (int i = 0; i < MAX_CGROUP_DEPTH && cgrp; i++) {
		if (cgroup_chosen(BPF_CORE_READ(cgrp, kn, id)))
			return true;
		/* self is the first member of struct cgroup, as the kernel's own
		 * cgroup_parent() relies on; the offset is still read from BTF. */
		struct cgroup_subsys_state *parent = BPF_CORE_READ(cgrp, self.parent);
		if (!parent)
			break;
		cgrp = (void *)parent - bpf_core_field_offset(struct cgroup, self);
	}
	return false;
}

/* Watched, given the task's lineage entry (lin, may be NULL). cgroup_task is
 * the task whose cgroup counts (a new child: its own). *off is set when the
 * process was switched off explicitly (its children must stay off). */
static __always_inline bool is_watched(struct task_struct *task, struct lineage *lin,
				       struct task_struct *cgroup_task, bool *off)
{
	*off = false;
	if (lin) {
		*off = lin->watch & WATCH_OFF;
		return !*off;
	}
	if (seeds_in_use()) {
		struct seed *s = seed_of(task);
		if (s) {
			*off = s->state == SEED_UNWATCH;
			return !*off;
		}
	}
	if (watch_all)
		return true;
	return in_watched_cgroup(cgroup_task);
}

static __always_inline bool watched(struct task_struct *task)
{
	bool off;

	return is_watched(task, lineage_of(task), task, &off);
}

#endif
