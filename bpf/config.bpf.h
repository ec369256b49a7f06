/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Configuration the loader sets before loading (cilium/ebpf's Variables, the
 * same as libbpf's rodata). Being constant at load time, the verifier prunes
 * the code a setting switches off, so it costs nothing at run time.
 */
#ifndef ADOPTWATCH_CONFIG_BPF_H
#define ADOPTWATCH_CONFIG_BPF_H

#include "kernel_types.h"

const volatile bool watch_all = true;          /* entry-less processes are watched (else: scoped) */
const volatile bool emit_task_records = false; /* --all: fork/exec/exit records */
const volatile bool exit_walk = false;         /* snapshot children at exit (fallback hook) */
const volatile __u64 watch_cgroup_id = 0;      /* also watch this cgroup v2 subtree (0: none) */
const volatile bool scope_cgroups_on = false;  /* also watch the scope_cgroups map's (--unit, --container) */
const volatile __u32 copies = 3;               /* copies attached of on_fork/on_exec/on_exit: 1..3 (copies.bpf.h) */

#endif
