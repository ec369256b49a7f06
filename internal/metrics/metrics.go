// Package metrics exposes adoptwatch's counts to Prometheus (--metrics ADDR):
// adoptions, unreaped zombies and reap delays, what the kernel side and the
// sinks counted and lost, and build info. It uses its own registry, never
// the process-wide default one.
//
// Counts owned elsewhere (the kernel's counters, the reaping tracker's state,
// the subscriber socket's totals) are read at scrape time from functions the
// caller supplies, so nothing is counted twice. Only events that no one else
// counts (adoptions by label, unreaped and reaped events, notifications)
// are counted here.
//
// Labels are bounded: reaper kind, pattern, hook and errno take a handful of
// values each. Unit and container labels are off unless Options.ContextLabels
// is set: each distinct unit or container then makes new series, which a
// host that runs many short-lived containers turns into unbounded
// cardinality for the scraper.
package metrics

import (
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/reaping"
	"github.com/adoptwatch/adoptwatch/loader"
)

const namespace = "adoptwatch"

// ReaperKinds are the values of the reaper_kind label; each is always
// exposed, so sum() and rate() never see a series appear from nothing.
var ReaperKinds = []events.Reaper{events.ReaperInit, events.ReaperSubreaper, events.ReaperNS, events.ReaperOther}

// Options configure the metrics.
type Options struct {
	Hook    events.Hook // the hook in use, for adoptwatch_build_info
	Version string      // "" : the module version from the build info
	// ZombieAfter is added to the reaped-after histogram's buckets, so that
	// the bucket le=ZombieAfter splits prompt reaps from reported ones.
	ZombieAfter time.Duration
	// ContextLabels adds "unit" and "container" labels to
	// adoptwatch_adoptions_total, filled by Context (nil: ContextOf). Off by
	// default: see the package comment for its cardinality risk.
	ContextLabels bool
	Context       func(*events.Adoption) (unit, container string)
}

// SocketStats is what the subscriber socket reports at scrape time.
type SocketStats struct {
	Subscribers uint64            // connected now
	Accepted    uint64            // connections admitted since start
	Refused     uint64            // connections refused (credentials, shutdown)
	Disconnects map[string]uint64 // by reason: "overflow", "write-error", ...
	Sent        uint64            // records sent
	Dropped     uint64            // records dropped for subscribers that overflowed
}

// NotifyStats is what the reaper-signal sink reports at scrape time.
type NotifyStats struct {
	Delivered uint64            // signals queued
	Failed    map[string]uint64 // by errno name (EAGAIN, ESRCH, ...)
}

// Sources are read at scrape time; a nil source exposes nothing. Each must be
// safe to call from the HTTP server's goroutine.
type Sources struct {
	Kernel  func() (loader.Counters, error)
	Reaping func() (reaping.Stats, map[events.Reaper]int)
	Socket  func() SocketStats
	Notify  func() NotifyStats
}

// Metrics holds the registry and the counters of events.
type Metrics struct {
	Registry *prometheus.Registry
	opts     Options

	adoptions    *prometheus.CounterVec
	unreaped     *prometheus.CounterVec
	reaped       *prometheus.CounterVec
	reapedAfter  *prometheus.HistogramVec
	notifyOK     prometheus.Counter
	notifyFailed *prometheus.CounterVec
}

// New registers the metrics of events, build info and the process's own
// (Go runtime, memory, fds) on a new registry. Register adds the sources.
func New(opts Options) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	m := &Metrics{Registry: reg, opts: opts}
	adoptionLabels := []string{"reaper_kind", "pattern", "hook"}
	if opts.ContextLabels {
		adoptionLabels = append(adoptionLabels, "unit", "container")
	}
	m.adoptions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "adoptions_total",
		Help: "Adoptions reported, by the kind of the new parent, how the process escaped, and the kernel hook that saw them.",
	}, adoptionLabels)
	m.unreaped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "unreaped_events_total",
		Help: "Adopted zombies reported as left unreaped by their reaper past --zombie-after.",
	}, []string{"reaper_kind"})
	m.reaped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "reaped_events_total",
		Help: "Adopted zombies reported unreaped that were reaped later.",
	}, []string{"reaper_kind"})
	m.reapedAfter = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "reaped_after_seconds",
		Help:    "Time from an adopted process's exit to its reap by the reaper, for every adoptee whose exit was seen.",
		Buckets: reapBuckets(opts.ZombieAfter),
	}, []string{"reaper_kind"})
	for _, k := range ReaperKinds {
		m.unreaped.WithLabelValues(string(k))
		m.reaped.WithLabelValues(string(k))
		m.reapedAfter.WithLabelValues(string(k))
	}

	version := opts.Version
	if version == "" {
		version = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			version = bi.Main.Version
		}
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1: the version running and the adoption hook in use.",
		ConstLabels: prometheus.Labels{"version": version, "hook": string(opts.Hook)},
	})
	buildInfo.Set(1)

	if err := m.register(m.adoptions, m.unreaped, m.reaped, m.reapedAfter, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	return m, nil
}

// Register exposes the counts of the sources given (nil ones are left out).
// Call it once: a second source of the same kind is an error.
func (m *Metrics) Register(src Sources) error {
	var cs []prometheus.Collector
	if src.Kernel != nil {
		cs = append(cs, newKernelCollector(src.Kernel))
	}
	if src.Reaping != nil {
		cs = append(cs, &reapingCollector{read: src.Reaping})
	}
	if src.Socket != nil {
		cs = append(cs, &socketCollector{read: src.Socket})
	}
	if src.Notify != nil {
		cs = append(cs, &notifyCollector{read: src.Notify})
	}
	return m.register(cs...)
}

func (m *Metrics) register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.Registry.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// reapBuckets spans prompt reaps (milliseconds) to reapers that never reap
// (hours), with the --zombie-after threshold as one boundary.
func reapBuckets(zombieAfter time.Duration) []float64 {
	b := []float64{0.001, 0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 6 * 3600}
	if z := zombieAfter.Seconds(); z > 0 && !slices.Contains(b, z) {
		b = append(b, z)
		slices.Sort(b)
	}
	return b
}

// Adoption counts one reported adoption.
func (m *Metrics) Adoption(a *events.Adoption) {
	labels := []string{string(a.Reaper), string(events.DaemonPattern(a.Lineage)), string(a.Hook)}
	if m.opts.ContextLabels {
		context := m.opts.Context
		if context == nil {
			context = ContextOf
		}
		unit, container := context(a)
		labels = append(labels, unit, container)
	}
	m.adoptions.WithLabelValues(labels...).Inc()
}

// ContextOf names the adopted process's systemd unit and container
// ("docker:3f2a…"), from the adoption's resolved cgroup; "" for none or
// unknown.
func ContextOf(a *events.Adoption) (unit, container string) {
	if a.Context == nil || a.Context.Child.State != cgroups.Resolved {
		return "", ""
	}
	c := a.Context.Child.Context
	if c.Container.Runtime != cgroups.RuntimeNone && c.Container.Runtime != "" {
		container = c.Container.Runtime
		if c.Container.ID != "" {
			container += ":" + c.Container.ID
		}
	}
	return c.Unit, container
}

// Unreaped counts one unreaped event.
func (m *Metrics) Unreaped(u reaping.Unreaped) {
	m.unreaped.WithLabelValues(string(u.Zombie.Reaper.Kind)).Inc()
}

// Reaped records an adoptee's reap delay, and counts the reaped event if it is one.
func (m *Metrics) Reaped(r reaping.Reaped) {
	kind := string(r.Zombie.Reaper.Kind)
	m.reapedAfter.WithLabelValues(kind).Observe(r.Waited.Seconds())
	if r.Reported {
		m.reaped.WithLabelValues(kind).Inc()
	}
}
