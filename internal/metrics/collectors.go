package metrics

import (
	"maps"
	"reflect"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/reaping"
	"github.com/adoptwatch/adoptwatch/loader"
)

// kernelCounter exposes one field of loader.Counters. Every field has one
// (a test checks it), so a counter the kernel side adds is never left out.
type kernelCounter struct {
	field string // the loader.Counters field
	name  string
	help  string
	// label, if set, is a constant label pair: several fields share a name.
	labelName, labelValue string
}

var kernelCounters = []kernelCounter{
	{field: "LostAdoptions", name: "records_lost_total", labelName: "records", labelValue: "adopt",
		help: "Records the kernel could not deliver because the ring buffer was full, by kind of record."},
	{field: "LostTaskRecords", name: "records_lost_total", labelName: "records", labelValue: "task",
		help: "Records the kernel could not deliver because the ring buffer was full, by kind of record."},
	{field: "LostAdopteeRecords", name: "records_lost_total", labelName: "records", labelValue: "adoptee",
		help: "Records the kernel could not deliver because the ring buffer was full, by kind of record."},
	{field: "UnfollowedAdoptions", name: "kernel_unfollowed_adoptions_total",
		help: "Adoptions lost because the exit-walk hook could not follow the child (too many children of one exiting thread, or its maps full)."},
	{field: "AdopteesFull", name: "kernel_adoptees_map_full_total",
		help: "Reported adoptions whose process could not be followed to its exit and reap (the kernel's adoptees map was full)."},
	{field: "ForgottenAdoptees", name: "kernel_adoptees_forgotten_total",
		help: "Adopted processes released without a reaped record (the kernel did not see the release), found gone by user space and deleted from the kernel's adoptees map."},
	{field: "LineageFull", name: "kernel_lineage_map_full_total",
		help: "New processes left without lineage because the kernel's lineage map was full."},
	{field: "SnapshotFull", name: "kernel_exit_snapshot_full_total",
		help: "Exiting threads whose children could not be remembered (exit-walk hook): their adoptions may be missing."},
	{field: "ChildrenTruncated", name: "kernel_children_truncated_total",
		help: "Exiting threads with more children than the exit-walk hook follows: their adoptions may be missing."},
	{field: "StaleChildren", name: "kernel_stale_children_total",
		help: "Children of exiting threads gone before the exit-walk hook could check them."},
	{field: "Adoptions", name: "kernel_adoptions_total",
		help: "Adoptions the kernel side saw, sent or lost."},
	{field: "UnwatchedAdoptions", name: "kernel_unwatched_adoptions_total",
		help: "Adoptions of processes outside the watched trees: seen, not sent."},
	{field: "UnwatchMarksFull", name: "kernel_unwatch_marks_full_total",
		help: "Children of unwatched parents that could not be marked unwatched (lineage map full)."},
	{field: "SpareRuns", name: "kernel_spare_program_runs_total",
		help: "Forks, execs and exits handled by a spare copy of a program because the first was preempted."},
	{field: "ScopeCgroupsDropped", name: "kernel_scope_cgroups_dropped_total",
		help: "Cgroups --unit or --container chose that the kernel's map had no room for: processes there are not watched."},
	{field: "UnseenEvents", name: "kernel_unseen_events_total",
		help: "Forks, execs and exits that no program copy saw (all busy on that CPU): adoptions may be missing."},
}

var sourceErrorsDesc = prometheus.NewDesc(namespace+"_metrics_source_errors_total",
	"Scrapes in which a source of counts could not be read (its metrics were left out of that scrape).",
	[]string{"source"}, nil)

// kernelCollector reads the kernel's running totals at scrape time. A failed
// read leaves them out of that scrape and is counted in the same scrape.
type kernelCollector struct {
	read   func() (loader.Counters, error)
	failed atomic.Uint64
	descs  map[string]*prometheus.Desc // by name: built once, read concurrently
}

func newKernelCollector(read func() (loader.Counters, error)) *kernelCollector {
	c := &kernelCollector{read: read, descs: map[string]*prometheus.Desc{}}
	for _, k := range kernelCounters {
		if _, ok := c.descs[k.name]; ok {
			continue
		}
		var labels []string
		if k.labelName != "" {
			labels = []string{k.labelName}
		}
		c.descs[k.name] = prometheus.NewDesc(prometheus.BuildFQName(namespace, "", k.name), k.help, labels, nil)
	}
	return c
}

func (c *kernelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	ch <- sourceErrorsDesc
}

func (c *kernelCollector) Collect(ch chan<- prometheus.Metric) {
	counters, err := c.read()
	if err != nil {
		c.failed.Add(1) // closed, or a map read failed: this scrape goes without
	}
	ch <- prometheus.MustNewConstMetric(sourceErrorsDesc, prometheus.CounterValue, float64(c.failed.Load()), "kernel")
	if err != nil {
		return
	}
	v := reflect.ValueOf(counters)
	for _, k := range kernelCounters {
		var labels []string
		if k.labelName != "" {
			labels = []string{k.labelValue}
		}
		ch <- prometheus.MustNewConstMetric(c.descs[k.name], prometheus.CounterValue,
			float64(v.FieldByName(k.field).Uint()), labels...)
	}
}

var (
	unreapedDesc = prometheus.NewDesc(namespace+"_unreaped_zombies",
		"Adopted zombies left unreaped past --zombie-after and not reaped yet, by reaper kind (sum() for the total).",
		[]string{"reaper_kind"}, nil)
	followedDesc = prometheus.NewDesc(namespace+"_followed_processes",
		"Adopted processes followed now: alive, or exited and not reaped (what adoptwatch ps lists).", nil, nil)
	followedZombiesDesc = prometheus.NewDesc(namespace+"_followed_zombies",
		"Followed processes that have exited and are not reaped yet, whatever their wait.", nil, nil)
	evictedDesc = prometheus.NewDesc(namespace+"_followed_evicted_total",
		"Followed processes dropped because the tracker was full: their reap is not watched.", nil, nil)
	vanishedDesc = prometheus.NewDesc(namespace+"_followed_vanished_total",
		"Adopted processes seen to exit, then found gone without their reap record (a lost record).", nil, nil)
	unfollowedDesc = prometheus.NewDesc(namespace+"_followed_unfollowed_total",
		"Listed processes found gone whose exit the kernel did not follow (there before adoptwatch, or reaped before it could follow them).", nil, nil)
	exitUnseenDesc = prometheus.NewDesc(namespace+"_followed_exit_unseen_total",
		"Followed processes reaped whose exit was not seen (adopted while exiting): no delay measured.", nil, nil)
)

// reapingCollector reads the reaping tracker's state at scrape time.
type reapingCollector struct {
	read func() (reaping.Stats, map[events.Reaper]int)
}

func (c *reapingCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{unreapedDesc, followedDesc, followedZombiesDesc, evictedDesc, vanishedDesc, unfollowedDesc, exitUnseenDesc} {
		ch <- d
	}
}

func (c *reapingCollector) Collect(ch chan<- prometheus.Metric) {
	st, byKind := c.read()
	for _, k := range ReaperKinds {
		ch <- prometheus.MustNewConstMetric(unreapedDesc, prometheus.GaugeValue, float64(byKind[k]), string(k))
	}
	ch <- prometheus.MustNewConstMetric(followedDesc, prometheus.GaugeValue, float64(st.Followed))
	ch <- prometheus.MustNewConstMetric(followedZombiesDesc, prometheus.GaugeValue, float64(st.Zombies))
	ch <- prometheus.MustNewConstMetric(evictedDesc, prometheus.CounterValue, float64(st.Evicted))
	ch <- prometheus.MustNewConstMetric(vanishedDesc, prometheus.CounterValue, float64(st.Vanished))
	ch <- prometheus.MustNewConstMetric(unfollowedDesc, prometheus.CounterValue, float64(st.Unfollowed))
	ch <- prometheus.MustNewConstMetric(exitUnseenDesc, prometheus.CounterValue, float64(st.ExitUnseen))
}

var (
	subscribersDesc = prometheus.NewDesc(namespace+"_socket_subscribers",
		"Subscribers connected to the subscriber socket now.", nil, nil)
	acceptedDesc = prometheus.NewDesc(namespace+"_socket_accepted_total",
		"Subscribers admitted since start.", nil, nil)
	refusedDesc = prometheus.NewDesc(namespace+"_socket_refused_total",
		"Connections refused (credentials, shutting down).", nil, nil)
	disconnectsDesc = prometheus.NewDesc(namespace+"_socket_disconnects_total",
		"Subscribers disconnected, by reason.", []string{"reason"}, nil)
	sentDesc = prometheus.NewDesc(namespace+"_socket_records_sent_total",
		"Records sent to subscribers.", nil, nil)
	droppedDesc = prometheus.NewDesc(namespace+"_socket_records_dropped_total",
		"Records dropped for subscribers that fell behind.", nil, nil)
)

// socketCollector reads the subscriber socket's totals at scrape time.
type socketCollector struct {
	read func() SocketStats
}

func (c *socketCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{subscribersDesc, acceptedDesc, refusedDesc, disconnectsDesc, sentDesc, droppedDesc} {
		ch <- d
	}
}

func (c *socketCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.read()
	ch <- prometheus.MustNewConstMetric(subscribersDesc, prometheus.GaugeValue, float64(st.Subscribers))
	ch <- prometheus.MustNewConstMetric(acceptedDesc, prometheus.CounterValue, float64(st.Accepted))
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(st.Refused))
	reasons := make([]string, 0, len(st.Disconnects))
	for r := range st.Disconnects {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		ch <- prometheus.MustNewConstMetric(disconnectsDesc, prometheus.CounterValue, float64(st.Disconnects[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(sentDesc, prometheus.CounterValue, float64(st.Sent))
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(st.Dropped))
}

var (
	deliveriesDesc = prometheus.NewDesc(namespace+"_notify_deliveries_total",
		"Adoption signals queued to a --notify-pid reaper.", nil, nil)
	failuresDesc = prometheus.NewDesc(namespace+"_notify_failures_total",
		"Adoption signals that could not be queued, by errno (EAGAIN: the reaper's signal queue is full; ESRCH: the reaper is gone).",
		[]string{"errno"}, nil)
)

// notifyCollector reads the reaper-signal sink's totals at scrape time.
type notifyCollector struct {
	read func() NotifyStats
}

func (c *notifyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- deliveriesDesc
	ch <- failuresDesc
}

func (c *notifyCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.read()
	ch <- prometheus.MustNewConstMetric(deliveriesDesc, prometheus.CounterValue, float64(st.Delivered))
	// Errno names are a small set, but the label is kept bounded whatever
	// the source says: anything not shaped like one is "other".
	failed := map[string]uint64{}
	for errno, n := range st.Failed {
		failed[errnoLabel(errno)] += n
	}
	for _, errno := range slices.Sorted(maps.Keys(failed)) {
		ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.CounterValue, float64(failed[errno]), errno)
	}
}

func errnoLabel(s string) string {
	if len(s) < 2 || len(s) > 16 || s[0] != 'E' {
		return "other"
	}
	for _, r := range s {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return "other"
		}
	}
	return s
}
