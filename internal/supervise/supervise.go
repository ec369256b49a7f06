// Package supervise keeps a forking daemon supervisable in the foreground
// (`adoptwatch run -- CMD`): it starts CMD, follows its process tree through
// forks and setsid with the kernel's adoption records, identifies the daemon
// CMD leaves behind, forwards signals to it, stays as long as it lives and
// exits with its status.
//
// By default run is a child subreaper, so every orphan of the tree is adopted
// by run, which reaps it. With NoSubreaper the daemon is adopted by init (or
// another subreaper above run), run follows it through a pidfd and learns its
// exit status from the kernel's exit record.
package supervise

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/losses"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/service"
	"github.com/adoptwatch/adoptwatch/loader"
)

// Exit codes of run's own failures (otherwise it exits with the daemon's status).
const (
	ExitFailure       = 1   // prerequisites, attach, timeout, no daemon left by a successful CMD
	ExitNotExecutable = 126 // CMD exists but cannot be executed
	ExitNotFound      = 127 // CMD not found
)

// Defaults, documented in `adoptwatch run --help`.
const (
	DefaultSettle      = 500 * time.Millisecond
	DefaultTimeout     = 90 * time.Second // as systemd's default start timeout
	DefaultStopTimeout = 10 * time.Second
)

// statusWait bounds how long run waits, after a followed daemon's pidfd says it
// ended, for the exit record that carries its status (records are read on a
// 50 ms timer).
const statusWait = 2 * time.Second

// Forwarded are the signals run passes on to the daemon.
var Forwarded = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGQUIT}

// isStop: a signal that asks the daemon to end, so run looks for no successor.
func isStop(sig unix.Signal) bool {
	return sig == unix.SIGTERM || sig == unix.SIGINT || sig == unix.SIGQUIT
}

// Config is one `adoptwatch run`.
type Config struct {
	Command     []string      // CMD and its arguments
	Settle      time.Duration // quiet time after the launcher exits before choosing
	Timeout     time.Duration // for the daemon to be identified
	StopTimeout time.Duration // grace between SIGTERM and SIGKILL for leftovers
	PIDFile     string        // the daemon's pid file: it must name the daemon
	NoSubreaper bool          // leave adoption to init; follow the daemon by pidfd
	// KillTreeOnExit kills whatever CMD started that still runs when run
	// exits, however it exits, even by SIGKILL (see treeGuard).
	KillTreeOnExit bool
	Hook           events.Hook
	Verbose        bool
	// CMD's standard streams (run's own, normally).
	Stdin, Stdout, Stderr *os.File
	// Log receives run's messages, one line each.
	Log io.Writer
	// Notify tells the service manager (systemd's NOTIFY_SOCKET, s6's notify
	// fd) about the daemon: its pid and readiness once identified, stopping.
	// nil: nobody is told.
	Notify *service.Notifier
}

type state int

const (
	launching  state = iota // waiting for the daemon to be identified
	following               // the daemon runs
	succeeding              // the daemon exited cleanly: looking for a successor
)

type reaped struct {
	pid    int
	status unix.WaitStatus
}

type recordOrErr struct {
	rec events.Record
	err error
}

type supervisor struct {
	cfg   Config
	self  uint32
	guard *treeGuard // KillTreeOnExit

	records chan recordOrErr
	reaps   chan reaped
	gone    chan procfs.ID // pidfd readable (NoSubreaper)
	sigs    chan os.Signal
	sigchld chan os.Signal
	done    chan struct{}

	// Under a service manager (subreaper mode), the followed daemon's zombie
	// is not reaped at once (see reap): keep is its pid, zombie says it
	// ended (not reaped), resume lets the reaper reap it after all.
	keep   atomic.Int32
	zombie chan reaped
	resume chan struct{}
	kept   int // the daemon's zombie, left unreaped (0: none)

	tracker   *Tracker
	state     state
	cmd       procfs.ID
	cmdComm   string
	cmdStatus *unix.WaitStatus
	pidfds    map[procfs.ID]int // live members, for signals (and liveness with NoSubreaper)
	statuses  map[procfs.ID]uint32

	daemon          *Candidate
	daemonComm      string
	daemonEnded     bool
	daemonStatus    *unix.WaitStatus
	statusDeadline  time.Time
	lastCode        int         // exit code of the last daemon that ended
	exitSignal      unix.Signal // run ends by this signal, as the daemon did (see DieBy)
	deadline        time.Time
	obs             *loader.Observer // for its loss counters (kernelLosses)
	unrecordedSince time.Time        // when children without adoption records were first seen (awaitingRecords)
	stopSignal      unix.Signal      // a stop signal was received (0: none)
	pending         []unix.Signal    // non-stop signals received before the daemon was known

	// Without a subreaper, while the daemon is looked for, the processes
	// the tree forked that have not exited (fork and exit records), at most
	// maxForked: an adopted one whose adoption record has not come yet is
	// among them (unrecorded).
	forked        map[procfs.ID]bool
	forkedDropped uint64 // forks not kept: the map was full
}

// maxForked bounds supervisor.forked: a launch tree that keeps more
// processes alive at once is not waited for beyond that (and says so).
const maxForked = 4096

// commandEnv is run's environment without NOTIFY_SOCKET: run speaks for the
// service to its manager, and a daemon that found the socket would announce
// itself before run has handed the service over to it.
func commandEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			env = append(env, kv)
		}
	}
	return env
}

// Exit is how run ends: exit with Code or, when Signal is set, be killed by
// Signal as the daemon was (DieBy; Code is then 128+Signal, for when the
// process survives it).
type Exit struct {
	Code   int
	Signal unix.Signal
}

// Run supervises cfg.Command and returns how run should end.
func Run(cfg Config) Exit {
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	s := &supervisor{
		cfg:      cfg,
		self:     uint32(os.Getpid()),
		records:  make(chan recordOrErr, 1024),
		reaps:    make(chan reaped, 256),
		gone:     make(chan procfs.ID, 64),
		zombie:   make(chan reaped, 1),
		resume:   make(chan struct{}, 1),
		sigs:     make(chan os.Signal, 16),
		sigchld:  make(chan os.Signal, 1),
		done:     make(chan struct{}),
		pidfds:   map[procfs.ID]int{},
		statuses: map[procfs.ID]uint32{},
		forked:   map[procfs.ID]bool{},
	}
	defer close(s.done)
	code := s.run()
	if s.exitSignal != 0 && code == 128+int(s.exitSignal) {
		return Exit{Code: code, Signal: s.exitSignal}
	}
	return Exit{Code: code}
}

func (s *supervisor) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.Log, "adoptwatch run: "+format+"\n", args...)
}

func (s *supervisor) debugf(format string, args ...any) {
	if s.cfg.Verbose {
		s.logf(format, args...)
	}
}

func (s *supervisor) run() int {
	if err := loader.CheckPrerequisites(); err != nil {
		s.logf("%v", err)
		return ExitFailure
	}
	path, code, err := resolveCommand(s.cfg.Command[0])
	if err != nil {
		s.logf("%s", output.Escape(err.Error())) // names CMD, which may hold anything
		return code
	}
	if !s.cfg.NoSubreaper {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			s.logf("cannot become a child subreaper: %v", err)
			return ExitFailure
		}
	}
	// Signals are caught before anything starts, so none is lost or kills run.
	signal.Notify(s.sigs, Forwarded...)
	signal.Notify(s.sigchld, unix.SIGCHLD)
	defer signal.Stop(s.sigs)
	defer signal.Stop(s.sigchld)

	// Scoped to run's own tree: CMD and all it forks (and task records only for them).
	obs, err := loader.Open(loader.Options{Hook: s.cfg.Hook, TaskRecords: true, WatchPIDs: []int{os.Getpid()}})
	if err != nil {
		s.logf("cannot attach the BPF programs: %v", err)
		return ExitFailure
	}
	defer obs.Close()
	s.obs = obs
	go s.readRecords(obs)

	attr := &syscall.ProcAttr{
		Env:   commandEnv(),
		Files: []uintptr{s.cfg.Stdin.Fd(), s.cfg.Stdout.Fd(), s.cfg.Stderr.Fd()},
	}
	if s.cfg.KillTreeOnExit {
		if s.guard, err = newTreeGuard(); err != nil {
			s.logf("%v", err)
			return ExitFailure
		}
		attr.Sys = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: s.guard.fd}
		s.debugf("the tree lives in cgroup %s; guardian pid=%d", s.guard.dir, s.guard.guardian)
	}
	pid, err := syscall.ForkExec(path, s.cfg.Command, attr)
	s.guard.release()
	if err != nil {
		s.logf("cannot start %s: %v", output.Escape(s.cfg.Command[0]), err)
		if errors.Is(err, unix.ENOENT) {
			return ExitNotFound
		}
		return ExitNotExecutable
	}
	// Read CMD's identity before anything can reap it.
	k, err := procfs.ReadStat(pid)
	if err != nil {
		s.logf("cannot read /proc/%d/stat of %s: %v", pid, output.Escape(s.cfg.Command[0]), err)
		unix.Kill(pid, unix.SIGKILL)
		return ExitFailure
	}
	s.cmd, s.cmdComm = k.ID, k.Comm
	if fd, ok := openIfSame(s.cmd); ok {
		s.pidfds[s.cmd] = fd
	}
	go s.reap()

	now := time.Now()
	s.deadline = now.Add(s.cfg.Timeout)
	s.tracker = NewTracker(s.cmd, now, s.cfg.Settle, s.self, !s.cfg.NoSubreaper)
	s.debugf("started %s pid=%d (hook %s via %s)", output.Escape(s.cfg.Command[0]), pid, obs.Mechanism.Hook, obs.Mechanism.Name)
	// Named by the command as given: /proc may still show run's own name for
	// a moment (the kernel sets comm late in execve).
	s.cfg.Notify.Status(fmt.Sprintf("waiting for the daemon: started %s pid %d", output.Escape(filepath.Base(s.cfg.Command[0])), pid))
	return s.finish(s.loop())
}

// loop handles events until run should exit, and returns its exit code.
func (s *supervisor) loop() int {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-s.records:
			s.onRecord(r)
		case r := <-s.reaps:
			s.onReap(r)
		case r := <-s.zombie:
			s.kept = r.pid
			s.onReap(r)
		case id := <-s.gone:
			s.onGone(id)
		case sig := <-s.sigs:
			s.onSignal(sig.(unix.Signal))
		case <-tick.C:
		}
		if code, done := s.step(time.Now()); done {
			return code
		}
	}
}

// step advances the state machine; done says run should exit with code.
func (s *supervisor) step(now time.Time) (code int, done bool) {
	switch s.state {
	case launching:
		d := s.tracker.Decide(now, s.pidfilePID(), s.cfg.PIDFile != "")
		switch {
		case s.stopSignal != 0 && s.cmdStatus != nil && len(s.tracker.Live()) == 0:
			return s.noDaemon(), true // asked to stop, and all has stopped: no need to settle
		case d.Wait && now.After(s.deadline):
			s.logf("no daemon identified within %v: %s", s.cfg.Timeout, d.Reason)
			return ExitFailure, true
		case d.Wait:
			return 0, false
		case d.Daemon == nil && s.awaitingRecords(now):
			return 0, false
		case d.Daemon == nil:
			return s.noDaemon(), true
		}
		s.follow(d, false)
	case following:
		if !s.daemonEnded {
			return 0, false
		}
		if s.daemonStatus == nil && now.Before(s.statusDeadline) {
			return 0, false // the exit record may still be on its way
		}
		return s.ended(now)
	case succeeding:
		d := s.tracker.Decide(now, s.pidfilePID(), false)
		switch {
		case s.stopSignal != 0 || d.Daemon == nil && !d.Wait:
			return s.lastCode, true
		case d.Wait && now.After(s.deadline):
			s.logf("no successor identified within %v: %s", s.cfg.Timeout, d.Reason)
			return s.lastCode, true
		case d.Wait:
			return 0, false
		}
		s.follow(d, true)
	}
	return 0, false
}

// recordGrace is how long run waits, after the tree settled with no adopted
// process alive, for the adoption records of children it adopted: with the
// exit-walk hook a child is reported only at its old parent's final switch
// (or its own exit), and on an emulated or loaded CPU that record has been
// seen to come after the settle time.
const recordGrace = 2 * time.Second

// awaitingRecords says whether to wait for the adoption records of run's
// children that no record named yet (only after a clean launch, and for
// recordGrace at most). Without it, a record still on its way was taken
// for one the hook missed.
func (s *supervisor) awaitingRecords(now time.Time) bool {
	if s.stopSignal != 0 || s.cmdStatus == nil || *s.cmdStatus != 0 || now.After(s.deadline) {
		return false
	}
	if len(s.unrecorded()) == 0 {
		return false
	}
	if s.unrecordedSince.IsZero() {
		s.unrecordedSince = now
	}
	return now.Sub(s.unrecordedSince) < recordGrace
}

// noDaemon ends a launch that left nothing running.
func (s *supervisor) noDaemon() int {
	cmd := output.Escape(s.cfg.Command[0])
	switch {
	case s.cmdStatus != nil && *s.cmdStatus != 0:
		s.logf("%s %s and left no daemon", cmd, output.StatusText(uint32(*s.cmdStatus)))
		return exitCode(*s.cmdStatus)
	case s.stopSignal != 0:
		s.logf("stopped by %s before a daemon was identified", unix.SignalName(s.stopSignal))
		return 128 + int(s.stopSignal)
	}
	if missed := s.unrecorded(); len(missed) > 0 {
		// They were all adopted (unrecorded): the hook missed their
		// adoption records. Say so rather than blame CMD.
		who := "run adopted"
		if s.cfg.NoSubreaper {
			who = "left alive"
		}
		s.logf("%s exited with code 0, and %s %s without an adoption record (the adoption hook missed it%s): no daemon identified",
			cmd, who, strings.Join(missed, ", "), lossesSuffix(s.kernelLosses()))
		return ExitFailure
	}
	if s.forkedDropped > 0 {
		s.logf("%d processes of the launch tree were not kept to wait for their adoption records (more than %d alive at once)",
			s.forkedDropped, maxForked)
	}
	if lost, err := s.kernelLosses(); err == nil && len(lost) > 0 {
		// Perhaps a daemon whose adoption the kernel could not report.
		s.logf("%s exited with code 0 and no adopted process is alive%s", cmd, lossesSuffix(lost, nil))
		return ExitFailure
	}
	s.logf("%s exited with code 0 but left no daemon running (a program that stays in the foreground needs no adoptwatch run)", cmd)
	return ExitFailure
}

// kernelLosses lists what the kernel's counters say it lost since run
// started (none: an empty list).
func (s *supervisor) kernelLosses() ([]string, error) {
	c, err := s.obs.Counters()
	if err != nil {
		return nil, err
	}
	var texts []string
	for _, m := range losses.Messages(loader.Counters{}, c) {
		texts = append(texts, m.Text)
	}
	return texts, nil
}

// lossesSuffix words kernelLosses' answer for the end of a message
// ("" when the counters could not be read).
func lossesSuffix(lost []string, err error) string {
	switch {
	case err != nil:
		return ""
	case len(lost) == 0:
		return "; the kernel counted no loss"
	}
	return "; the kernel counted: " + strings.Join(lost, "; ")
}

// noteForked keeps, without a subreaper and until the daemon is identified,
// the processes the tree forks (but CMD and the guardian) until their exit.
// Once a daemon is followed, nothing reads them (follow empties the map), and
// a daemon's workers need not cost a map update each.
func (s *supervisor) noteForked(t *events.Task) {
	if !s.cfg.NoSubreaper || s.state != launching {
		return
	}
	switch {
	case t.Kind == events.KindFork && t.Child != nil && !t.Child.ID.Same(s.cmd) && !s.isGuardian(int(t.Child.PID)):
		if len(s.forked) >= maxForked {
			s.forkedDropped++
			return
		}
		s.forked[t.Child.ID] = true
	case t.Kind == events.KindExit && t.ProcessExit:
		delete(s.forked, t.Process.ID)
	}
}

// unrecorded lists, as "pid=N comm=C", the live processes of the tree other
// than CMD that no adoption record named: orphans of the tree whose adoption
// the hook did not report, or not yet. With the launcher gone, every live
// process it left descends from an exited process, so it was adopted, or an
// ancestor of it was. In subreaper mode they are run's children; without
// one, the processes the tree forked that are still there.
func (s *supervisor) unrecorded() []string {
	if s.cfg.NoSubreaper {
		return s.unrecordedForked()
	}
	var out []string
	for _, k := range procfs.Children(int(s.self)) {
		if k.ID.Same(s.cmd) || s.tracker.member(k.ID) != nil || s.isGuardian(int(k.PID)) {
			continue
		}
		out = append(out, fmt.Sprintf("pid=%d comm=%s", k.PID, output.Escape(k.Comm)))
	}
	return out
}

// unrecordedForked is unrecorded without a subreaper.
func (s *supervisor) unrecordedForked() []string {
	var out []string
	for id := range s.forked {
		if s.tracker.member(id) != nil {
			continue
		}
		k, err := procfs.ReadStat(int(id.PID))
		if err != nil || !k.ID.Same(id) {
			delete(s.forked, id) // gone: its exit record was lost or is on its way
			continue
		}
		out = append(out, fmt.Sprintf("pid=%d comm=%s", k.PID, output.Escape(k.Comm)))
	}
	sort.Strings(out)
	return out
}

// maxOthersNamed bounds the processes othersText names: a launcher that
// leaves thousands running gets one readable line, with the rest counted.
const maxOthersNamed = 20

// othersText names the other adopted processes still running, as
// "PID (comm)", at most maxOthersNamed of them.
func othersText(others []*Candidate) string {
	var names []string
	for _, o := range others[:min(len(others), maxOthersNamed)] {
		names = append(names, fmt.Sprintf("%d (%s)", o.PID, output.Escape(o.Comm)))
	}
	text := strings.Join(names, ", ")
	if rest := len(others) - len(names); rest > 0 {
		text += fmt.Sprintf(" and %d more", rest)
	}
	return text
}

// follow makes d.Daemon the daemon and says so.
func (s *supervisor) follow(d Decision, successor bool) {
	c := d.Daemon
	// The adoption record has the comm at adoption time; a daemon often execs
	// its real program just after (before it was chosen, so that exec was not
	// followed): name what it runs now.
	if k, err := procfs.ReadStat(int(c.PID)); err == nil && c.ID.Same(k.ID) {
		c.Comm = k.Comm
	}
	lineage := output.LineageText(c.Adoption.Lineage, c.Adoption.LineageComplete)
	pattern := events.DaemonPattern(c.Adoption.Lineage)
	if successor {
		s.logf("daemon pid=%d comm=%s follows pid=%d comm=%s (%s; %s, %s): %s",
			c.PID, output.Escape(c.Comm), s.daemon.PID, output.Escape(s.daemonComm), "the previous daemon exited cleanly", pattern, d.Reason, lineage)
	} else {
		s.logf("daemon pid=%d comm=%s identified (%s, %s): %s", c.PID, output.Escape(c.Comm), pattern, d.Reason, lineage)
	}
	if len(d.Others) > 0 {
		s.logf("also adopted and still running, not followed: %s", othersText(d.Others))
	}
	// Keep its zombie for the manager before the manager hears of it: once
	// told MAINPID=, the manager (or a test) may stop the daemon at once, and
	// the reaper would reap an end that came before this store.
	if !s.cfg.NoSubreaper && os.Getenv("NOTIFY_SOCKET") != "" {
		s.keep.Store(int32(c.PID))
	}
	// The service manager follows the daemon from now on: MAINPID= with READY=1
	// in one message the first time (see service.Notifier.ReadyMainPID).
	if successor {
		s.cfg.Notify.MainPID(int(c.PID), fmt.Sprintf("following %d %s (it replaced %d)", c.PID, output.Escape(c.Comm), s.daemon.PID))
	} else {
		s.cfg.Notify.ReadyMainPID(int(c.PID), fmt.Sprintf("following %d %s", c.PID, output.Escape(c.Comm)))
	}
	s.daemon, s.daemonComm = c, c.Comm
	s.daemonEnded, s.daemonStatus = false, nil
	clear(s.forked) // only the launch reads it (noteForked)
	s.state = following
	s.tracker.Follow(c)
	if s.stopSignal != 0 {
		s.signal(c.ID, s.stopSignal)
	}
	for _, sig := range s.pending {
		s.signal(c.ID, sig)
	}
	s.pending = nil
}

// ended reports the daemon's end and decides between exiting and a successor.
func (s *supervisor) ended(now time.Time) (int, bool) {
	d := s.daemon
	if s.daemonStatus == nil {
		s.logf("daemon pid=%d comm=%s ended: status unknown (its exit record was lost)", d.PID, output.Escape(s.daemonComm))
		s.handBack(fmt.Sprintf("daemon %d %s ended, status unknown: run exits %d", d.PID, output.Escape(s.daemonComm), ExitFailure))
		return ExitFailure, true
	}
	ws := *s.daemonStatus
	s.lastCode = exitCode(ws)
	s.logf("daemon pid=%d comm=%s ended: status=%d, %s", d.PID, output.Escape(s.daemonComm), s.lastCode, output.StatusText(uint32(ws)))
	what := fmt.Sprintf("daemon %d %s %s", d.PID, output.Escape(s.daemonComm), output.StatusText(uint32(ws)))
	if ws != 0 || s.stopSignal != 0 {
		if ws.Signaled() && Reraisable(ws.Signal()) {
			s.exitSignal = ws.Signal()
			s.handBack(what + ": run ends by the same signal")
		} else {
			s.handBack(fmt.Sprintf("%s: run exits %d", what, s.lastCode))
		}
		return s.lastCode, true
	}
	s.handBack(what + ": looking for a successor")
	s.release()
	// A clean exit may be a re-daemonisation: look for a successor among its
	// adopted descendants (a Decide with none alive ends at once).
	s.state = succeeding
	s.deadline = now.Add(s.cfg.Timeout)
	return 0, false
}

// release lets the reaper reap the daemon's zombie after all: run carries on.
func (s *supervisor) release() {
	if s.kept != 0 {
		s.kept = 0
		s.keep.Store(0)
		s.resume <- struct{}{}
	}
}

// handBack makes run the service's main process again (MAINPID=<run>), with
// status, once the daemon has ended, before run exits with the daemon's
// status: systemd learns exit statuses only from its own children, and after
// MAINPID=<daemon> its main process is run's child (or another reaper's), so
// without this it would record nothing for the daemon. systemd does not
// watch a main process that is not its child, so nothing races the message.
// Not when the manager itself reaps the daemon (NoSubreaper, adopted by
// PID 1 or by run's parent): it then has the daemon's real status already.
func (s *supervisor) handBack(status string) {
	if s.cfg.NoSubreaper && s.daemon != nil {
		if p := s.daemon.Adoption.NewParent.PID; p == 1 || int(p) == os.Getppid() {
			return
		}
	}
	s.cfg.Notify.MainPID(int(s.self), status)
}

func (s *supervisor) pidfilePID() uint32 {
	if s.cfg.PIDFile == "" {
		return 0
	}
	return readPidfile(s.cfg.PIDFile)
}

func (s *supervisor) onRecord(r recordOrErr) {
	if r.err != nil {
		s.debugf("undecodable record: %v", r.err)
		return
	}
	now := time.Now()
	if a := r.rec.Adoption; a != nil {
		id := a.Child.ID
		fd, alive := -1, false
		if !a.Zombie {
			fd, alive = openIfSame(id)
		}
		c := s.tracker.Adopted(a, alive, now)
		if c == nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			return
		}
		s.debugf("adopted pid=%d comm=%s by %d (%s), alive=%v: %s", c.PID, output.Escape(c.Comm), a.NewParent.PID, a.Reaper, c.Alive,
			output.LineageText(a.Lineage, a.LineageComplete))
		if !c.Alive {
			if fd >= 0 {
				unix.Close(fd)
			}
			return
		}
		s.pidfds[c.ID] = fd
		if s.cfg.NoSubreaper {
			go s.watchPidfd(c.ID, fd)
		}
		return
	}
	t := r.rec.Task
	if t == nil {
		return
	}
	id := t.Process.ID
	s.noteForked(t)
	switch {
	case t.Kind == events.KindExit && t.ProcessExit && s.tracker.member(id) != nil:
		s.statuses[id] = t.ExitStatus
		if s.daemon != nil && s.daemon.ID.Same(id) && s.daemonEnded && s.daemonStatus == nil {
			ws := unix.WaitStatus(t.ExitStatus)
			s.daemonStatus = &ws
		}
	case t.Kind == events.KindExec && s.daemon != nil && !s.daemonEnded && s.daemon.ID.Same(id):
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", id.PID))
		s.logf("daemon pid=%d comm=%s re-executed itself: now comm=%s exe=%s; still following it", id.PID,
			output.Escape(s.daemonComm), output.Escape(t.Process.Comm), output.Escape(exe))
		s.daemonComm = t.Process.Comm
	case t.Kind == events.KindExec && id.Same(s.cmd):
		s.cmdComm = t.Process.Comm
	}
}

// onReap handles a child run reaped: CMD, or (subreaper mode) an adopted one.
func (s *supervisor) onReap(r reaped) {
	now := time.Now()
	if uint32(r.pid) == s.cmd.PID && s.cmdStatus == nil {
		ws := r.status
		s.cmdStatus = &ws
		s.closePidfd(s.cmd)
		s.debugf("%s pid=%d %s", output.Escape(s.cfg.Command[0]), r.pid, output.StatusText(uint32(ws)))
		if s.state == launching {
			s.tracker.RootExited(now)
		}
		return
	}
	if s.cfg.NoSubreaper {
		return
	}
	c := s.tracker.Exited(uint32(r.pid), now)
	s.debugf("reaped pid=%d: %s", r.pid, output.StatusText(uint32(r.status)))
	if c == nil {
		return
	}
	s.closePidfd(c.ID)
	if s.daemon == c {
		ws := r.status
		s.daemonEnded, s.daemonStatus = true, &ws
		s.tracker.RootExited(now)
	}
}

// onGone: a member's pidfd became readable (NoSubreaper): it has exited.
func (s *supervisor) onGone(id procfs.ID) {
	now := time.Now()
	c := s.tracker.Exited(id.PID, now)
	s.closePidfd(id)
	if c == nil || s.daemon != c {
		return
	}
	s.daemonEnded = true
	s.statusDeadline = now.Add(statusWait)
	if st, ok := s.statuses[c.ID]; ok {
		ws := unix.WaitStatus(st)
		s.daemonStatus = &ws
	}
	s.tracker.RootExited(now)
}

// onSignal forwards a signal run received.
func (s *supervisor) onSignal(sig unix.Signal) {
	stop := isStop(sig)
	if stop {
		if s.stopSignal == 0 {
			s.cfg.Notify.Stopping()
		}
		s.stopSignal = sig
	}
	switch {
	case s.state == following && !s.daemonEnded:
		s.signal(s.daemon.ID, sig)
	case stop:
		// Nothing to follow yet (or a successor is looked for): whatever runs
		// of the launch is asked to stop.
		if s.cmdStatus == nil {
			s.signal(s.cmd, sig)
		}
		for _, c := range s.tracker.Live() {
			s.signal(c.ID, sig)
		}
	default:
		s.pending = append(s.pending, sig) // for the daemon, once known
	}
}

// signal sends sig through the process's pidfd: never to a reused pid, never to PID 1.
func (s *supervisor) signal(id procfs.ID, sig unix.Signal) {
	fd, ok := s.pidfds[id]
	if !ok || id.PID <= 1 {
		return
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		s.debugf("signal %s to pid %d: %v", unix.SignalName(sig), id.PID, err)
		return
	}
	s.debugf("sent %s to pid %d", unix.SignalName(sig), id.PID)
}

func (s *supervisor) closePidfd(id procfs.ID) {
	if fd, ok := s.pidfds[id]; ok {
		unix.Close(fd)
		delete(s.pidfds, id)
	}
}

// finish stops what is left of the tree run is responsible for, then returns
// code. In subreaper mode that is every child of run (workers a killed daemon
// left, helpers still running); otherwise only CMD, if it still runs: adopted
// processes then belong to their reaper.
func (s *supervisor) finish(code int) int {
	s.stopLeftovers(func() []int {
		var pids []int
		if s.cfg.NoSubreaper {
			if s.cmdStatus == nil {
				pids = append(pids, int(s.cmd.PID))
			}
			return pids
		}
		for _, k := range procfs.Children(os.Getpid()) {
			if !s.isGuardian(int(k.PID)) && int(k.PID) != s.kept {
				pids = append(pids, int(k.PID))
			}
		}
		return pids
	})
	for id := range s.pidfds {
		s.closePidfd(id)
	}
	return code
}

// stopLeftovers sends SIGTERM to the processes children() lists, SIGKILL after
// StopTimeout, and reaps them. In subreaper mode these are all run's children.
func (s *supervisor) stopLeftovers(children func() []int) {
	termed := map[int]bool{}
	var killAt time.Time
	killed := false
	for give := time.Now().Add(s.cfg.StopTimeout + 5*time.Second); time.Now().Before(give); {
		left := children()
		if len(left) == 0 {
			return
		}
		for _, pid := range left {
			if termed[pid] || pid <= 1 {
				continue
			}
			if k, err := procfs.ReadStat(pid); err == nil && k.PPID == s.self {
				s.logf("stopping leftover pid=%d comm=%s", pid, output.Escape(k.Comm))
				s.kill(pid, unix.SIGTERM)
			}
			termed[pid] = true
			if killAt.IsZero() {
				killAt = time.Now().Add(s.cfg.StopTimeout)
			}
		}
		if !killed && !killAt.IsZero() && time.Now().After(killAt) {
			for _, pid := range left {
				s.logf("leftover pid=%d ignored SIGTERM for %v: SIGKILL", pid, s.cfg.StopTimeout)
				s.kill(pid, unix.SIGKILL)
			}
			killed = true
		}
		select {
		case r := <-s.reaps:
			s.debugf("reaped pid=%d: %s", r.pid, output.StatusText(uint32(r.status)))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// isGuardian: the KillTreeOnExit guardian is run's child but not of the tree.
func (s *supervisor) isGuardian(pid int) bool { return s.guard != nil && s.guard.guardian == pid }

// kill signals one of run's children: a pidfd opened while it is still our
// child (it cannot have been reaped and reused: only run reaps its children).
func (s *supervisor) kill(pid int, sig unix.Signal) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if k, err := procfs.ReadStat(pid); err != nil || k.PPID != s.self || pid <= 1 {
		return
	}
	unix.PidfdSendSignal(fd, sig, nil, 0)
}

// reap waits for every child that ends: CMD, and in subreaper mode every
// orphan adopted by run, so that no zombie remains. Except, under a service
// manager, the followed daemon's (keep): that zombie is reported on zombie
// and left until the loop says (resume): if run exits first, the zombie goes
// to the manager (PID 1), which reaps it and records the daemon's own
// status. systemd 252 ignores MAINPID= once it is stopping the unit, so
// after `systemctl stop` that is how it learns the daemon's status.
func (s *supervisor) reap() {
	for {
		for {
			pid, ws, ok := s.waitOne()
			if !ok {
				break
			}
			ch := s.reaps
			if pid == int(s.keep.Load()) {
				ch = s.zombie
			}
			select {
			case ch <- reaped{pid, ws}:
			case <-s.done:
				return
			}
			if ch == s.zombie {
				select {
				case <-s.resume:
					unix.Wait4(pid, nil, 0, nil)
				case <-s.done:
					return
				}
			}
		}
		select {
		case <-s.sigchld:
		case <-time.After(time.Second): // a coalesced SIGCHLD is never waited on for long
		case <-s.done:
			return
		}
	}
}

// waitOne reaps one ended child, or, if it is the kept daemon, only reads
// its status (WNOWAIT). ok is false when no child has ended.
func (s *supervisor) waitOne() (pid int, ws unix.WaitStatus, ok bool) {
	for {
		if s.keep.Load() == 0 {
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return pid, ws, err == nil && pid > 0
		}
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		pid, ws = siginfoChild(&info)
		if err != nil || pid <= 0 {
			return 0, 0, false
		}
		if pid == int(s.keep.Load()) {
			return pid, ws, true
		}
		if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, 0, false
		}
		return pid, ws, true
	}
}

// siginfoChild reads si_pid, si_code and si_status of a SIGCHLD siginfo
// (x/sys/unix leaves the union unexported) as a wait status.
func siginfoChild(info *unix.Siginfo) (int, unix.WaitStatus) {
	raw := (*[128]byte)(unsafe.Pointer(info))
	pid := int(*(*int32)(unsafe.Pointer(&raw[16])))
	status := uint32(*(*int32)(unsafe.Pointer(&raw[24])))
	switch info.Code {
	case 1: // CLD_EXITED
		return pid, unix.WaitStatus(status&0xff) << 8
	case 2: // CLD_KILLED
		return pid, unix.WaitStatus(status & 0x7f)
	case 3: // CLD_DUMPED
		return pid, unix.WaitStatus(status&0x7f | 0x80)
	}
	return pid, 0
}

func (s *supervisor) readRecords(obs *loader.Observer) {
	for {
		rec, err := obs.Read()
		if errors.Is(err, loader.ErrClosed) {
			return
		}
		select {
		case s.records <- recordOrErr{rec, err}:
		case <-s.done:
			return
		}
	}
}

// watchPidfd reports when a member exits (NoSubreaper mode). The loop owns the
// pidfd and closes it only once this has returned (or run ends).
func (s *supervisor) watchPidfd(id procfs.ID, fd int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 250)
		if err == nil && n > 0 {
			select {
			case s.gone <- id:
			case <-s.done:
			}
			return
		}
		select {
		case <-s.done:
			return
		default:
		}
	}
}
