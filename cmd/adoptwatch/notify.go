package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/notify"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/subscribe"
)

// sink receives every adoption that passes the filters, with its JSON line.
type sink interface {
	Adoption(a *events.Adoption, jsonLine []byte)
	Close() error
}

// addNotifyFlags registers the notification flags; the returned function builds
// the sinks they ask for once the flags are parsed. Sinks report through p.
func addNotifyFlags(fs *pflag.FlagSet) func(p *printer) ([]sink, error) {
	var (
		pids, sigs  []string
		force       bool
		socketPath  string
		socketGroup string
		socketQueue int
		socketMax   int
		socketUID   int
	)
	fs.StringArrayVar(&pids, "notify-pid", nil, "queue a signal to reaper `PID` for each process it adopts (repeatable, paired with --notify-signal)")
	fs.StringArrayVar(&sigs, "notify-signal", nil, "the `SIG` for the matching --notify-pid: RTMIN+N, a name or a number; si_pid = adopted pid, si_status = previous parent")
	fs.BoolVar(&force, "notify-force", false, "allow a standard (non-realtime) --notify-signal, although those do not queue")
	fs.StringVar(&socketPath, "socket", "", "serve adoption records with pidfds to subscribers on Unix socket `PATH`")
	fs.StringVar(&socketGroup, "socket-group", "", "let members of `GROUP` subscribe too (socket mode 0660)")
	fs.IntVar(&socketQueue, "socket-queue", subscribe.DefaultQueue, "records queued per subscriber before it is disconnected as stalled")
	fs.IntVar(&socketMax, "socket-max-subscribers", subscribe.DefaultMaxSubscribers, "subscribers connected at once; more are refused")
	fs.IntVar(&socketUID, "socket-max-per-uid", subscribe.DefaultMaxPerUID, "subscribers connected at once per non-root uid; more are refused")
	return func(p *printer) ([]sink, error) {
		var sinks []sink
		closeAll := func() {
			for _, s := range sinks {
				s.Close()
			}
		}
		if len(pids) != len(sigs) {
			return nil, fmt.Errorf("--notify-pid and --notify-signal come in pairs: got %d and %d", len(pids), len(sigs))
		}
		if len(pids) > 0 {
			s, err := newSignalSink(pids, sigs, force, p)
			if err != nil {
				return nil, err
			}
			sinks = append(sinks, s)
		}
		if socketPath != "" {
			if socketQueue < 1 {
				closeAll()
				return nil, errors.New("--socket-queue must be at least 1")
			}
			if socketMax < 1 || socketUID < 1 {
				closeAll()
				return nil, errors.New("--socket-max-subscribers and --socket-max-per-uid must be at least 1")
			}
			srv, err := subscribe.Listen(subscribe.Config{
				Path: socketPath, Group: socketGroup, Queue: socketQueue,
				MaxSubscribers: socketMax, MaxPerUID: socketUID,
				Log: func(format string, args ...any) { p.log(format, args...) },
			})
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("--socket: %w", err)
			}
			sinks = append(sinks, &socketSink{srv: srv, p: p})
		} else if socketGroup != "" {
			return nil, errors.New("--socket-group needs --socket")
		}
		return sinks, nil
	}
}

// log writes a diagnostic line to stderr only: it is not data.
func (p *printer) log(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.errOut, "adoptwatch: "+format+"\n", args...)
}

// event reports something a consumer must not miss: on stderr always, and in
// the JSON stream as well with --json.
func (p *printer) event(jsonLine []byte, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.errOut, "adoptwatch: "+format+"\n", args...)
	if p.json {
		p.out.Write(jsonLine)
	}
}

// signalSink is the PR_SET_ADOPTSIG ABI: one queued signal per adoption by a
// registered reaper.
type signalSink struct {
	targets []*notify.Target
	p       *printer
}

func newSignalSink(pids, sigs []string, force bool, p *printer) (*signalSink, error) {
	s := &signalSink{p: p}
	for i := range pids {
		pid, err := strconv.Atoi(pids[i])
		if err != nil || pid < 1 {
			s.Close()
			return nil, fmt.Errorf("--notify-pid %q: not a process id", pids[i])
		}
		sig, err := notify.ParseSignal(sigs[i])
		if err == nil {
			err = notify.CheckSignal(sig, force)
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("--notify-signal %s: %w", sigs[i], err)
		}
		k, err := events.ReadProcStat(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("--notify-pid %d: no such process", pid)
		}
		t, err := notify.OpenTarget(pid, sig, k.Start)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.targets = append(s.targets, t)
	}
	return s, nil
}

func (s *signalSink) Adoption(a *events.Adoption, _ []byte) {
	for _, t := range s.targets {
		if a.NewParent.PID != uint32(t.PID) || !events.SameStart(a.NewParent.Start, t.Start) {
			continue
		}
		err := t.Notify(a.Child.PID, a.Child.UID, a.PrevParent.PID)
		if err == nil {
			continue
		}
		why := err.Error()
		switch {
		case errors.Is(err, unix.EAGAIN):
			why = "the reaper's queue of pending signals is full (RLIMIT_SIGPENDING)"
		case errors.Is(err, unix.ESRCH):
			why = "the reaper is gone"
		}
		line, _ := json.Marshal(map[string]any{
			"event": "notify-failed", "time": time.Now().Format(output.TimeFormat),
			"target": t.PID, "signal": notify.SignalName(t.Signal), "pid": a.Child.PID,
			"prev_parent": a.PrevParent.PID, "errno": errnoName(err), "reason": why,
		})
		s.p.event(append(line, '\n'), "notify-failed: %s to %d for the adoption of %d from %d: %s",
			notify.SignalName(t.Signal), t.PID, a.Child.PID, a.PrevParent.PID, why)
	}
}

func errnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	return err.Error()
}

func (s *signalSink) Close() error {
	for _, t := range s.targets {
		t.Close()
	}
	return nil
}

// socketSink serves records to subscribers; its final counts are data.
type socketSink struct {
	srv *subscribe.Server
	p   *printer
}

func (s *socketSink) Adoption(a *events.Adoption, jsonLine []byte) { s.srv.Publish(a, jsonLine) }

func (s *socketSink) Close() error {
	st := s.srv.Close()
	line, _ := json.Marshal(struct {
		Event string `json:"event"`
		Time  string `json:"time"`
		subscribe.Stats
	}{"socket-stats", time.Now().Format(output.TimeFormat), st})
	s.p.event(append(line, '\n'), "socket: %d subscribers (%d refused, %d overflowed, %d write errors, %d cut off, %d closed by the subscriber), %d records sent, %d dropped, %d pidfds passed (%d unsupported, %d gone, %d pid reused, %d errors); %d connections abandoned before subscribing, %d probes, %d accept errors",
		st.Accepted, st.Refused, st.Overflowed, st.WriteErrors, st.CutOff, st.ClosedByPeer, st.RecordsSent, st.RecordsDropped,
		st.PidfdsPassed, st.PidfdUnsupported, st.PidfdGone, st.PidfdMismatch, st.PidfdErrors,
		st.Abandoned, st.Probes, st.AcceptErrors)
	return nil
}
