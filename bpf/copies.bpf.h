/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Copies. Recent kernels (7.x) may preempt a running BPF program, and the
 * kernel skips a program that is already running on the CPU (a "recursion
 * miss"): an exit on this CPU while on_exit is preempted there would go unseen,
 * and with it the adoptions it causes. So each of these programs is attached
 * three times. Each copy claims the event (the task it is about) in a per-CPU
 * slot and does the work only if no earlier copy claimed it: one handles it
 * normally; while a copy is preempted, the next one takes the events it
 * misses. The last copy clears the slot, so the next event about the same
 * task (a second exec, or a new task in a reused task struct) is claimed anew.
 * An event is unseen only if all three are busy on that CPU; the last copy's
 * recursion misses bound that (Counters.UnseenEvents). Each copy builds its
 * values in its own scratch slot (`copy`, 0..SCRATCH_SLOTS-1): a preempted
 * copy's half-built value must not be overwritten by the copy that takes
 * over, and no copy can run twice at once on one CPU (programs it tail-calls
 * are per copy too, for the same reason). After an interleaving an event may
 * be handled twice: harmless, as the work is idempotent (a --all record may
 * then be printed twice).
 *
 * Where the kernel cannot preempt a BPF program in process context (its
 * preemption model is none or voluntary), one copy is enough: the loader sets
 * `copies` (config.bpf.h) to how many it attaches, 1 or 3, and loads no other.
 * Copy copies-1 is the last; a single copy claims nothing.
 *
 * COPIES(tracepoint, name, slot, task, handle, args...) defines the programs
 * name, name_spare and name_spare2 for raw tracepoint `tracepoint`; `handle`
 * is the statement that does the work, with `ctx` and `copy` in scope. Use it
 * in the .bpf.c file only: it defines entry points.
 */
#ifndef ADOPTWATCH_COPIES_BPF_H
#define ADOPTWATCH_COPIES_BPF_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "config.bpf.h"
#include "maps.bpf.h"

/* Claim the event about task t in slot `slot` for copy `copy`: false when an
 * earlier copy has it. The last copy (copies-1) clears the slot. */
static __always_inline bool claim_event(__u32 slot, struct task_struct *t, __u32 copy)
{
	bool last = copy + 1 >= copies;
	__u64 *claimed;

	if (copies <= 1)
		return true; /* the only copy: no other to share the event with */
	claimed = bpf_map_lookup_elem(&claimed_event, &slot);
	if (!claimed)
		return true;
	if (*claimed == (__u64)t) {
		if (last)
			*claimed = 0;
		return false; /* an earlier copy has it */
	}
	*claimed = last ? 0 : (__u64)t;
	return true;
}

#define COPIES(tp, name, slot, task_arg, handle, ...)                           \
	SEC("raw_tp/" #tp)                                                      \
	int BPF_PROG(name, __VA_ARGS__)                                         \
	{                                                                       \
		const __u32 copy __attribute__((unused)) = 0;                   \
		if (claim_event(slot, task_arg, copy))                          \
			handle;                                                 \
		return 0;                                                       \
	}                                                                       \
	SEC("raw_tp/" #tp)                                                      \
	int BPF_PROG(name##_spare, __VA_ARGS__)                                 \
	{                                                                       \
		const __u32 copy __attribute__((unused)) = 1;                   \
		if (claim_event(slot, task_arg, copy)) {                        \
			count(COUNTER_SPARE_RUNS);                              \
			handle;                                                 \
		}                                                               \
		return 0;                                                       \
	}                                                                       \
	SEC("raw_tp/" #tp)                                                      \
	int BPF_PROG(name##_spare2, __VA_ARGS__)                                \
	{                                                                       \
		const __u32 copy __attribute__((unused)) = 2;                   \
		if (claim_event(slot, task_arg, copy)) {                        \
			count(COUNTER_SPARE_RUNS);                              \
			handle;                                                 \
		}                                                               \
		return 0;                                                       \
	}

#endif
