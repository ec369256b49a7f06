package output

import (
	"sync"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
)

// Adoption is one finished adoption as every sink receives it: the record,
// and its text and JSON forms, each built on first use, once for all sinks
// (a sink may use them from another goroutine). A watcher that prints text
// and has no JSON sink never builds the JSON (issue 12: it was a third of
// the work per adoption).
type Adoption struct {
	*events.Adoption

	jsonOnce sync.Once
	obj      *AdoptionJSON // a pointer: a text-only watcher allocates none
	line     []byte

	textOnce sync.Once
	text     string
}

// NewAdoption wraps a finished adoption for the sinks.
func NewAdoption(a *events.Adoption) *Adoption { return &Adoption{Adoption: a} }

func (a *Adoption) buildJSON() {
	a.jsonOnce.Do(func() {
		obj := AdoptionObject(a.Adoption)
		a.obj = &obj
		a.line = line(obj)
	})
}

// Object is the adoption's JSON object.
func (a *Adoption) Object() AdoptionJSON { a.buildJSON(); return *a.obj }

// Line is the --json line, with its newline. Callers must not modify it.
func (a *Adoption) Line() []byte { a.buildJSON(); return a.line }

// Text is the one-line human form (AdoptionText), without a newline.
func (a *Adoption) Text() string {
	a.textOnce.Do(func() { a.text = AdoptionText(a.Adoption) })
	return a.text
}

// WithPidfd is the subscriber socket's form of the line: one more field,
// "pidfd", saying whether a pidfd of the adopted process comes with it.
func (a *Adoption) WithPidfd(status string) []byte {
	obj := a.Object()
	obj.Pidfd = status
	return line(obj)
}

// LostLine reports records the kernel could not deliver.
func LostLine(now time.Time, what string, count uint64) []byte {
	return line(struct {
		Event   string `json:"event"`
		Time    string `json:"time"`
		Records string `json:"records"`
		Count   uint64 `json:"count"`
	}{"lost", stamp(now), what, count})
}

// WarningLine reports a condition that degrades what adoptwatch can say.
func WarningLine(now time.Time, message string) []byte {
	return line(struct {
		Event   string `json:"event"`
		Time    string `json:"time"`
		Message string `json:"message"`
	}{"warning", stamp(now), message})
}

// NotifyFailed is a signal adoptwatch could not deliver to a reaper.
type NotifyFailed struct {
	Target     int    `json:"target"`
	Signal     string `json:"signal"`
	PID        uint32 `json:"pid"`
	PrevParent uint32 `json:"prev_parent"`
	Errno      string `json:"errno"`
	Reason     string `json:"reason"`
}

// NotifyFailedLine is the "notify-failed" line.
func NotifyFailedLine(now time.Time, f NotifyFailed) []byte {
	return line(struct {
		Event string `json:"event"`
		Time  string `json:"time"`
		NotifyFailed
	}{"notify-failed", stamp(now), f})
}

// SocketStats counts what the subscriber socket did. Each connection ends up
// counted as Accepted, Refused (not allowed, over a bound on subscribers, or
// a bad filter line), Abandoned or Probes, or as a write error before it
// could subscribe.
type SocketStats struct {
	Accepted         uint64 `json:"accepted"` // got the "subscribed" line
	Refused          uint64 `json:"refused"`
	Overflowed       uint64 `json:"overflowed"`   // disconnected for a full queue
	WriteErrors      uint64 `json:"write_errors"` // disconnected because a write failed
	RecordsSent      uint64 `json:"records_sent"`
	RecordsDropped   uint64 `json:"records_dropped"` // queued for a subscriber that was cut off
	PidfdsPassed     uint64 `json:"pidfds_passed"`
	PidfdUnsupported uint64 `json:"pidfd_unsupported"`
	PidfdGone        uint64 `json:"pidfd_gone"`
	PidfdMismatch    uint64 `json:"pidfd_mismatch"`
	PidfdErrors      uint64 `json:"pidfd_errors"`
	CutOff           uint64 `json:"cut_off"`        // furthest behind when the overall bound on pidfds or bytes was hit
	ClosedByPeer     uint64 `json:"closed_by_peer"` // subscribers that closed their end
	Abandoned        uint64 `json:"abandoned"`      // connections closed before subscribing
	Probes           uint64 `json:"probes"`         // another adoptwatch checking whether the socket is live
	AcceptErrors     uint64 `json:"accept_errors"`
}

// SocketStatsLine is the "socket-stats" line, on exit.
func SocketStatsLine(now time.Time, st SocketStats) []byte {
	return line(struct {
		Event string `json:"event"`
		Time  string `json:"time"`
		SocketStats
	}{"socket-stats", stamp(now), st})
}

// SubscribedLine greets a subscriber once its filter is known.
func SubscribedLine(now time.Time, id int, filter string, queue int) []byte {
	return line(struct {
		Event  string `json:"event"`
		Time   string `json:"time"`
		ID     int    `json:"id"`
		Filter string `json:"filter"`
		Queue  int    `json:"queue"`
	}{"subscribed", stamp(now), id, filter, queue})
}

// NoticeLine tells a subscriber why it is refused ("refused") or its filter
// line is bad ("error").
func NoticeLine(now time.Time, event, reason string) []byte {
	return line(struct {
		Event  string `json:"event"`
		Time   string `json:"time"`
		Reason string `json:"reason"`
	}{event, stamp(now), reason})
}

// OverflowLine tells a stalled subscriber it is disconnected, and how many
// records it lost.
func OverflowLine(now time.Time, reason string, dropped uint64) []byte {
	return line(struct {
		Event   string `json:"event"`
		Time    string `json:"time"`
		Reason  string `json:"reason"`
		Dropped uint64 `json:"dropped"`
	}{"overflow", stamp(now), reason, dropped})
}
