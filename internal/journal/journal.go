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

// Sink is the --journal sink: one entry per adoption. It counts what the
// journal did not take and says so: the first failure of an outage as a
// warning (stderr, or a "warning" line in the JSON stream), the totals on Close.
type Sink struct {
	p            *output.Printer
	sent, failed atomic.Uint64
	failing      atomic.Bool
}

// Open checks that a journal is listening, so that --journal fails at
// start-up with one line rather than at the first adoption.
func Open(p *output.Printer) (*Sink, error) {
	if !sdjournal.Enabled() {
		if _, err := os.Stat(SocketPath); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no journal is running: %s missing", SocketPath)
		}
		return nil, fmt.Errorf("no journal is running: %s does not accept connections", SocketPath)
	}
	return &Sink{p: p}, nil
}

// Adoption sends one entry.
func (s *Sink) Adoption(a *output.Adoption) {
	if err := Send(a.Adoption); err != nil {
		s.failed.Add(1)
		if !s.failing.Swap(true) {
			msg := fmt.Sprintf("journal: cannot send the adoption of %d: %v (counting until it works again)", a.Child.PID, err)
			s.p.Warn(output.WarningLine(time.Now(), msg), "%s", msg)
		}
		return
	}
	s.failing.Store(false)
	s.sent.Add(1)
}

// Close reports entries that could not be sent, if any.
func (s *Sink) Close() error {
	if n := s.failed.Load(); n > 0 {
		msg := fmt.Sprintf("journal: %d adoptions sent, %d could not be sent", s.sent.Load(), n)
		s.p.Warn(output.WarningLine(time.Now(), msg), "%s", msg)
	}
	return nil
}

// Sent and Failed count entries sent and entries the journal did not take.
func (s *Sink) Sent() uint64   { return s.sent.Load() }
func (s *Sink) Failed() uint64 { return s.failed.Load() }

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
