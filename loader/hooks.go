package loader

import (
	"errors"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/adoptwatch/adoptwatch/bpf"
	"github.com/adoptwatch/adoptwatch/events"
)

// Mechanism is one way to attach a hook.
type Mechanism struct {
	Hook events.Hook
	Name string // "fentry", "kprobe", "raw_tp"
	// programs are the hook-specific programs (beyond the lineage ones).
	programs []string
	attach   func(objs *ebpf.Collection) ([]link.Link, error)
}

const adoptSymbol = "kill_orphaned_pgrp"

// Mechanisms in order of preference.
var mechanisms = []Mechanism{
	{
		Hook: events.HookExact, Name: "fentry", programs: []string{bpf.AdoptwatchProgAdoptFentry},
		attach: func(c *ebpf.Collection) ([]link.Link, error) {
			l, err := link.AttachTracing(link.TracingOptions{Program: c.Programs[bpf.AdoptwatchProgAdoptFentry]})
			return []link.Link{l}, err
		},
	},
	{
		Hook: events.HookExact, Name: "kprobe", programs: []string{bpf.AdoptwatchProgAdoptKprobe},
		attach: func(c *ebpf.Collection) ([]link.Link, error) {
			if !kprobesAvailable() {
				return nil, errors.New("kprobes are not available (no kprobe PMU in /sys/bus/event_source/devices and no kprobe_events in tracefs)")
			}
			l, err := link.Kprobe(adoptSymbol, c.Programs[bpf.AdoptwatchProgAdoptKprobe], nil)
			return []link.Link{l}, err
		},
	},
	{
		Hook: events.HookExitWalk, Name: "raw_tp", programs: []string{bpf.AdoptwatchProgOnSwitch, bpf.AdoptwatchProgResolveMore},
		attach: func(c *ebpf.Collection) ([]link.Link, error) {
			// sched_process_exit is attached with the lineage programs; only the
			// second phase is specific to this hook.
			l, err := rawTracepoint(c, "sched_switch", bpf.AdoptwatchProgOnSwitch)
			return []link.Link{l}, err
		},
	},
}

// Support says whether one mechanism works on the running kernel.
type Support struct {
	Mechanism
	Err error // nil when it loaded and attached
}

// Probe tries every mechanism for real: it loads and attaches its programs,
// then detaches them. Nothing is left behind.
func Probe() []Support {
	var out []Support
	for _, m := range mechanisms {
		obs, err := openWith(m, Options{})
		if err == nil {
			obs.Close()
		}
		out = append(out, Support{Mechanism: m, Err: err})
	}
	return out
}

// candidates lists the mechanisms that may serve a requested hook, best first.
func candidates(h events.Hook) []Mechanism {
	var out []Mechanism
	for _, m := range mechanisms {
		if h == events.HookAuto || m.Hook == h {
			out = append(out, m)
		}
	}
	return out
}

// ErrHookUnsupported is returned when no mechanism for the requested hook works.
var ErrHookUnsupported = errors.New("hook not supported by this kernel")

// kprobesAvailable tells whether the kernel can create kprobes at all, so that
// a kernel built without them gets a plain answer instead of a tracefs error.
func kprobesAvailable() bool {
	for _, p := range []string{
		"/sys/bus/event_source/devices/kprobe/type",
		"/sys/kernel/tracing/kprobe_events",
		"/sys/kernel/debug/tracing/kprobe_events",
	} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}
