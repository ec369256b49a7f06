// Package service tells the supervisor that started adoptwatch how it is
// doing: systemd's notify protocol (READY=1, MAINPID=, STATUS=, STOPPING=1,
// WATCHDOG=1, sent with go-systemd's daemon package to $NOTIFY_SOCKET) and the
// s6 readiness convention (a newline written to an inherited fd, then closed).
//
// Neither is required: without NOTIFY_SOCKET and without a notify fd every
// call does nothing. A notify socket that cannot be reached is reported once
// on stderr and the program carries on: telling the supervisor is not worth
// stopping the watch for. Nor is a service manager that does not read its
// socket: a datagram send to a full socket blocks (go-systemd's SdNotify has
// no deadline), so messages are queued for one sender goroutine and the
// callers (the record loop, the signal handler) never wait for it.
package service

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Queue is how many messages wait for the service manager before new ones
// are dropped (and counted as failed).
const Queue = 16

// Notifier sends state changes to the service manager. Its methods are safe
// for concurrent use (the watchdog loop runs beside the main loop) and do not
// wait for the manager: messages are queued and go out one at a time, in the
// order of the calls. Flush before exiting, so that the last ones (STOPPING=1)
// are not lost.
type Notifier struct {
	stderr io.Writer

	mu        sync.Mutex
	readyFD   *os.File // --notify-fd, until readiness is written
	failing   bool     // the last notify-socket send failed (reported once per outage)
	dropping  bool     // the queue was full (reported once per episode)
	failed    uint64   // messages that failed or were dropped, in total
	readyOnce bool
	stopping  bool // STOPPING=1 was sent: no more watchdog pings

	queue           chan message // started with the first message
	queued, handled uint64       // messages queued, and sent or failed by the sender
}

// message is one datagram, or (flushed set) a Flush waiting for the ones
// before it.
type message struct {
	state   string
	flushed chan struct{}
}

// A nil *Notifier is valid and does nothing, so callers need not check
// whether a supervisor is listening.

// New returns a Notifier writing readiness to readyFD (nil: no fd) and
// reporting delivery problems to stderr.
func New(readyFD *os.File, stderr io.Writer) *Notifier {
	return &Notifier{readyFD: readyFD, stderr: stderr}
}

// OpenNotifyFD checks that fd is an open, writable descriptor other than
// stdin, stdout and stderr, marks it close-on-exec (the processes adoptwatch
// starts must not hold the supervisor's pipe open), and returns it.
func OpenNotifyFD(fd int) (*os.File, error) {
	if fd <= 2 {
		return nil, fmt.Errorf("--notify-fd %d: must be a descriptor above 2 (0, 1 and 2 are stdin, stdout and stderr)", fd)
	}
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		if errors.Is(err, unix.EBADF) {
			return nil, fmt.Errorf("--notify-fd %d: not an open descriptor", fd)
		}
		return nil, fmt.Errorf("--notify-fd %d: %v", fd, err)
	}
	if mode := flags & unix.O_ACCMODE; mode != unix.O_WRONLY && mode != unix.O_RDWR {
		return nil, fmt.Errorf("--notify-fd %d: not open for writing", fd)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("--notify-fd %d: %v", fd, err)
	}
	return os.NewFile(uintptr(fd), "notify-fd "+strconv.Itoa(fd)), nil
}

// Ready says that startup is complete: READY=1, and the newline on the
// notify fd (which is then closed, as s6 expects). Only the first call counts.
func (n *Notifier) Ready() { n.ready("") }

// ReadyMainPID hands the service over to pid, says it is ready and sets the
// status, in one datagram: with NotifyAccess=main systemd checks the sender
// once per message, and once MAINPID= has moved the main process to pid,
// later messages from this process are no longer the main process's.
func (n *Notifier) ReadyMainPID(pid int, status string) {
	n.ready("MAINPID=" + strconv.Itoa(pid) + "\n" + statusLine(status) + "\n")
}

func (n *Notifier) ready(prefix string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.readyOnce {
		return
	}
	n.readyOnce = true
	n.sendLocked(prefix + daemon.SdNotifyReady)
	if f := n.readyFD; f != nil {
		n.readyFD = nil
		_, err := f.Write([]byte{'\n'})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fmt.Fprintf(n.stderr, "adoptwatch: %s: cannot signal readiness: %v\n", f.Name(), err)
		}
	}
}

// MainPID tells systemd that pid is now the service's main process (a
// daemon that re-daemonised, for instance), with the status that says so.
func (n *Notifier) MainPID(pid int, status string) {
	n.send("MAINPID=" + strconv.Itoa(pid) + "\n" + statusLine(status))
}

// Status sets the one-line status `systemctl status` shows. Newlines would
// start a new assignment, so they are replaced.
func (n *Notifier) Status(text string) { n.send(statusLine(text)) }

func statusLine(text string) string {
	return "STATUS=" + strings.NewReplacer("\n", " ", "\r", " ").Replace(text)
}

// Stopping says the service is shutting down; the watchdog pings end.
func (n *Notifier) Stopping() {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopping = true
	n.sendLocked(daemon.SdNotifyStopping)
}

// ping is one WATCHDOG=1, unless the service is stopping.
func (n *Notifier) ping() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.stopping {
		n.sendLocked(daemon.SdNotifyWatchdog)
	}
}

// Failed is the number of notify-socket messages that could not be sent.
func (n *Notifier) Failed() uint64 {
	if n == nil {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.failed
}

// send delivers one message. The first failure of an outage is reported on
// one line; the program keeps going either way.
func (n *Notifier) send(state string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sendLocked(state)
}

// sendLocked queues state for the sender, or drops it when the queue is
// full (the manager is not reading): never waits.
func (n *Notifier) sendLocked(state string) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return // nobody to tell, not an error
	}
	if n.queue == nil {
		n.queue = make(chan message, Queue)
		go n.sender(n.queue)
	}
	select {
	case n.queue <- message{state: state}:
		n.queued++
		// The episode ends once the queue is half empty, not at the first
		// free slot: a manager reading slowly would have each drop said.
		if len(n.queue) <= Queue/2 {
			n.dropping = false
		}
	default:
		n.failed++
		if !n.dropping {
			n.dropping = true
			n.reportLocked(fmt.Errorf("it is not reading its socket (%d messages waiting): dropping from %q on", Queue, strings.ReplaceAll(state, "\n", " ")))
		}
	}
}

// sender is the one goroutine that writes to the notify socket, where a send
// may block for as long as the manager does not read.
func (n *Notifier) sender(q <-chan message) {
	for m := range q {
		if m.flushed != nil {
			close(m.flushed)
			continue
		}
		// false without error when NOTIFY_SOCKET is unset: nobody to tell.
		_, err := daemon.SdNotify(false, m.state)
		n.mu.Lock()
		n.handled++
		if err != nil {
			n.failed++
			if !n.failing {
				n.failing = true
				n.reportLocked(unwrapOp(err))
			}
		} else {
			n.failing = false
		}
		n.mu.Unlock()
	}
}

// reportLocked says why messages do not reach the manager.
func (n *Notifier) reportLocked(cause error) {
	fmt.Fprintf(n.stderr, "adoptwatch: cannot notify the service manager at NOTIFY_SOCKET=%q: %v (continuing without it)\n",
		os.Getenv("NOTIFY_SOCKET"), cause)
}

// Flush waits, at most timeout, until the messages sent so far have been
// delivered or have failed. If the manager did not take them in time, the
// number left is said on one line and they are abandoned (the process is
// exiting).
func (n *Notifier) Flush(timeout time.Duration) {
	if n == nil {
		return
	}
	n.mu.Lock()
	q := n.queue
	n.mu.Unlock()
	if q == nil {
		return
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	m := message{flushed: make(chan struct{})}
	select {
	case q <- m:
		select {
		case <-m.flushed:
			return
		case <-timer.C:
		}
	case <-timer.C:
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	left := n.queued - n.handled
	fmt.Fprintf(n.stderr, "adoptwatch: the service manager at NOTIFY_SOCKET=%q did not take %d messages within %v: not sent\n",
		os.Getenv("NOTIFY_SOCKET"), left, timeout)
}

// unwrapOp shortens net.OpError's "dial unixgram /x: connect: ..." to the cause.
func unwrapOp(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// WatchdogInterval is how often the watchdog wants WATCHDOG=1: half of
// WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, or 0 when the service
// manager set no watchdog for this process.
func WatchdogInterval() (time.Duration, error) {
	usec, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0, err
	}
	return usec / 2, nil
}

// Watchdog sends WATCHDOG=1 every interval until stop is closed or Stopping
// is called. The pings
// prove the process and its Go runtime are alive and scheduled (a hung or
// frozen adoptwatch is restarted by systemd); close stop as soon as the
// watch ends, so that a watcher that stopped watching stops pinging.
func (n *Notifier) Watchdog(interval time.Duration, stop <-chan struct{}) {
	if n == nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			n.ping()
		}
	}
}
