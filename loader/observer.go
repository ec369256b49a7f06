// Package loader loads adoptwatch's BPF programs into the running kernel, probes
// which adoption hook works there, attaches it, and reads the ring buffer.
package loader

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/bpf"
	"github.com/adoptwatch/adoptwatch/events"
)

// Options configure an Observer.
type Options struct {
	Hook Hook
	// TaskRecords asks for fork, exec and exit records too (--all).
	TaskRecords bool
	// RingBytes sizes the ring buffer (a power of two; 0: the default, 4 MiB).
	RingBytes uint32
	// MaxProcesses bounds the kernel's lineage map (0: the default, 65536).
	MaxProcesses uint32
}

// Observer is attached to the kernel and delivers its records.
type Observer struct {
	Mechanism Mechanism
	coll      *ebpf.Collection
	links     []link.Link
	reader    *ringbuf.Reader
	decoder   events.Decoder
	poll      time.Duration // > 0: also read on a timer (records sent without wakeup)
}

// Open checks nothing but loads and attaches: call CheckPrerequisites first for
// friendly errors. With HookAuto it takes the best mechanism that works.
func Open(opts Options) (*Observer, error) {
	if opts.Hook == "" {
		opts.Hook = HookAuto
	}
	var errs []error
	for _, m := range candidates(opts.Hook) {
		obs, err := openWith(m, opts)
		if err == nil {
			return obs, nil
		}
		errs = append(errs, fmt.Errorf("%s via %s: %w", m.Hook, m.Name, err))
	}
	return nil, fmt.Errorf("%w: %w", ErrHookUnsupported, errors.Join(errs...))
}

// lineagePrograms run whatever the hook: they keep each process's ancestry.
var lineagePrograms = map[string]string{
	bpf.AdoptwatchProgOnFork: "sched_process_fork",
	bpf.AdoptwatchProgOnExec: "sched_process_exec",
	bpf.AdoptwatchProgOnFree: "sched_process_free",
}

func openWith(m Mechanism, opts Options) (obs *Observer, err error) {
	spec, err := bpf.LoadAdoptwatch()
	if err != nil {
		return nil, fmt.Errorf("parse BPF object: %w", err)
	}
	exitWalk := m.Hook == HookExitWalk
	needExit := exitWalk || opts.TaskRecords
	for name, v := range map[string]any{
		bpf.AdoptwatchVarExitWalk:        exitWalk,
		bpf.AdoptwatchVarEmitTaskRecords: opts.TaskRecords,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	if opts.RingBytes != 0 {
		spec.Maps[bpf.AdoptwatchMapRecords].MaxEntries = opts.RingBytes
	}
	if opts.MaxProcesses != 0 {
		spec.Maps[bpf.AdoptwatchMapLineages].MaxEntries = opts.MaxProcesses
	}

	// Load only the programs this configuration runs.
	wanted := map[string]bool{}
	for name := range lineagePrograms {
		wanted[name] = true
	}
	for _, name := range m.programs {
		wanted[name] = true
	}
	wanted[bpf.AdoptwatchProgOnExit] = needExit
	for name := range spec.Programs {
		if !wanted[name] {
			delete(spec.Programs, name)
		}
	}

	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load: %+v", verr)
		}
		if errors.Is(err, unix.EPERM) && m.Name == "fentry" {
			return nil, fmt.Errorf("the kernel refused to load a fentry program (EPERM: lockdown or a BPF LSM policy): %w", err)
		}
		return nil, fmt.Errorf("load: %w", err)
	}
	obs = &Observer{Mechanism: m, coll: coll, decoder: events.Decoder{Clock: events.NewClock()}}
	defer func() {
		if err != nil {
			obs.Close()
			obs = nil
		}
	}()

	// Lineage first, so no fork between attaching the hook and the lineage
	// programs leaves a process without ancestry; the hook last.
	for name, tp := range lineagePrograms {
		l, err := rawTracepoint(coll, tp, name)
		if err != nil {
			return obs, err
		}
		obs.links = append(obs.links, l)
	}
	if needExit {
		l, err := rawTracepoint(coll, "sched_process_exit", bpf.AdoptwatchProgOnExit)
		if err != nil {
			return obs, err
		}
		obs.links = append(obs.links, l)
	}
	hookLinks, err := m.attach(coll)
	for _, l := range hookLinks {
		if l != nil {
			obs.links = append(obs.links, l)
		}
	}
	if err != nil {
		return obs, fmt.Errorf("attach %s: %w", m.Name, err)
	}

	obs.reader, err = ringbuf.NewReader(coll.Maps[bpf.AdoptwatchMapRecords])
	if err != nil {
		return obs, fmt.Errorf("ring buffer reader: %w", err)
	}
	if opts.TaskRecords {
		// Task records are submitted without wakeups; collect them on a timer.
		obs.poll = 50 * time.Millisecond
	}
	return obs, nil
}

func rawTracepoint(c *ebpf.Collection, tracepoint, prog string) (link.Link, error) {
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tracepoint, Program: c.Programs[prog]})
	if err != nil {
		return nil, fmt.Errorf("attach raw tracepoint %s: %w", tracepoint, err)
	}
	return l, nil
}

// ErrClosed is returned by Read once the Observer is closed.
var ErrClosed = errors.New("observer closed")

// Read blocks until the next record arrives. Records that fail to decode are
// returned as errors; the caller may go on reading.
func (o *Observer) Read() (events.Record, error) {
	for {
		if o.poll > 0 {
			o.reader.SetDeadline(time.Now().Add(o.poll))
		}
		raw, err := o.reader.Read()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			return events.Record{}, ErrClosed
		case err != nil:
			return events.Record{}, fmt.Errorf("read ring buffer: %w", err)
		}
		return o.decoder.Decode(raw.RawSample)
	}
}

// Counters are the kernel side's running totals (bpf/records.h enum counter).
type Counters struct {
	LostAdoptions     uint64 // adoption records that found the ring buffer full
	LostTaskRecords   uint64 // fork/exec/exit records that found it full
	LineageFull       uint64 // processes left without lineage: the map was full
	SnapshotFull      uint64 // exiting threads whose children could not be remembered
	ChildrenTruncated uint64 // exiting threads with more children than followed
	StaleChildren     uint64 // remembered children gone before the check
	Adoptions         uint64 // adoptions seen in the kernel, sent or lost
}

// Counters sums the per-CPU counters.
func (o *Observer) Counters() (Counters, error) {
	m := o.coll.Maps[bpf.AdoptwatchMapCounters]
	sum := func(c bpf.AdoptwatchCounter) (uint64, error) {
		var perCPU []uint64
		if err := m.Lookup(uint32(c), &perCPU); err != nil {
			return 0, fmt.Errorf("read counter %d: %w", c, err)
		}
		var total uint64
		for _, v := range perCPU {
			total += v
		}
		return total, nil
	}
	var c Counters
	var err error
	for _, f := range []struct {
		dst *uint64
		idx bpf.AdoptwatchCounter
	}{
		{&c.LostAdoptions, bpf.AdoptwatchCounterCOUNTER_LOST_ADOPT},
		{&c.LostTaskRecords, bpf.AdoptwatchCounterCOUNTER_LOST_TASK},
		{&c.LineageFull, bpf.AdoptwatchCounterCOUNTER_LINEAGE_FULL},
		{&c.SnapshotFull, bpf.AdoptwatchCounterCOUNTER_SNAPSHOT_FULL},
		{&c.ChildrenTruncated, bpf.AdoptwatchCounterCOUNTER_CHILDREN_TRUNCATED},
		{&c.StaleChildren, bpf.AdoptwatchCounterCOUNTER_STALE_CHILD},
		{&c.Adoptions, bpf.AdoptwatchCounterCOUNTER_ADOPTIONS},
	} {
		if *f.dst, err = sum(f.idx); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Close detaches every program and frees the maps. A blocked Read returns ErrClosed.
func (o *Observer) Close() error {
	var errs []error
	if o.reader != nil {
		errs = append(errs, o.reader.Close())
	}
	for _, l := range o.links {
		errs = append(errs, l.Close())
	}
	o.links = nil
	if o.coll != nil {
		o.coll.Close()
	}
	return errors.Join(errs...)
}
