/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * --unit and --container: the cgroups user space chose (a unit's own cgroup,
 * a container's outermost one), by id. User space keeps the map current as
 * cgroups appear and go (internal/cgroups.Tracker). A task is in scope when
 * its cgroup v2 or one of its ancestors is in the map, or is --cgroup's.
 */
#ifndef ADOPTWATCH_SCOPE_CGROUPS_BPF_H
#define ADOPTWATCH_SCOPE_CGROUPS_BPF_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include "config.bpf.h"

/* Chosen cgroups at most; user space counts those that do not fit. */
#define SCOPE_CGROUPS_MAX 4096

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SCOPE_CGROUPS_MAX);
	__type(key, __u64);  /* cgroup v2 id (kernfs node id) */
	__type(value, __u8); /* unused */
} scope_cgroups SEC(".maps");

/* Does entry-less processes' watch state depend on their cgroup? */
static __always_inline bool cgroup_scoped(void)
{
	return watch_cgroup_id || scope_cgroups_on;
}

/* Is cgroup id one that --cgroup, --unit or --container chose? */
static __always_inline bool cgroup_chosen(__u64 id)
{
	if (watch_cgroup_id && id == watch_cgroup_id)
		return true;
	return scope_cgroups_on && bpf_map_lookup_elem(&scope_cgroups, &id);
}

#endif
