// Package loader loads adoptwatch's BPF programs into the running kernel, probes
// which adoption hook works there, attaches it, and reads the ring buffer.
package loader

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/bpf"
	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
)

// Options configure an Observer.
type Options struct {
	Hook events.Hook
	// TaskRecords asks for fork, exec and exit records too (--all).
	TaskRecords bool
	// RingBytes sizes the ring buffer (a power of two; 0: the default, 4 MiB).
	RingBytes uint32
	// MaxProcesses bounds the kernel's lineage map (0: the default, 65536).
	// Every process in a watched tree (and, with Unwatch, every process switched
	// off beneath a watched default) holds one entry; forks beyond the bound are
	// counted (Counters.LineageFull), never silent.
	MaxProcesses uint32

	// WatchPIDs scopes the watch to these processes' trees: each root, its
	// running descendants (from /proc) and everything they fork from now on.
	// Processes outside them cost one map lookup per fork and send nothing.
	WatchPIDs []int
	// WatchCgroup scopes the watch to a cgroup v2 subtree (a directory under the
	// cgroup2 mount, or a path relative to /sys/fs/cgroup): processes in it or
	// beneath it when they fork, exec or are adopted, and all they fork. It
	// combines with WatchPIDs (either one suffices). Empty: no cgroup scoping.
	WatchCgroup string
	// WatchUnits and WatchContainers scope the watch to the cgroups of the
	// systemd units matching these globs and of the containers whose ids
	// start with these prefixes, and everything beneath them: those there
	// now and those that appear later (followed with inotify). Values that
	// match nothing yet are kept (Observer.Unmatched). They combine with
	// WatchPIDs and WatchCgroup.
	WatchUnits      []string
	WatchContainers []string
	// KnownProcesses bounds the process table that completes lineages above
	// what the kernel recorded (0: the default, 131072; evictions are counted).
	KnownProcesses int
	// PinDir, if set, pins the maps that hold the watch flags there (see
	// DefaultPinDir), so that another process can switch trees off with
	// UnwatchPinned. Close removes the pins.
	PinDir string
	// Copies is how many copies of the fork, exec and exit programs to
	// attach (bpf/copies.bpf.h), 1 to 3; 0: as the kernel's preemption
	// model needs (DetectPreemption): 1 where a BPF program cannot be
	// preempted, else 3. Copies that are not attached are not loaded.
	Copies int
}

// Scoped reports whether the options watch only some trees.
func (o Options) Scoped() bool {
	return len(o.WatchPIDs) > 0 || o.WatchCgroup != "" || o.cgroupScoped()
}

// cgroupScoped reports whether --unit or --container is in use.
func (o Options) cgroupScoped() bool { return len(o.WatchUnits) > 0 || len(o.WatchContainers) > 0 }

// Observer is attached to the kernel and delivers its records.
type Observer struct {
	Mechanism Mechanism
	// Copies is how many copies of the fork, exec and exit programs are
	// attached; Preemption is what chose it (zero when Options.Copies did).
	Copies       int
	Preemption   Preemption
	copiesForced bool

	// mu guards the maps against Close: methods that use them hold it for
	// reading, Close for writing. Read needs no lock: closing the reader
	// interrupts it.
	mu     sync.RWMutex
	closed bool

	coll      *ebpf.Collection
	links     []link.Link
	ring      *reader
	assembler *events.Assembler // owns the process table; used by Read alone
	poll      time.Duration     // also read on a timer (records sent without wakeup)
	watch     watchMaps
	pinDir    string
	pinLock   *os.File // the pin directory's flock: this watcher owns the pins
	// ReplacedStalePins: PinDir held pins of a watcher that is gone, now replaced.
	ReplacedStalePins bool
	// Seeded is how many running processes WatchPIDs seeded as watched.
	Seeded int
	// Unmatched lists the WatchUnits and WatchContainers values ("--unit
	// GLOB", "--container PREFIX") that matched no cgroup at start.
	Unmatched []string

	contexts *events.Contexts // resolves adoptions' cgroups and reapers
	scope    *cgroups.Tracker // keeps the chosen cgroups of WatchUnits/WatchContainers current

	// forgottenAdoptees counts adoptees entries ForgetAdoptee deleted.
	forgottenAdoptees atomic.Uint64
}

// Open checks nothing but loads and attaches: call CheckPrerequisites first for
// friendly errors. With HookAuto it takes the best mechanism that works.
func Open(opts Options) (*Observer, error) {
	if opts.Hook == "" {
		opts.Hook = events.HookAuto
	}
	var errs []error
	for _, m := range candidates(opts.Hook) {
		obs, err := openWith(m, opts)
		if err == nil {
			return obs, nil
		}
		var cerr configError
		if errors.As(err, &cerr) {
			return nil, cerr.error // the options, not the hook: no other mechanism helps
		}
		errs = append(errs, fmt.Errorf("%s via %s: %w", m.Hook, m.Name, err))
	}
	return nil, fmt.Errorf("%w: %w", ErrHookUnsupported, errors.Join(errs...))
}

// configError is an error in the options (a pid, a cgroup, a pin directory),
// which no other mechanism would avoid.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// tracepointProgram is a program for one raw tracepoint; copy is its index
// among the copies of one program (bpf/copies.bpf.h), 0 for the primary.
type tracepointProgram struct {
	name, tracepoint string
	copy             int
}

// lineagePrograms run whatever the hook: they keep each process's ancestry,
// follow adopted processes to their exit and release (bpf/adoptee.bpf.h), and
// at exit take the exit-walk hook's first phase and the --all exit records.
// Attach order matters: each primary before its spare (bpf/copies.bpf.h).
var lineagePrograms = []tracepointProgram{
	{bpf.AdoptwatchProgOnFork, "sched_process_fork", 0},
	{bpf.AdoptwatchProgOnForkSpare, "sched_process_fork", 1},
	{bpf.AdoptwatchProgOnForkSpare2, "sched_process_fork", 2},
	{bpf.AdoptwatchProgOnExec, "sched_process_exec", 0},
	{bpf.AdoptwatchProgOnExecSpare, "sched_process_exec", 1},
	{bpf.AdoptwatchProgOnExecSpare2, "sched_process_exec", 2},
	{bpf.AdoptwatchProgOnExit, "sched_process_exit", 0},
	{bpf.AdoptwatchProgOnExitSpare, "sched_process_exit", 1},
	{bpf.AdoptwatchProgOnExitSpare2, "sched_process_exit", 2},
	{bpf.AdoptwatchProgOnFree, "sched_process_free", 0},
}

// maxCopies is how many copies of each program the BPF object holds.
const maxCopies = 3

// lastCopies are the programs whose recursion misses bound the events no
// copy saw, per number of copies attached (index copies-1): the last copy of
// each, and on_free, which has one.
var lastCopies = [maxCopies][]string{
	{bpf.AdoptwatchProgOnFork, bpf.AdoptwatchProgOnExec, bpf.AdoptwatchProgOnExit, bpf.AdoptwatchProgOnFree},
	{bpf.AdoptwatchProgOnForkSpare, bpf.AdoptwatchProgOnExecSpare, bpf.AdoptwatchProgOnExitSpare, bpf.AdoptwatchProgOnFree},
	{bpf.AdoptwatchProgOnForkSpare2, bpf.AdoptwatchProgOnExecSpare2, bpf.AdoptwatchProgOnExitSpare2, bpf.AdoptwatchProgOnFree},
}

// tailCall is a program another one tail-calls: it is loaded, never attached,
// and put in a program array at an index. copy is the copy of on_exit it
// belongs to (0 for resolve_more, which on_switch calls).
type tailCall struct {
	array string
	index uint32
	prog  string
	copy  int
}

// exitWalkTailCalls continue the exit walk of a thread with many children
// (bpf/adopt_exit_walk.bpf.h): each copy of on_exit has its own continuation,
// at the index of its copy.
var exitWalkTailCalls = []tailCall{
	{bpf.AdoptwatchMapSnapshotProgs, 0, bpf.AdoptwatchProgSnapshotMore, 0},
	{bpf.AdoptwatchMapSnapshotProgs, 1, bpf.AdoptwatchProgSnapshotMoreSpare, 1},
	{bpf.AdoptwatchMapSnapshotProgs, 2, bpf.AdoptwatchProgSnapshotMoreSpare2, 2},
	{bpf.AdoptwatchMapCountProgs, 0, bpf.AdoptwatchProgCountMore, 0},
	{bpf.AdoptwatchMapCountProgs, 1, bpf.AdoptwatchProgCountMoreSpare, 1},
	{bpf.AdoptwatchMapCountProgs, 2, bpf.AdoptwatchProgCountMoreSpare2, 2},
	{bpf.AdoptwatchMapResolveProgs, 0, bpf.AdoptwatchProgResolveMore, 0},
}

// copiesFor says how many copies opts ask for, and what chose them.
func copiesFor(opts Options) (int, Preemption, error) {
	switch {
	case opts.Copies == 0:
		p := DetectPreemption()
		return p.Copies(), p, nil
	case opts.Copies < 1 || opts.Copies > maxCopies:
		return 0, Preemption{}, fmt.Errorf("copies %d: want 1 to %d (0: as the kernel's preemption model needs)", opts.Copies, maxCopies)
	}
	return opts.Copies, Preemption{}, nil
}

// CopiesNote says in a few words how many copies of the fork, exec and exit
// programs the preemption model p needs, and why: "1 copy of the
// fork/exec/exit programs (preempt none, from the kernel log)".
func CopiesNote(p Preemption) string { return copiesNote(p.Copies(), p.String()) }

func copiesNote(copies int, why string) string {
	n := "1 copy"
	if copies != 1 {
		n = fmt.Sprintf("%d copies", copies)
	}
	return fmt.Sprintf("%s of the fork/exec/exit programs (%s)", n, why)
}

// CopiesNote says how many copies of the fork, exec and exit programs run
// and why, for the ready line.
func (o *Observer) CopiesNote() string {
	if o.copiesForced {
		return copiesNote(o.Copies, "set by option")
	}
	return copiesNote(o.Copies, o.Preemption.String())
}

// ExitWalkMaxChildren is how many children of one exiting thread the exit-walk
// hook follows; adoptions of the others are counted (Counters.UnfollowedAdoptions).
const ExitWalkMaxChildren = int(bpf.AdoptwatchLimitEXIT_WALK_MAX_CHILDREN)

func openWith(m Mechanism, opts Options) (obs *Observer, err error) {
	spec, err := bpf.LoadAdoptwatch()
	if err != nil {
		return nil, fmt.Errorf("parse BPF object: %w", err)
	}
	exitWalk := m.Hook == events.HookExitWalk
	var cgroup uint64
	if opts.WatchCgroup != "" {
		if cgroup, err = cgroupID(opts.WatchCgroup); err != nil {
			return nil, configError{err}
		}
	}
	sel, err := scopeSelector(opts)
	if err != nil {
		return nil, configError{err}
	}
	copies, preemption, err := copiesFor(opts)
	if err != nil {
		return nil, configError{err}
	}
	for name, v := range map[string]any{
		bpf.AdoptwatchVarScopeCgroupsOn:  opts.cgroupScoped(),
		bpf.AdoptwatchVarExitWalk:        exitWalk,
		bpf.AdoptwatchVarEmitTaskRecords: opts.TaskRecords,
		bpf.AdoptwatchVarWatchAll:        !opts.Scoped(),
		bpf.AdoptwatchVarWatchCgroupId:   cgroup,
		bpf.AdoptwatchVarCopies:          uint32(copies),
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

	// Load only the programs this configuration runs: verifying them is most
	// of the time an open takes.
	wanted := map[string]bool{}
	for _, p := range lineagePrograms {
		wanted[p.name] = p.copy < copies
	}
	for _, name := range m.programs {
		wanted[name] = true
	}
	for _, tc := range exitWalkTailCalls {
		wanted[tc.prog] = exitWalk && tc.copy < copies
	}
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
	obs = &Observer{Mechanism: m, Copies: copies, Preemption: preemption, copiesForced: opts.Copies != 0, coll: coll}
	obs.watch = watchMaps{
		lineages: coll.Maps[bpf.AdoptwatchMapLineages],
		seeds:    coll.Maps[bpf.AdoptwatchMapSeeds],
		settings: coll.Maps[bpf.AdoptwatchMapWatchSettings],
	}
	defer func() {
		if err != nil {
			obs.Close()
			obs = nil
		}
	}()
	if exitWalk {
		// Before anything is attached: a walk must find its continuation.
		for _, tc := range exitWalkTailCalls {
			if tc.copy >= copies {
				continue
			}
			if err := coll.Maps[tc.array].Put(tc.index, coll.Programs[tc.prog]); err != nil {
				return obs, fmt.Errorf("put %s in %s: %w", tc.prog, tc.array, err)
			}
		}
	}
	defaultWatched := uint32(0)
	if !opts.Scoped() || cgroup != 0 || opts.cgroupScoped() {
		defaultWatched = 1
	}
	if err := obs.watch.writeSettings(bpf.AdoptwatchSettings{DefaultWatched: defaultWatched}); err != nil {
		return obs, fmt.Errorf("write watch settings: %w", err)
	}
	if len(opts.WatchPIDs) > 0 {
		// The roots before attaching, so their first forks already inherit.
		if err := obs.watch.useSeeds(); err != nil {
			return obs, err
		}
		for _, pid := range opts.WatchPIDs {
			procs, err := readProcs()
			if err != nil {
				return obs, err
			}
			p, ok := procs[pid]
			if !ok {
				return obs, configError{fmt.Errorf("watch pid %d: no such process", pid)}
			}
			if err := obs.watch.putSeed(p, bpf.AdoptwatchSeedStateSEED_WATCH); err != nil {
				return obs, configError{err}
			}
		}
	}

	// The process table, before the programs run: processes that predate them
	// are known from /proc, those forked later from their records.
	known := opts.KnownProcesses
	if known <= 0 {
		known = defaultKnownProcesses
	}
	table := events.NewTable(known)
	if err := table.SeedFromProc(); err != nil {
		return obs, fmt.Errorf("read /proc: %w", err)
	}
	obs.assembler = events.NewAssembler(events.NewClock(), table)
	if obs.contexts, err = newContexts(); err != nil {
		return obs, fmt.Errorf("cgroups: %w", err)
	}
	obs.assembler.ResolveContexts(obs.contexts)
	if opts.cgroupScoped() {
		if err := obs.startScope(sel); err != nil {
			return obs, err
		}
	}

	// Lineage first, so no fork between attaching the hook and the lineage
	// programs leaves a process without ancestry; the hook last.
	for _, p := range lineagePrograms {
		if p.copy >= copies {
			continue
		}
		l, err := rawTracepoint(coll, p.tracepoint, p.name)
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

	if len(opts.WatchPIDs) > 0 {
		// Now that forks inherit, seed the descendants already running.
		if obs.Seeded, err = obs.watch.seedWatched(opts.WatchPIDs); err != nil {
			return obs, configError{err}
		}
	}
	if opts.PinDir != "" {
		lock, stale, err := obs.watch.pin(opts.PinDir)
		if err != nil {
			return obs, configError{pinError{err}}
		}
		obs.pinDir, obs.pinLock, obs.ReplacedStalePins = opts.PinDir, lock, stale
	}

	var promise func(uint64) error
	if v := coll.Variables[bpf.AdoptwatchVarReaderLooksByNs]; v != nil && v.Set(uint64(0)) == nil {
		promise = func(ns uint64) error { return v.Set(ns) } // a write to shared memory, no system call
	}
	obs.ring, err = newReader(coll.Maps[bpf.AdoptwatchMapRecords], promise)
	if err != nil {
		return obs, fmt.Errorf("ring buffer reader: %w", err)
	}
	// Adoptee and task records are submitted without wakeups (a wakeup costs
	// far more than a record); collect them on a timer.
	obs.poll = 50 * time.Millisecond
	return obs, nil
}

func rawTracepoint(c *ebpf.Collection, tracepoint, prog string) (link.Link, error) {
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tracepoint, Program: c.Programs[prog]})
	if err != nil {
		return nil, fmt.Errorf("attach raw tracepoint %s: %w", tracepoint, err)
	}
	return l, nil
}

// defaultKnownProcesses bounds the user-space process table.
const defaultKnownProcesses = 1 << 17

// ErrClosed is returned by Read once the Observer is closed.
var ErrClosed = errors.New("observer closed")

// Read blocks until the next record arrives and returns it finished
// (events.Assembler): an adoption's lineage reaches as far back as the kernel
// and the process table know. Records that fail to decode are returned as
// errors; the caller may go on reading. Call it from one goroutine.
func (o *Observer) Read() (events.Record, error) {
	sample, err := o.ring.next(o.poll)
	if err != nil {
		return events.Record{}, err
	}
	return o.assembler.Assemble(sample)
}

// Pending says whether records are waiting: a caller that buffers output
// flushes when there are none, so nothing it printed waits for the next record.
func (o *Observer) Pending() bool { return o.ring.pending() }

// Counters are the kernel side's running totals (bpf/records.h enum counter).
type Counters struct {
	LostAdoptions   uint64 // adoption records that found the ring buffer full
	LostTaskRecords uint64 // fork/exec/exit records that found it full
	LineageFull     uint64 // processes left without lineage: the map was full
	// UnfollowedAdoptions are adoptions lost because the exit-walk hook could
	// not follow the child (beyond ExitWalkMaxChildren of one exiting thread,
	// or its maps full): one per child, so that reported + lost = adoptions.
	UnfollowedAdoptions uint64
	// SnapshotFull: exiting threads whose children could not be remembered
	// (the map was full); their children are in UnfollowedAdoptions.
	SnapshotFull uint64
	// ChildrenTruncated: exiting threads with more children than the exit walk
	// can even count; UnfollowedAdoptions is then a lower bound.
	ChildrenTruncated uint64
	StaleChildren     uint64 // remembered children gone before the check
	Adoptions         uint64 // adoptions seen in the kernel, sent or lost
	// UnwatchedAdoptions are adoptions of unwatched processes: seen, not sent.
	UnwatchedAdoptions uint64
	// UnwatchMarksFull: children of unwatched parents that could not be marked
	// unwatched (lineage map full); they count as watched again.
	UnwatchMarksFull uint64
	// SpareRuns: forks, execs and exits that a spare copy of a program handled
	// because the first was preempted on that CPU (bpf/lineage.bpf.h).
	SpareRuns uint64
	// AdopteesFull: reported adoptions whose process could not be followed to
	// its exit and release (the kernel's adoptees map was full).
	AdopteesFull uint64
	// LostAdopteeRecords: adoptee exit and reaped records that found the ring
	// buffer full.
	LostAdopteeRecords uint64
	// UnseenEvents bounds the forks, execs, exits and releases that no copy
	// saw (the kernel skipped them while all copies were busy on that CPU):
	// an unseen exit can hide adoptions, an unseen release a reaped record.
	UnseenEvents uint64
	// ForgottenAdoptees: adopted processes whose release the kernel never
	// saw (no reaped record), found gone by user space and deleted from the
	// adoptees map (ForgetAdoptee).
	ForgottenAdoptees uint64
	// ScopeCgroupsDropped counts cgroups that --unit or --container chose
	// but the kernel's map had no room for: processes there are not watched.
	ScopeCgroupsDropped uint64
}

// Counters sums the per-CPU counters.
func (o *Observer) Counters() (Counters, error) {
	release, err := o.hold()
	if err != nil {
		return Counters{}, err
	}
	defer release()
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
		{&c.UnwatchedAdoptions, bpf.AdoptwatchCounterCOUNTER_UNWATCHED_ADOPTIONS},
		{&c.UnwatchMarksFull, bpf.AdoptwatchCounterCOUNTER_UNWATCH_MARKS_FULL},
		{&c.UnfollowedAdoptions, bpf.AdoptwatchCounterCOUNTER_UNFOLLOWED},
		{&c.AdopteesFull, bpf.AdoptwatchCounterCOUNTER_ADOPTEES_FULL},
		{&c.LostAdopteeRecords, bpf.AdoptwatchCounterCOUNTER_LOST_ADOPTEE},
	} {
		if *f.dst, err = sum(f.idx); err != nil {
			return c, err
		}
	}
	if c.SpareRuns, err = sum(bpf.AdoptwatchCounterCOUNTER_SPARE_RUNS); err != nil {
		return c, err
	}
	// An event the last copy attached missed may have been missed by all of
	// them: an upper bound. on_free has one copy: each of its misses is a
	// release unseen. Recursion misses are kept by the kernel from 5.12.
	for _, name := range lastCopies[o.Copies-1] {
		if p := o.coll.Programs[name]; p != nil {
			if st, err := p.Stats(); err == nil {
				c.UnseenEvents += st.RecursionMisses
			}
		}
	}
	c.ForgottenAdoptees = o.forgottenAdoptees.Load()
	if o.scope != nil {
		c.ScopeCgroupsDropped = o.scope.Stats().Dropped
	}
	return c, nil
}

// hold keeps the maps open until release is called, or says they are closed.
func (o *Observer) hold() (release func(), err error) {
	o.mu.RLock()
	if o.closed {
		o.mu.RUnlock()
		return nil, ErrClosed
	}
	return o.mu.RUnlock, nil
}

// Close detaches every program and frees the maps. A blocked Read returns
// ErrClosed; calling Close again does nothing.
func (o *Observer) Close() error {
	if o.ring != nil {
		o.ring.close() // first, so that a blocked Read lets go
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	var errs []error
	for _, l := range o.links {
		errs = append(errs, l.Close())
	}
	o.links = nil
	if o.pinDir != "" {
		o.watch.unpin(o.pinDir, o.pinLock)
		o.pinDir, o.pinLock = "", nil
	}
	if o.scope != nil {
		o.scope.Close()
	}
	if o.contexts != nil && o.contexts.Cgroups != nil {
		o.contexts.Cgroups.Close()
	}
	if o.coll != nil {
		o.coll.Close()
	}
	return errors.Join(errs...)
}
