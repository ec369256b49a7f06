package metrics

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/reaping"
	"github.com/adoptwatch/adoptwatch/loader"
)

// scrape fetches /metrics over real HTTP and parses it as Prometheus does.
func scrape(t *testing.T, addr net.Addr) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("content type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return fams
}

// value finds the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := lookup(fams, name, want)
	if !ok {
		t.Fatalf("no %s%v in the scrape", name, want)
	}
	return v
}

func lookup(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func bucket(t *testing.T, fams map[string]*dto.MetricFamily, name, kind string, le float64) uint64 {
	t.Helper()
	for _, m := range fams[name].Metric {
		if m.Label[0].GetValue() != kind {
			continue
		}
		for _, b := range m.Histogram.Bucket {
			if b.GetUpperBound() == le {
				return b.GetCumulativeCount()
			}
		}
	}
	t.Fatalf("no bucket le=%v for %s %s", le, name, kind)
	return 0
}

// world is what a watcher would feed the metrics: a real tracker (under a
// lock, as the record loop and the HTTP server share it) and kernel counters.
type world struct {
	mu      sync.Mutex
	tracker *reaping.Tracker
	kernel  loader.Counters
	kerr    error
	socket  SocketStats
	notify  NotifyStats
}

func (w *world) sources() Sources {
	return Sources{
		Kernel: func() (loader.Counters, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.kernel, w.kerr
		},
		Reaping: func() (reaping.Stats, map[events.Reaper]int) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.tracker.Stats(), w.tracker.UnreapedByKind()
		},
		Socket: func() SocketStats {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.socket
		},
		Notify: func() NotifyStats {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.notify
		},
	}
}

func adoption(pid uint32, parent events.Process, kind events.Reaper, at time.Time) *events.Adoption {
	child := events.Process{ID: procfs.ID{PID: pid, Start: time.Duration(pid) * time.Second}, Comm: "d", SID: pid - 1}
	return &events.Adoption{Time: at, Hook: events.HookExitWalk, Child: child, NewParent: parent, Reaper: kind,
		PrevParent: events.Process{ID: procfs.ID{PID: pid - 1}},
		Lineage: []events.Step{
			{ID: procfs.ID{PID: pid - 1}, SID: pid - 1, Setsid: true},
			{ID: procfs.ID{PID: pid, Start: child.Start}, SID: pid - 1},
		}}
}

func start(t *testing.T, opts Options, src Sources) (*Metrics, *Server) {
	t.Helper()
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Register(src); err != nil {
		t.Fatal(err)
	}
	srv, err := Listen("127.0.0.1:0", m.Registry, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m, srv
}

func TestScrapeMatchesWhatHappened(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	w := &world{tracker: reaping.New(reaping.Config{ZombieAfter: 10 * time.Second})}
	w.kernel = loader.Counters{LostAdoptions: 3, LostTaskRecords: 4, LineageFull: 5, SnapshotFull: 6,
		ChildrenTruncated: 7, StaleChildren: 8, Adoptions: 9, UnwatchedAdoptions: 10, UnwatchMarksFull: 11,
		SpareRuns: 12, UnseenEvents: 13, UnfollowedAdoptions: 14, AdopteesFull: 15, LostAdopteeRecords: 16, ScopeCgroupsDropped: 17}
	w.socket = SocketStats{Subscribers: 2, Accepted: 5, Refused: 1,
		Disconnects: map[string]uint64{"overflow": 1, "closed": 2}, Sent: 40, Dropped: 7}
	w.notify = NotifyStats{Delivered: 2, Failed: map[string]uint64{"EAGAIN": 1, "a reason with spaces": 1, "some error": 2}}
	m, srv := start(t, Options{Hook: events.HookExitWalk, ZombieAfter: 10 * time.Second}, w.sources())

	node := events.Process{ID: procfs.ID{PID: 4242, Start: time.Second}, Comm: "node"}
	tini := events.Process{ID: procfs.ID{PID: 77, Start: time.Second}, Comm: "tini"}
	feed := func(a *events.Adoption) {
		w.mu.Lock()
		w.tracker.OnAdopt(a)
		w.mu.Unlock()
		m.Adoption(a)
	}
	// Three daemons adopted by node (ns-reaper), never reaped; one by tini,
	// reaped at once; one plain orphan adopted by init.
	for i := range 3 {
		feed(adoption(uint32(1000+10*i), node, events.ReaperNS, now))
	}
	prompt := adoption(2000, tini, events.ReaperSubreaper, now)
	feed(prompt)
	orphan := adoption(3000, events.Process{ID: procfs.ID{PID: 1}, Comm: "init"}, events.ReaperInit, now)
	orphan.Lineage = orphan.Lineage[1:]
	feed(orphan)

	w.mu.Lock()
	for i := range 3 {
		w.tracker.OnExit(reaping.ID{PID: uint32(1000 + 10*i), Start: time.Duration(1000+10*i) * time.Second}, now, 0)
	}
	w.tracker.OnExit(reaping.ID{PID: 2000, Start: 2000 * time.Second}, now, 0)
	r, ok := w.tracker.OnReaped(reaping.ID{PID: 2000, Start: 2000 * time.Second}, now.Add(5*time.Millisecond))
	w.mu.Unlock()
	if !ok {
		t.Fatal("setup: no reap delay")
	}
	m.Reaped(r)
	w.mu.Lock()
	unreaped := w.tracker.Tick(now.Add(11 * time.Second))
	w.mu.Unlock()
	for _, u := range unreaped {
		m.Unreaped(u)
	}

	fams := scrape(t, srv.Addr())
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"adoptwatch_adoptions_total", map[string]string{"reaper_kind": "ns-reaper", "pattern": "double-fork", "hook": "exit-walk"}, 3},
		{"adoptwatch_adoptions_total", map[string]string{"reaper_kind": "subreaper", "pattern": "double-fork"}, 1},
		{"adoptwatch_adoptions_total", map[string]string{"reaper_kind": "init", "pattern": "orphan"}, 1},
		{"adoptwatch_unreaped_zombies", map[string]string{"reaper_kind": "ns-reaper"}, 3},
		{"adoptwatch_unreaped_zombies", map[string]string{"reaper_kind": "init"}, 0},
		{"adoptwatch_unreaped_events_total", map[string]string{"reaper_kind": "ns-reaper"}, 3},
		{"adoptwatch_reaped_events_total", map[string]string{"reaper_kind": "subreaper"}, 0},
		{"adoptwatch_reaped_after_seconds", map[string]string{"reaper_kind": "subreaper"}, 1},
		{"adoptwatch_followed_processes", nil, 4},
		{"adoptwatch_followed_zombies", nil, 3},
		{"adoptwatch_followed_evicted_total", nil, 0},
		{"adoptwatch_records_lost_total", map[string]string{"records": "adopt"}, 3},
		{"adoptwatch_records_lost_total", map[string]string{"records": "task"}, 4},
		{"adoptwatch_kernel_lineage_map_full_total", nil, 5},
		{"adoptwatch_kernel_exit_snapshot_full_total", nil, 6},
		{"adoptwatch_kernel_children_truncated_total", nil, 7},
		{"adoptwatch_kernel_stale_children_total", nil, 8},
		{"adoptwatch_kernel_adoptions_total", nil, 9},
		{"adoptwatch_kernel_unwatched_adoptions_total", nil, 10},
		{"adoptwatch_kernel_unwatch_marks_full_total", nil, 11},
		{"adoptwatch_kernel_spare_program_runs_total", nil, 12},
		{"adoptwatch_kernel_unseen_events_total", nil, 13},
		{"adoptwatch_kernel_unfollowed_adoptions_total", nil, 14},
		{"adoptwatch_kernel_adoptees_map_full_total", nil, 15},
		{"adoptwatch_records_lost_total", map[string]string{"records": "adoptee"}, 16},
		{"adoptwatch_kernel_scope_cgroups_dropped_total", nil, 17},
		{"adoptwatch_notify_deliveries_total", nil, 2},
		{"adoptwatch_notify_failures_total", map[string]string{"errno": "EAGAIN"}, 1},
		{"adoptwatch_notify_failures_total", map[string]string{"errno": "other"}, 3},
		{"adoptwatch_socket_subscribers", nil, 2},
		{"adoptwatch_socket_accepted_total", nil, 5},
		{"adoptwatch_socket_refused_total", nil, 1},
		{"adoptwatch_socket_disconnects_total", map[string]string{"reason": "overflow"}, 1},
		{"adoptwatch_socket_disconnects_total", map[string]string{"reason": "closed"}, 2},
		{"adoptwatch_socket_records_sent_total", nil, 40},
		{"adoptwatch_socket_records_dropped_total", nil, 7},
		{"adoptwatch_build_info", map[string]string{"hook": "exit-walk"}, 1},
		{"adoptwatch_metrics_source_errors_total", map[string]string{"source": "kernel"}, 0},
	}
	for _, c := range checks {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The prompt reap (5ms) sits below the zombie-after bucket (10s).
	if n := bucket(t, fams, "adoptwatch_reaped_after_seconds", "subreaper", 0.01); n != 1 {
		t.Errorf("le=0.01 bucket %d, want 1", n)
	}
	if n := bucket(t, fams, "adoptwatch_reaped_after_seconds", "subreaper", 10); n != 1 {
		t.Errorf("le=10 (zombie-after) bucket %d, want 1", n)
	}
	if _, ok := fams["process_open_fds"]; !ok {
		t.Error("no process metrics")
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}

	// Reap one of node's zombies after a minute: gauge down, reaped event and
	// its delay counted beyond the zombie-after bucket.
	w.mu.Lock()
	r, ok = w.tracker.OnReaped(reaping.ID{PID: 1000, Start: 1000 * time.Second}, now.Add(time.Minute))
	w.mu.Unlock()
	if !ok || !r.Reported {
		t.Fatal("setup: no reaped event")
	}
	m.Reaped(r)
	w.mu.Lock()
	w.kernel.LostAdoptions = 30
	w.mu.Unlock()
	fams = scrape(t, srv.Addr())
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"adoptwatch_unreaped_zombies", map[string]string{"reaper_kind": "ns-reaper"}, 2},
		{"adoptwatch_reaped_events_total", map[string]string{"reaper_kind": "ns-reaper"}, 1},
		{"adoptwatch_reaped_after_seconds", map[string]string{"reaper_kind": "ns-reaper"}, 1},
		{"adoptwatch_records_lost_total", map[string]string{"records": "adopt"}, 30},
	} {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("after reap: %s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := bucket(t, fams, "adoptwatch_reaped_after_seconds", "ns-reaper", 10); n != 0 {
		t.Errorf("a 60s reap fell in le=10: %d", n)
	}
	if n := bucket(t, fams, "adoptwatch_reaped_after_seconds", "ns-reaper", 60); n != 1 {
		t.Errorf("a 60s reap missing from le=60: %d", n)
	}
}

// Counts keep matching through a burst of 1,000 adoptions scraped meanwhile.
func TestBurstOfAdoptions(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	w := &world{tracker: reaping.New(reaping.Config{ZombieAfter: time.Second, Capacity: 4096})}
	m, srv := start(t, Options{Hook: events.HookExitWalk, ZombieAfter: time.Second}, w.sources())
	reaper := events.Process{ID: procfs.ID{PID: 500, Start: time.Second}, Comm: "sub"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			a := adoption(uint32(10000+2*i), reaper, events.ReaperSubreaper, now)
			w.mu.Lock()
			w.tracker.OnAdopt(a)
			w.tracker.OnExit(reaping.ID{PID: a.Child.PID, Start: a.Child.Start}, now, 0)
			w.mu.Unlock()
			m.Adoption(a)
		}
	}()
	for range 5 {
		scrape(t, srv.Addr()) // concurrent scrapes must not race the record loop
	}
	<-done
	w.mu.Lock()
	for _, u := range w.tracker.Tick(now.Add(2 * time.Second)) {
		m.Unreaped(u)
	}
	w.mu.Unlock()
	fams := scrape(t, srv.Addr())
	if got := value(t, fams, "adoptwatch_adoptions_total", map[string]string{"reaper_kind": "subreaper"}); got != 1000 {
		t.Errorf("adoptions %v, want 1000", got)
	}
	if got := value(t, fams, "adoptwatch_unreaped_events_total", map[string]string{"reaper_kind": "subreaper"}); got != 1000 {
		t.Errorf("unreaped events %v, want 1000", got)
	}
	if got := value(t, fams, "adoptwatch_unreaped_zombies", map[string]string{"reaper_kind": "subreaper"}); got != 1000 {
		t.Errorf("unreaped now %v, want 1000", got)
	}
}

// Unit and container labels appear only when asked for.
func TestContextLabelsOptIn(t *testing.T) {
	a := adoption(100, events.Process{ID: procfs.ID{PID: 1}}, events.ReaperInit, time.Now())
	m, srv := start(t, Options{}, Sources{})
	m.Adoption(a)
	fams := scrape(t, srv.Addr())
	for _, l := range fams["adoptwatch_adoptions_total"].Metric[0].Label {
		if l.GetName() == "unit" || l.GetName() == "container" {
			t.Fatalf("context label %s without the option", l.GetName())
		}
	}
	m, srv = start(t, Options{ContextLabels: true}, Sources{})
	ctr := cgroups.Info{ID: 7, State: cgroups.Resolved, Path: "/system.slice/docker-3f2a.scope",
		Context: cgroups.Context{Unit: "docker-3f2a.scope", Container: cgroups.Container{Runtime: cgroups.RuntimeDocker, ID: "3f2a"}}}
	a.Context = &events.Context{Child: ctr}
	m.Adoption(a)
	a.Context = nil // unknown: empty labels
	m.Adoption(a)
	fams = scrape(t, srv.Addr())
	if got := value(t, fams, "adoptwatch_adoptions_total", map[string]string{"unit": "docker-3f2a.scope", "container": "docker:3f2a"}); got != 1 {
		t.Fatalf("with context labels: %v", got)
	}
	if got := value(t, fams, "adoptwatch_adoptions_total", map[string]string{"unit": "", "container": ""}); got != 1 {
		t.Fatalf("unknown context: %v", got)
	}
}

// A source that fails leaves its metrics out of that scrape, counted; the
// others are still served.
func TestFailingSourceCounted(t *testing.T) {
	w := &world{tracker: reaping.New(reaping.Config{}), kerr: errors.New("observer closed")}
	_, srv := start(t, Options{}, w.sources())
	fams := scrape(t, srv.Addr())
	if _, ok := fams["adoptwatch_kernel_adoptions_total"]; ok {
		t.Error("kernel counters served although reading them failed")
	}
	if got := value(t, fams, "adoptwatch_metrics_source_errors_total", map[string]string{"source": "kernel"}); got != 1 {
		t.Errorf("source errors %v, want 1", got)
	}
	if _, ok := lookup(fams, "adoptwatch_followed_processes", nil); !ok {
		t.Error("the other sources were not served")
	}
}

// A source registered twice is refused, not exposed twice.
func TestRegisterTwice(t *testing.T) {
	m, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{tracker: reaping.New(reaping.Config{})}
	if err := m.Register(w.sources()); err != nil {
		t.Fatal(err)
	}
	if err := m.Register(Sources{Reaping: w.sources().Reaping}); err == nil {
		t.Fatal("a second reaping source was accepted")
	}
}

// Every field of loader.Counters is exposed exactly once, so a counter the
// kernel side adds cannot be forgotten here.
func TestEveryKernelCounterExposed(t *testing.T) {
	typ := reflect.TypeFor[loader.Counters]()
	mapped := map[string]int{}
	for _, k := range kernelCounters {
		mapped[k.field]++
		if f, ok := typ.FieldByName(k.field); !ok || f.Type.Kind() != reflect.Uint64 {
			t.Errorf("kernelCounters names %s, not a uint64 field of loader.Counters", k.field)
		}
	}
	for i := range typ.NumField() {
		if name := typ.Field(i).Name; mapped[name] != 1 {
			t.Errorf("loader.Counters.%s is exposed %d times, want once", name, mapped[name])
		}
	}
}

func TestParseAddr(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:9560", ":9560", "[::1]:0", "localhost:9560", "node-1.example:80"} {
		if err := ParseAddr(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "9560", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "127.0.0.1:-1",
		"127.0.0.1:09", "ho st:80", "[::1:80", "a..b:80", "-x:80"} {
		var ae *AddrError
		if err := ParseAddr(bad); !errors.As(err, &ae) {
			t.Errorf("%q: want an AddrError, got %v", bad, err)
		}
	}
}

func TestListenErrors(t *testing.T) {
	reg, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ae *AddrError
	if _, err := Listen("nonsense", reg.Registry, nil); !errors.As(err, &ae) {
		t.Fatalf("malformed: want an AddrError, got %v", err)
	} else if !strings.Contains(err.Error(), "HOST:PORT") {
		t.Errorf("message does not say what is wanted: %v", err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = Listen(busy.Addr().String(), reg.Registry, nil)
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("in use: want a non-flag error, got %v", err)
	}
	if !strings.Contains(err.Error(), "address already in use") || strings.Contains(err.Error(), "\n") {
		t.Errorf("in use: want one line saying so, got %q", err)
	}
}

func TestOnlyMetricsPath(t *testing.T) {
	_, srv := start(t, Options{}, Sources{})
	for path, want := range map[string]int{"/": 200, "/debug/pprof/": 404, "/metricsx": 404} {
		resp, err := http.Get(fmt.Sprintf("http://%s%s", srv.Addr(), path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
