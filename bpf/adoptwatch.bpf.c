//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * adoptwatch's kernel side: one compilation unit, one concern per header.
 *
 *   watch.bpf.h           the per-process watch flag: entry, seed, cgroup, or watch_all
 *   lineage.bpf.h         each watched process carries its ancestry (fork, exec, free)
 *   adopt.bpf.h           build and send one adoption record
 *   adopt_exact.bpf.h     the exact hook: kill_orphaned_pgrp(child, old_parent)
 *   adopt_exit_walk.bpf.h the portable fallback: exit snapshot + final sched_switch
 *   task_records.bpf.h    fork/exec/exit records, only when user space asks (--all)
 *
 * User space loads only the programs of the hook it chose (loader/).
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "records.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader before load (RewriteConstants). */
const volatile bool watch_all = true;          /* entry-less processes are watched (else: scoped) */
const volatile bool emit_task_records = false; /* --all: fork/exec/exit records */
const volatile bool exit_walk = false;         /* snapshot children at exit (fallback hook) */
const volatile __u32 wakeup_every = 64;        /* task records per forced wakeup, per CPU */
const volatile __u64 watch_cgroup_id = 0;      /* also watch this cgroup v2 subtree (0: none) */

#include "maps.bpf.h"
#include "task_info.bpf.h"
#include "watch.bpf.h"
#include "lineage.bpf.h"
#include "adopt.bpf.h"
#include "adopt_exact.bpf.h"
#include "adopt_exit_walk.bpf.h"
#include "task_records.bpf.h"

/* Make the record types part of the object's BTF so bpf2go generates them. */
const struct adopt_record *unused_adopt_record __attribute__((unused));
const struct task_record *unused_task_record __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum record_kind *unused_record_kind __attribute__((unused));
const enum adopt_hook *unused_adopt_hook __attribute__((unused));
const enum reaper_flag *unused_reaper_flag __attribute__((unused));
const enum lineage_flag *unused_lineage_flag __attribute__((unused));
const enum watch_flag *unused_watch_flag __attribute__((unused));
const enum seed_state *unused_seed_state __attribute__((unused));
const enum exit_flag *unused_exit_flag __attribute__((unused));
