package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/losses"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/reapwatch"
	"github.com/adoptwatch/adoptwatch/internal/service"
	"github.com/adoptwatch/adoptwatch/internal/sink"
	"github.com/adoptwatch/adoptwatch/loader"
)

const watchUsage = `Usage: adoptwatch [flags]
       adoptwatch features
       adoptwatch unwatch [--pin-dir DIR] PID...
       adoptwatch ps [--json] [--socket PATH]
       adoptwatch run [flags] -- CMD [ARGS...]

adoptwatch prints one line per process adopted by init, a child subreaper or a
pid namespace's reaper, as it happens: the adopted process, its previous and new
parent, the kind of reaper, and its lineage from the process that launched it,
through every fork, exec and setsid, including the processes that have exited.

  12:00:01.000001 adopt 4242 mydaemon from 4241 mydaemon to 1 init (init) double-fork: bash[900] > mydaemon[4240 exec] > mydaemon[4241 setsid] > mydaemon[4242]

Needs root (or CAP_BPF and CAP_PERFMON) and a kernel with BTF, Linux 5.8 or later.

Subcommands:
  features   show which adoption hooks this kernel supports and which is used
  unwatch    switch process trees off in a running adoptwatch started with --pin
  ps         list the adopted processes a running adoptwatch follows (--control-socket)
  run        start a forking daemon and stay in the foreground while it lives

Flags:
`

// watchOptions are the parsed flags of the default command.
type watchOptions struct {
	json      bool
	all       bool
	pids      []int
	cgroup    string
	units     []string
	ctrs      []string
	pin       bool
	pinDir    string
	hook      events.Hook
	readyFile string
	ringSize  uint32
	notify    notifyFlags
	reaping   reapingFlags
	service   serviceFlags
	notifier  *service.Notifier
	// cpuProfile: a pprof CPU profile of the whole run (hidden; for issue 12's
	// cost work and anyone measuring a change).
	cpuProfile string
}

// watchFlags defines the watcher's flags: the one definition that --help
// and the man page (gen-man) both print.
func watchFlags(opts *watchOptions, hook *string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("adoptwatch", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.BoolVar(&opts.json, "json", false, "print one JSON object per line instead of text")
	fs.BoolVar(&opts.all, "all", false, "also print every fork, exec and exit")
	fs.IntSliceVar(&opts.pids, "pid", nil, "watch only the tree of process `PID` (repeatable): it, its descendants, and all they fork, even once re-parented")
	fs.StringVar(&opts.cgroup, "cgroup", "", "watch only processes in cgroup v2 `PATH` (or below), and all they fork")
	fs.StringArrayVar(&opts.units, "unit", nil, "watch only processes of the systemd units matching `GLOB` (repeatable; a slice counts with all it holds), and all they fork, units started later included")
	fs.StringArrayVar(&opts.ctrs, "container", nil, "watch only processes of the containers whose id starts with `PREFIX` (repeatable), and all they fork, containers started later included")
	fs.BoolVar(&opts.pin, "pin", false, "pin the watch maps so that \"adoptwatch unwatch PID\" can switch trees off")
	fs.StringVar(&opts.pinDir, "pin-dir", loader.DefaultPinDir, "where --pin pins the maps (on a BPF file system)")
	fs.StringVar(hook, "hook", "auto", "adoption hook: auto, exact (kill_orphaned_pgrp via fentry or kprobe) or exit-walk (portable)")
	fs.StringVar(&opts.readyFile, "ready-file", "", "create `FILE` once attached (for scripts and tests)")
	fs.Uint32Var(&opts.ringSize, "ring-size", 4<<20, "ring buffer size in `BYTES`: a power of two from 4096 to 1 GiB; larger rides out longer stalls")
	opts.notify.add(fs)
	opts.reaping.add(fs)
	fs.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the run to `FILE` (debugging)")
	fs.MarkHidden("cpuprofile")
	opts.service.add(fs, "attached")
	return fs
}

func watchCommand(args []string, stdout, stderr io.Writer) int {
	var opts watchOptions
	var hook string
	fs := watchFlags(&opts, &hook)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, watchUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return usageError(stderr, "adoptwatch", "%v (see adoptwatch --help)", err)
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "adoptwatch", "unexpected argument %q (see adoptwatch --help)", fs.Arg(0))
	}
	if err := opts.check(fs, hook); err != nil {
		return usageError(stderr, "adoptwatch", "%v", err)
	}
	var err error
	if opts.notifier, err = opts.service.notifier(fs, stderr); err != nil {
		return usageError(stderr, "adoptwatch", "%v", err)
	}
	return watch(opts, stdout, stderr)
}

// maxRingSize bounds --ring-size: the kernel allocates the whole buffer at
// once, and 2 GiB took more than 10 s and 4 GB to start.
const maxRingSize = 1 << 30

// check refuses flag values that cannot work, before anything is loaded:
// each error is one line, and the caller exits 2.
func (opts *watchOptions) check(fs *pflag.FlagSet, hook string) error {
	var err error
	if opts.hook, err = events.ParseHook(hook); err != nil {
		return err
	}
	if size := opts.ringSize; size < 4096 || size > maxRingSize || size&(size-1) != 0 {
		return fmt.Errorf("--ring-size %d: want a power of two from 4096 to %d (1 GiB)", size, maxRingSize)
	}
	for _, pid := range opts.pids {
		if pid <= 0 {
			return fmt.Errorf("--pid %d: not a process id", pid)
		}
	}
	for _, name := range []string{"cgroup", "pin-dir", "ready-file"} {
		if fs.Changed(name) && fs.Lookup(name).Value.String() == "" {
			return fmt.Errorf("--%s: empty path", name)
		}
	}
	for _, g := range opts.units {
		if err := cgroups.ValidUnitGlob(g); err != nil {
			return fmt.Errorf("--unit: %v", output.Escape(err.Error()))
		}
	}
	for _, p := range opts.ctrs {
		if err := cgroups.ValidContainerPrefix(p); err != nil {
			return fmt.Errorf("--container: %v", output.Escape(err.Error()))
		}
	}
	if opts.cgroup != "" {
		if err := loader.CheckCgroup(opts.cgroup); err != nil {
			return fmt.Errorf("--%s", oneLine(err))
		}
	}
	if opts.pin {
		if parent := filepath.Dir(opts.pinDir); !isDir(parent) {
			return fmt.Errorf("--pin-dir %s: its parent %s does not exist (mount a BPF file system there: mount -t bpf bpf %s)", opts.pinDir, parent, parent)
		}
	}
	if opts.readyFile != "" {
		dir := filepath.Dir(opts.readyFile)
		if !isDir(dir) {
			return fmt.Errorf("--ready-file %s: directory %s does not exist", opts.readyFile, dir)
		}
	}
	if err := opts.reaping.check(fs); err != nil {
		return err
	}
	return opts.notify.check(fs)
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// usageError prints one line and returns the exit status of bad flags.
func usageError(stderr io.Writer, prog, format string, args ...any) int {
	fmt.Fprintf(stderr, prog+": "+format+"\n", args...)
	return 2
}

func watch(opts watchOptions, stdout, stderr io.Writer) int {
	if err := loader.CheckPrerequisites(); err != nil {
		return fail(stderr, "%v", err)
	}
	for _, pid := range opts.pids {
		if _, err := procfs.Lookup(pid); err != nil {
			return fail(stderr, "--pid %d: no such process", pid)
		}
	}
	if opts.cpuProfile != "" {
		stopProfile, err := startCPUProfile(opts.cpuProfile)
		if err != nil {
			return fail(stderr, "--cpuprofile: %v", err)
		}
		defer stopProfile()
	}
	p := output.NewPrinter(stdout, stderr, opts.json)
	p.Buffer(output.MaxOutputDelay)
	sinks, err := opts.notify.sinks(p)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	defer sinks.Close()

	lopts := loader.Options{Hook: opts.hook, TaskRecords: opts.all, RingBytes: opts.ringSize,
		WatchPIDs: opts.pids, WatchCgroup: opts.cgroup, WatchUnits: opts.units, WatchContainers: opts.ctrs}
	if opts.pin {
		lopts.PinDir = opts.pinDir
	}
	obs, err := loader.Open(lopts)
	if errors.Is(err, loader.ErrPin) {
		return fail(stderr, "--pin: %v", oneLine(err))
	}
	if err != nil {
		return fail(stderr, "cannot attach: %v", oneLine(err))
	}
	defer obs.Close()
	tuneRuntime()
	if note := obs.UnmatchedNote(); note != "" {
		p.Log("%s", output.Escape(note))
	}
	if obs.ReplacedStalePins {
		p.Log("replaced stale pins at %s: the adoptwatch that pinned them exited without removing them", output.Escape(opts.pinDir))
	}

	reap, err := opts.reaping.build(p, obs, sinks)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	defer reap.Close()
	sinks = append(sinks, reap.sinks()...)

	n := opts.notifier
	defer n.Flush(time.Second) // STOPPING=1 and what else is queued, if the manager takes it
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, unix.SIGINT, unix.SIGTERM)
	go func() {
		<-stop
		n.Stopping()
		obs.Close() // unblocks Read
	}()

	// The ready file first: "ready" is announced only once it exists.
	watching := fmt.Sprintf("watching %s with the %s hook (%s), %s", scope(opts, obs), obs.Mechanism.Hook, obs.Mechanism.Name, obs.CopiesNote())
	if opts.readyFile != "" {
		if err := os.WriteFile(opts.readyFile, []byte("ready\n"), 0o644); err != nil {
			return fail(stderr, "--ready-file: %v", err)
		}
	}
	fmt.Fprintf(stderr, "adoptwatch: ready: %s\n", watching)
	n.Status(watching)
	n.Ready()
	if interval, err := service.WatchdogInterval(); err != nil {
		p.Log("watchdog: %v: no WATCHDOG=1 will be sent", err)
	} else if interval > 0 {
		pings := make(chan struct{})
		defer close(pings)
		go n.Watchdog(interval, pings)
	}

	lost := losses.New(obs, p)
	done := make(chan struct{})
	go lost.Every(time.Second, done)
	defer func() {
		close(done)
		lost.Check() // the last word on what was lost
	}()

	for {
		rec, err := obs.Read()
		if errors.Is(err, loader.ErrClosed) {
			return 0
		}
		if err != nil {
			p.Warn(output.WarningLine(time.Now(), err.Error()), "%v", err)
			continue
		}
		deliver(rec, sinks, p, reap.monitor)
	}
}

// deliver hands one finished record to what takes it: adoptions to every
// sink, task records (--all) to the printer, an adoptee's exit and reap to
// the reaping monitor.
func deliver(rec events.Record, sinks sink.Set, p *output.Printer, monitor *reapwatch.Monitor) {
	switch {
	case rec.Adoption != nil:
		sinks.Adoption(output.NewAdoption(rec.Adoption))
	case rec.Task != nil:
		p.Task(rec.Task)
	case rec.Adoptee != nil:
		monitor.Adoptee(rec.Adoptee)
	}
}

// gcPercent is the GC's heap growth (GOGC) while watching, unless the
// environment sets one. The watcher's live heap is a few MB (its tables and
// caches are bounded), so Go's default (100, with a 4 MB floor) collected
// every thousand or so adoptions, about 4 µs of CPU per adoption (issue 12);
// 200 collects half as often. (400 saved more, but left the watcher's RSS
// after TestSocketAbandonedConnections' flood 14 MB from the test's bound;
// 200 leaves 24.)
const gcPercent = 200

// tuneRuntime, once the programs are loaded: the loading's garbage (tens of
// MB of BTF and instructions) is collected and returned to the system, so
// that the larger GC growth starts from the watcher's own heap.
//
// GOMAXPROCS stays Go's: one processor halved the context switches per
// adoption (3.6 to 1.5, paced double fork at 1,000/s), but under a flood of
// abandoned subscriber connections the heap then outgrew its bound
// (TestSocketAbandonedConnections: 60-72 MB against 36-39 MB).
func tuneRuntime() {
	debug.FreeOSMemory()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// startCPUProfile profiles until the returned function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// scope says what is watched, for the ready line.
func scope(opts watchOptions, obs *loader.Observer) string {
	var parts []string
	if len(opts.pids) > 0 {
		parts = append(parts, fmt.Sprintf("the trees of pid %s (%d running processes)", strings.Trim(fmt.Sprint(opts.pids), "[]"), obs.Seeded))
	}
	if opts.cgroup != "" {
		parts = append(parts, "cgroup "+output.Escape(opts.cgroup))
	}
	if len(opts.units) > 0 {
		parts = append(parts, "units "+output.Escape(strings.Join(opts.units, " ")))
	}
	if len(opts.ctrs) > 0 {
		parts = append(parts, "containers "+output.Escape(strings.Join(opts.ctrs, " ")))
	}
	if len(parts) == 0 {
		return "all adoptions"
	}
	return "adoptions in " + strings.Join(parts, " and ")
}

// oneLine flattens a joined error for a one-line message.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
