package notify

import (
	"errors"
	"maps"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/output"
)

// Spec is one --notify-pid/--notify-signal pair.
type Spec struct {
	PID    int
	Signal int
}

// Sink is the PR_SET_ADOPTSIG ABI as a sink: one queued signal per adoption
// by a registered reaper. A failed delivery is reported through the printer
// (stderr, and a "notify-failed" line in the JSON stream).
type Sink struct {
	targets []*Target
	p       *output.Printer

	mu        sync.Mutex
	delivered uint64
	failed    map[string]uint64 // by errno name
}

// NewSink opens every target (a pidfd each) or none.
func NewSink(specs []Spec, p *output.Printer) (*Sink, error) {
	s := &Sink{p: p}
	for _, spec := range specs {
		t, err := OpenTarget(spec.PID, spec.Signal)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.targets = append(s.targets, t)
	}
	return s, nil
}

// Adoption signals each target that adopted a.
func (s *Sink) Adoption(a *output.Adoption) {
	for _, t := range s.targets {
		if !t.Adopted(a.Adoption) {
			continue
		}
		err := t.Notify(a.Child.PID, a.Child.UID, a.PrevParent.PID)
		errno, why := "", ""
		if err != nil {
			errno, why = Reason(err)
		}
		s.count(errno)
		if err == nil {
			continue
		}
		line := output.NotifyFailedLine(time.Now(), output.NotifyFailed{
			Target: int(t.PID), Signal: SignalName(t.Signal), PID: a.Child.PID,
			PrevParent: a.PrevParent.PID, Errno: errno, Reason: why,
		})
		s.p.Event(line, "notify-failed: %s to %d for the adoption of %d from %d: %s",
			SignalName(t.Signal), t.PID, a.Child.PID, a.PrevParent.PID, why)
	}
}

func (s *Sink) count(errno string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errno == "" {
		s.delivered++
		return
	}
	if s.failed == nil {
		s.failed = map[string]uint64{}
	}
	s.failed[errno]++
}

// Stats returns the signals queued so far and the failures by errno name.
func (s *Sink) Stats() (delivered uint64, failed map[string]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered, maps.Clone(s.failed)
}

// Close releases the targets' pidfds.
func (s *Sink) Close() error {
	for _, t := range s.targets {
		t.Close()
	}
	return nil
}

// Reason names a delivery error's errno and says what it means for a reaper.
func Reason(err error) (errno, why string) {
	errno, why = err.Error(), err.Error()
	var e unix.Errno
	if errors.As(err, &e) {
		if name := unix.ErrnoName(e); name != "" {
			errno = name
		}
	}
	switch {
	case errors.Is(err, unix.EAGAIN):
		why = "the reaper's queue of pending signals is full (RLIMIT_SIGPENDING)"
	case errors.Is(err, unix.ESRCH):
		why = "the reaper is gone"
	}
	return errno, why
}
