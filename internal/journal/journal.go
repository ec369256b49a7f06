// Package journal writes each adoption to the systemd journal as one native
// entry with structured fields (go-systemd's journal package speaks the
// protocol), so that `journalctl ADOPTWATCH_REAPER_KIND=init` finds them.
//
// Structured fields carry the raw values (the journal stores them
// binary-safe: a comm with a newline stays one field); MESSAGE and
// ADOPTWATCH_LINEAGE are the text renderings of internal/output, escaped
// there like every other text line.
package journal

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	sdjournal "github.com/coreos/go-systemd/v22/journal"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/output"
)

// SocketPath is where journald listens for native entries (go-systemd's
// default, and systemd's).
const SocketPath = "/run/systemd/journal/socket"

// Identifier is the SYSLOG_IDENTIFIER of every entry: `journalctl -t adoptwatch`.
const Identifier = "adoptwatch"

// Queue is how many entries wait for the journal before new ones are
// dropped: enough for a burst while journald catches up, bounded so that a
// stalled journald costs memory once, not forever.
const Queue = 512

// CloseWait is how long Close waits for the queued entries to be sent.
const CloseWait = time.Second

// Sink is the --journal sink: one entry per adoption. go-systemd's journal
// socket blocks, with no deadline, while journald's receive queue is full; so
// the record loop only queues entries (Adoption never blocks) and one
// goroutine sends them. What the journal did not take is counted and said: a
// warning at the start of each outage (the journal refusing entries) and of
// each episode of drops (the queue full: journal too slow, until it is half
// empty again), on stderr or as a
// "warning" line in the JSON stream, and the totals on Close.
type Sink struct {
	p         *output.Printer
	queue     chan *events.Adoption
	done      chan struct{} // closed when the sender has sent everything queued
	closeWait time.Duration

	queued, sent, failed, dropped atomic.Uint64
	failing, dropping             atomic.Bool
}

// Open checks that a journal is listening, so that --journal fails at
// start-up with one line rather than at the first adoption, and starts the
// sender.
func Open(p *output.Printer) (*Sink, error) {
	if !sdjournal.Enabled() {
		if _, err := os.Stat(SocketPath); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no journal is running: %s missing", SocketPath)
		}
		return nil, fmt.Errorf("no journal is running: %s does not accept connections", SocketPath)
	}
	return start(p, Queue, CloseWait), nil
}

func start(p *output.Printer, queue int, closeWait time.Duration) *Sink {
	s := &Sink{p: p, queue: make(chan *events.Adoption, queue), done: make(chan struct{}), closeWait: closeWait}
	go s.send()
	return s
}

// Adoption queues one entry, or drops and counts it when the queue is full.
// It runs in the record loop and never waits for the journal.
func (s *Sink) Adoption(a *output.Adoption) {
	select {
	case s.queue <- a.Adoption:
		s.queued.Add(1)
		// The episode of drops ends once the queue is half empty again, not
		// at the first free slot: a journald that reads slowly would otherwise
		// free one slot at a time and have each drop reported on a line.
		if len(s.queue) <= cap(s.queue)/2 {
			s.dropping.Store(false)
		}
	default:
		s.dropped.Add(1)
		if !s.dropping.Swap(true) {
			msg := fmt.Sprintf("journal: too slow, %d entries waiting: dropping adoptions from that of %d on (counting until it keeps up again)", cap(s.queue), a.Child.PID)
			s.p.Warn(output.WarningLine(time.Now(), msg), "%s", msg)
		}
	}
}

// send is the one goroutine that writes to the journal socket, where it may
// block for as long as journald does not read.
func (s *Sink) send() {
	defer close(s.done)
	for a := range s.queue {
		if err := Send(a); err != nil {
			s.failed.Add(1)
			if !s.failing.Swap(true) {
				msg := fmt.Sprintf("journal: cannot send the adoption of %d: %v (counting until it works again)", a.Child.PID, err)
				s.p.Warn(output.WarningLine(time.Now(), msg), "%s", msg)
			}
			continue
		}
		s.failing.Store(false)
		s.sent.Add(1)
	}
}

// Close waits up to its bound for the queued entries to be sent, then reports
// what the journal did not get, if anything, and returns. A sender still
// blocked on the socket is abandoned: the process is exiting. No Adoption
// may follow Close.
func (s *Sink) Close() error {
	close(s.queue)
	select {
	case <-s.done:
	case <-time.After(s.closeWait):
	}
	sent, failed := s.sent.Load(), s.failed.Load()
	// Queued but neither sent nor refused: still waiting for a journal too
	// slow to take them within closeWait (one may be in the socket already).
	slow := s.dropped.Load() + s.queued.Load() - sent - failed
	if failed+slow > 0 {
		msg := fmt.Sprintf("journal: %d adoptions sent, %d could not be sent (%d refused by the journal, %d dropped: journal too slow)",
			sent, failed+slow, failed, slow)
		s.p.Warn(output.WarningLine(time.Now(), msg), "%s", msg)
	}
	return nil
}

// Sent, Failed and Dropped count entries sent, entries the journal refused,
// and entries dropped because the queue was full.
func (s *Sink) Sent() uint64    { return s.sent.Load() }
func (s *Sink) Failed() uint64  { return s.failed.Load() }
func (s *Sink) Dropped() uint64 { return s.dropped.Load() }

// Send writes one adoption to the journal: MESSAGE is the text line, the
// other fields are Fields(a).
func Send(a *events.Adoption) error {
	return sdjournal.Send(output.AdoptionText(a), sdjournal.PriInfo, Fields(a))
}

// Fields are an adoption's structured fields besides MESSAGE and PRIORITY.
// Their names are an interface (README, "The journal"): only add to them.
func Fields(a *events.Adoption) map[string]string {
	u := func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
	return map[string]string{
		"SYSLOG_IDENTIFIER":           Identifier,
		"ADOPTWATCH_EVENT":            string(events.KindAdopt),
		"ADOPTWATCH_PID":              u(a.Child.PID),
		"ADOPTWATCH_COMM":             a.Child.Comm,
		"ADOPTWATCH_START":            strconv.FormatInt(int64(a.Child.Start), 10),
		"ADOPTWATCH_PREV_PARENT":      u(a.PrevParent.PID),
		"ADOPTWATCH_PREV_PARENT_COMM": a.PrevParent.Comm,
		"ADOPTWATCH_NEW_PARENT":       u(a.NewParent.PID),
		"ADOPTWATCH_NEW_PARENT_COMM":  a.NewParent.Comm,
		"ADOPTWATCH_REAPER_KIND":      string(a.Reaper),
		"ADOPTWATCH_PATTERN":          string(events.DaemonPattern(a.Lineage)),
		"ADOPTWATCH_HOOK":             string(a.Hook),
		"ADOPTWATCH_LINEAGE":          output.LineageText(a.Lineage, a.LineageComplete),
	}
}
