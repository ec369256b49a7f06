package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/adoptwatch/adoptwatch/internal/control"
	"github.com/adoptwatch/adoptwatch/internal/metrics"
	"github.com/adoptwatch/adoptwatch/internal/notify"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/reaping"
	"github.com/adoptwatch/adoptwatch/internal/reapwatch"
	"github.com/adoptwatch/adoptwatch/internal/sink"
	"github.com/adoptwatch/adoptwatch/internal/subscribe"
	"github.com/adoptwatch/adoptwatch/loader"
)

// reapingFlags are the flags of reaping health, `adoptwatch ps` and metrics.
type reapingFlags struct {
	zombieAfter   time.Duration
	metricsAddr   string
	contextLabels bool
	controlPath   string
}

func (f *reapingFlags) add(fs *pflag.FlagSet) {
	fs.DurationVar(&f.zombieAfter, "zombie-after", reaping.DefaultZombieAfter, "report an adopted process that has exited but is still unreaped after `DURATION`")
	fs.StringVar(&f.metricsAddr, "metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics (HOST:PORT, e.g. 127.0.0.1:9560)")
	fs.BoolVar(&f.contextLabels, "metrics-context-labels", false, "label adoptwatch_adoptions_total with unit and container: a series per unit and container, unbounded on a host of short-lived containers")
	fs.StringVar(&f.controlPath, "control-socket", "", "answer adoptwatch ps on Unix socket `PATH` (mode 0600, root only; ps asks "+control.DefaultPath+" unless told otherwise)")
}

// check validates the flags: an error here is a flag error (exit 2).
func (f *reapingFlags) check(fs *pflag.FlagSet) error {
	if f.zombieAfter <= 0 {
		return fmt.Errorf("--zombie-after %v: want a duration above zero, e.g. 10s", f.zombieAfter)
	}
	if fs.Changed("metrics") {
		if err := metrics.ParseAddr(f.metricsAddr); err != nil {
			return err
		}
	}
	if f.contextLabels && f.metricsAddr == "" {
		return errors.New("--metrics-context-labels needs --metrics")
	}
	if fs.Changed("control-socket") && f.controlPath == "" {
		return errors.New("--control-socket must name a socket path")
	}
	return nil
}

// reapingSinks are the sinks of reaping health, built once the observer is
// attached (the metrics read its counters and name its hook).
type reapingSinks struct {
	monitor *reapwatch.Monitor
	metrics *metrics.Sink   // nil without --metrics
	control *control.Server // nil without --control-socket
}

// build starts the monitor, the metrics server and the control socket the
// flags ask for. sinks are the ones already built (their counts are exposed).
func (f *reapingFlags) build(p *output.Printer, obs *loader.Observer, sinks sink.Set) (*reapingSinks, error) {
	var m *metrics.Metrics
	if f.metricsAddr != "" {
		var err error
		m, err = metrics.New(metrics.Options{Hook: obs.Mechanism.Hook, ZombieAfter: f.zombieAfter,
			ContextLabels: f.contextLabels})
		if err != nil {
			return nil, err
		}
	}
	cfg := reapwatch.Config{ZombieAfter: f.zombieAfter, Printer: p,
		Seed: reaping.PreexistingFromProc, Children: reaping.ChildrenFromProc,
		Forget: func(id reaping.ID) error { _, err := obs.ForgetAdoptee(id); return err }}
	if m != nil {
		cfg.OnUnreaped, cfg.OnReaped = m.Unreaped, m.Reaped
	}
	mon, err := reapwatch.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	rs := &reapingSinks{monitor: mon}
	if m != nil {
		src := metrics.Sources{Kernel: obs.Counters, Reaping: mon.State}
		for _, s := range sinks {
			switch s := s.(type) {
			case *notify.Sink:
				src.Notify = func() metrics.NotifyStats {
					delivered, failed := s.Stats()
					return metrics.NotifyStats{Delivered: delivered, Failed: failed}
				}
			case *subscribe.Sink:
				src.Socket = func() metrics.SocketStats { return subscriberStats(s.Server()) }
			}
		}
		if err := m.Register(src); err != nil {
			mon.Close()
			return nil, err
		}
		if rs.metrics, err = metrics.Serve(f.metricsAddr, m, p.Log); err != nil {
			mon.Close()
			return nil, err
		}
		p.Log("metrics at http://%s/metrics", rs.metrics.Addr())
	}
	if f.controlPath != "" {
		rs.control, err = control.Listen(control.Config{Path: f.controlPath, Answer: mon.Ps, Log: p.Log})
		if err != nil {
			rs.Close()
			return nil, fmt.Errorf("--control-socket: %w", err)
		}
	}
	return rs, nil
}

func subscriberStats(srv *subscribe.Server) metrics.SocketStats {
	st := srv.Stats()
	return metrics.SocketStats{Subscribers: uint64(srv.Subscribers()), Accepted: st.Accepted, Refused: st.Refused,
		Disconnects: map[string]uint64{"overflow": st.Overflowed, "write-error": st.WriteErrors,
			"cut-off": st.CutOff, "closed-by-peer": st.ClosedByPeer},
		Sent: st.RecordsSent, Dropped: st.RecordsDropped}
}

// sinks are the ones that take adoptions: the monitor, and the metrics.
func (rs *reapingSinks) sinks() sink.Set {
	out := sink.Set{rs.monitor}
	if rs.metrics != nil {
		out = append(out, rs.metrics)
	}
	return out
}

// Close stops the control socket, the metrics server and the monitor.
func (rs *reapingSinks) Close() error {
	if rs.control != nil {
		rs.control.Close()
	}
	if rs.metrics != nil {
		rs.metrics.Close()
	}
	return rs.monitor.Close()
}
