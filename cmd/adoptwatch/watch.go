package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/losses"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/loader"
)

const watchUsage = `Usage: adoptwatch [flags]
       adoptwatch features
       adoptwatch unwatch [--pin-dir DIR] PID...
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
  run        start a forking daemon and stay in the foreground while it lives

Flags:
`

// watchOptions are the parsed flags of the default command.
type watchOptions struct {
	json      bool
	all       bool
	pids      []int
	cgroup    string
	pin       bool
	pinDir    string
	hook      events.Hook
	readyFile string
	ringSize  uint32
	notify    notifyFlags
	// cpuProfile: a pprof CPU profile of the whole run (hidden; for issue 12's
	// cost work and anyone measuring a change).
	cpuProfile string
}

func watchCommand(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("adoptwatch", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	var opts watchOptions
	var hook string
	fs.BoolVar(&opts.json, "json", false, "print one JSON object per line instead of text")
	fs.BoolVar(&opts.all, "all", false, "also print every fork, exec and exit")
	fs.IntSliceVar(&opts.pids, "pid", nil, "watch only the tree of process `PID` (repeatable): it, its descendants, and all they fork, even once re-parented")
	fs.StringVar(&opts.cgroup, "cgroup", "", "watch only processes in cgroup v2 `PATH` (or below), and all they fork")
	fs.BoolVar(&opts.pin, "pin", false, "pin the watch maps so `adoptwatch unwatch PID` can switch trees off")
	fs.StringVar(&opts.pinDir, "pin-dir", loader.DefaultPinDir, "where --pin pins the maps (on a BPF file system)")
	fs.StringVar(&hook, "hook", "auto", "adoption hook: auto, exact (kill_orphaned_pgrp via fentry or kprobe) or exit-walk (portable)")
	fs.StringVar(&opts.readyFile, "ready-file", "", "create `FILE` once attached (for scripts and tests)")
	fs.Uint32Var(&opts.ringSize, "ring-size", 4<<20, "ring buffer size in `BYTES`: a power of two, at least 4096; larger rides out longer stalls")
	opts.notify.add(fs)
	fs.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the run to `FILE` (debugging)")
	fs.MarkHidden("cpuprofile")
	fs.Usage = func() {
		fmt.Fprint(stderr, watchUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "adoptwatch: %v\nRun 'adoptwatch --help' for usage.\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "adoptwatch: unexpected argument %q\nRun 'adoptwatch --help' for usage.\n", fs.Arg(0))
		return 2
	}
	var err error
	if opts.hook, err = events.ParseHook(hook); err != nil {
		fmt.Fprintf(stderr, "adoptwatch: %v\n", err)
		return 2
	}
	if size := opts.ringSize; size < 4096 || size&(size-1) != 0 {
		fmt.Fprintf(stderr, "adoptwatch: --ring-size %d: want a power of two of at least 4096\n", size)
		return 2
	}
	for _, pid := range opts.pids {
		if pid <= 0 {
			fmt.Fprintf(stderr, "adoptwatch: --pid must be a process id\n")
			return 2
		}
	}
	return watch(opts, stdout, stderr)
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
		WatchPIDs: opts.pids, WatchCgroup: opts.cgroup}
	if opts.pin {
		lopts.PinDir = opts.pinDir
	}
	obs, err := loader.Open(lopts)
	if err != nil {
		return fail(stderr, "cannot attach: %v", oneLine(err))
	}
	defer obs.Close()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, unix.SIGINT, unix.SIGTERM)
	go func() {
		<-stop
		obs.Close() // unblocks Read
	}()

	fmt.Fprintf(stderr, "adoptwatch: ready: watching %s with the %s hook (%s)\n", scope(opts, obs), obs.Mechanism.Hook, obs.Mechanism.Name)
	if opts.readyFile != "" {
		if err := os.WriteFile(opts.readyFile, []byte("ready\n"), 0o644); err != nil {
			return fail(stderr, "--ready-file: %v", err)
		}
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
		switch {
		case rec.Adoption != nil:
			sinks.Adoption(output.NewAdoption(rec.Adoption))
		case rec.Task != nil:
			p.Task(rec.Task)
		}
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
		parts = append(parts, "cgroup "+opts.cgroup)
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
