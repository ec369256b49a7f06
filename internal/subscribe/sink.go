package subscribe

import (
	"time"

	"github.com/adoptwatch/adoptwatch/internal/output"
)

// Sink serves adoptions to subscribers; on Close its final counts are data
// (a socket-stats line) and go through the printer.
type Sink struct {
	srv *Server
	p   *output.Printer
}

// NewSink listens on cfg.Path; the server logs through p.
func NewSink(cfg Config, p *output.Printer) (*Sink, error) {
	cfg.Log = p.Log
	srv, err := Listen(cfg)
	if err != nil {
		return nil, err
	}
	return &Sink{srv: srv, p: p}, nil
}

// Adoption publishes a to every subscriber.
func (s *Sink) Adoption(a *output.Adoption) { s.srv.Publish(a) }

// Close shuts the server down and reports its counts.
func (s *Sink) Close() error {
	st := s.srv.Close()
	s.p.Event(output.SocketStatsLine(time.Now(), st),
		"socket: %d subscribers (%d refused, %d overflowed, %d write errors, %d cut off, %d closed by the subscriber), %d records sent, %d dropped, %d pidfds passed (%d unsupported, %d gone, %d pid reused, %d errors); %d connections abandoned before subscribing, %d probes, %d accept errors",
		st.Accepted, st.Refused, st.Overflowed, st.WriteErrors, st.CutOff, st.ClosedByPeer, st.RecordsSent, st.RecordsDropped,
		st.PidfdsPassed, st.PidfdUnsupported, st.PidfdGone, st.PidfdMismatch, st.PidfdErrors,
		st.Abandoned, st.Probes, st.AcceptErrors)
	return nil
}
