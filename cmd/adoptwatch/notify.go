package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/adoptwatch/adoptwatch/internal/journal"
	"github.com/adoptwatch/adoptwatch/internal/notify"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/sink"
	"github.com/adoptwatch/adoptwatch/internal/subscribe"
)

// notifyFlags are the flags of the sinks beyond the printer.
type notifyFlags struct {
	pids, sigs  []string
	force       bool
	socketPath  string
	socketGroup string
	socketQueue int
	socketMax   int // subscribers at once
	socketUID   int // subscribers at once per non-root uid
	journal     bool
}

func (f *notifyFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.pids, "notify-pid", nil, "queue a signal to reaper `PID` for each process it adopts (repeatable, paired with --notify-signal)")
	fs.StringArrayVar(&f.sigs, "notify-signal", nil, "the `SIG` for the matching --notify-pid: RTMIN+N, a name or a number; si_pid = adopted pid, si_status = previous parent")
	fs.BoolVar(&f.force, "notify-force", false, "allow a standard (non-realtime) --notify-signal, although those do not queue")
	fs.StringVar(&f.socketPath, "socket", "", "serve adoption records with pidfds to subscribers on Unix socket `PATH`")
	fs.StringVar(&f.socketGroup, "socket-group", "", "let members of `GROUP` subscribe too (socket mode 0660)")
	fs.IntVar(&f.socketQueue, "socket-queue", subscribe.DefaultQueue, "records queued per subscriber before it is disconnected as stalled")
	fs.IntVar(&f.socketMax, "socket-max-subscribers", subscribe.DefaultMaxSubscribers, "subscribers connected at once; more are refused")
	fs.IntVar(&f.socketUID, "socket-max-per-uid", subscribe.DefaultMaxPerUID, "subscribers connected at once per non-root uid; more are refused")
	fs.BoolVar(&f.journal, "journal", false, "also write each adoption to the systemd journal, with ADOPTWATCH_* fields (journalctl ADOPTWATCH_REAPER_KIND=init)")
}

// sinks builds the printer and the sinks the flags ask for; they report through p.
func (f *notifyFlags) sinks(p *output.Printer) (sink.Set, error) {
	specs, err := f.specs()
	if err != nil {
		return nil, err
	}
	if f.socketPath == "" && f.socketGroup != "" {
		return nil, errors.New("--socket-group needs --socket")
	}
	if f.socketPath != "" && f.socketQueue < 1 {
		return nil, errors.New("--socket-queue must be at least 1")
	}
	if f.socketPath != "" && (f.socketMax < 1 || f.socketUID < 1) {
		return nil, errors.New("--socket-max-subscribers and --socket-max-per-uid must be at least 1")
	}
	sinks := sink.Set{p}
	if len(specs) > 0 {
		s, err := notify.NewSink(specs, p)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, s)
	}
	if f.socketPath != "" {
		s, err := subscribe.NewSink(subscribe.Config{Path: f.socketPath, Group: f.socketGroup, Queue: f.socketQueue,
			MaxSubscribers: f.socketMax, MaxPerUID: f.socketUID}, p)
		if err != nil {
			sinks.Close()
			return nil, fmt.Errorf("--socket: %w", err)
		}
		sinks = append(sinks, s)
	}
	if f.journal {
		s, err := journal.Open(p)
		if err != nil {
			sinks.Close()
			return nil, fmt.Errorf("--journal: %w", err)
		}
		sinks = append(sinks, s)
	}
	return sinks, nil
}

// check refuses bad values of these flags before anything starts (exit 2).
func (f *notifyFlags) check(fs *pflag.FlagSet) error {
	if _, err := f.specs(); err != nil {
		return err
	}
	switch {
	case fs.Changed("socket") && f.socketPath == "":
		return errors.New("--socket: empty path")
	case f.socketPath == "" && f.socketGroup != "":
		return errors.New("--socket-group needs --socket")
	case f.socketQueue < 1:
		return fmt.Errorf("--socket-queue %d: must be at least 1", f.socketQueue)
	case f.socketMax < 1:
		return fmt.Errorf("--socket-max-subscribers %d: must be at least 1", f.socketMax)
	case f.socketUID < 1:
		return fmt.Errorf("--socket-max-per-uid %d: must be at least 1", f.socketUID)
	}
	if f.socketGroup != "" {
		if _, err := subscribe.LookupGroup(f.socketGroup); err != nil {
			return err
		}
	}
	return nil
}

// specs checks the --notify-pid/--notify-signal pairs.
func (f *notifyFlags) specs() ([]notify.Spec, error) {
	if len(f.pids) != len(f.sigs) {
		return nil, fmt.Errorf("--notify-pid and --notify-signal come in pairs: got %d and %d", len(f.pids), len(f.sigs))
	}
	var out []notify.Spec
	for i := range f.pids {
		pid, err := strconv.Atoi(f.pids[i])
		if err != nil || pid < 1 {
			return nil, fmt.Errorf("--notify-pid %q: not a process id", f.pids[i])
		}
		sig, err := notify.ParseSignal(f.sigs[i])
		if err == nil {
			err = notify.CheckSignal(sig, f.force)
		}
		if err != nil {
			return nil, fmt.Errorf("--notify-signal %s: %w", f.sigs[i], err)
		}
		out = append(out, notify.Spec{PID: pid, Signal: sig})
	}
	return out, nil
}
