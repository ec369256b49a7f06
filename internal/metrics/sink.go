package metrics

import (
	"net"

	"github.com/adoptwatch/adoptwatch/internal/output"
)

// Sink counts every adoption and serves the metrics at /metrics until Close.
type Sink struct {
	m   *Metrics
	srv *Server
}

// Serve listens on addr (see Listen) and serves m.
func Serve(addr string, m *Metrics, errorLog func(format string, args ...any)) (*Sink, error) {
	srv, err := Listen(addr, m.Registry, errorLog)
	if err != nil {
		return nil, err
	}
	return &Sink{m: m, srv: srv}, nil
}

// Adoption counts a.
func (s *Sink) Adoption(a *output.Adoption) { s.m.Adoption(a.Adoption) }

// Addr is the address served.
func (s *Sink) Addr() net.Addr { return s.srv.Addr() }

// Close stops serving.
func (s *Sink) Close() error { return s.srv.Close() }
