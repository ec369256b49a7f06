// Package reapwatch is the sink that asks "does the reaper reap?": it follows
// every adoption through the adopted process's exit and reap (a
// reaping.Tracker fed from the record loop), prints an "unreaped" record for
// each zombie its reaper leaves unreaped past --zombie-after and a "reaped"
// one when it is reaped at last, counts both for the metrics, and answers
// `adoptwatch ps` with what it follows.
package reapwatch

import (
	"fmt"
	"sync"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/control"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/reaping"
)

// Config configures a Monitor.
type Config struct {
	ZombieAfter time.Duration // <= 0: reaping.DefaultZombieAfter
	Capacity    int           // <= 0: reaping.DefaultCapacity
	Printer     *output.Printer
	// OnUnreaped and OnReaped, if set, see every event (the metrics). OnReaped
	// also sees prompt reaps (r.Reported false), for the reap-delay histogram.
	OnUnreaped func(reaping.Unreaped)
	OnReaped   func(reaping.Reaped)
	// Seed lists the reapers' children present at start-up (nil: none).
	Seed func() ([]reaping.Preexisting, error)
	// Children lists a reaper's children that predate adoptwatch (started
	// before since), when an adoption first shows it is a reaper (nil: none).
	Children func(r reaping.Reaper, since time.Duration) ([]reaping.Preexisting, error)
	// Probe says what /proc shows of a process (nil: ProcState).
	Probe func(reaping.ID) reaping.State
	// Forget, if set, is told each adopted process found gone without its
	// reap record, so that the kernel's entry for it goes too
	// (loader.Observer.ForgetAdoptee); otherwise it would stay until the
	// kernel's adoptees map is full.
	Forget func(reaping.ID) error
}

// Monitor is the sink. Its methods are safe for concurrent use: the record
// loop, its own ticker, the control socket and the metrics read it at once.
type Monitor struct {
	cfg     Config
	started time.Duration // CLOCK_BOOTTIME at start: older children predate us
	warned  reaping.Stats // the counts last warned about
	done    chan struct{}
	wg      sync.WaitGroup

	mu sync.Mutex
	tr *reaping.Tracker
}

// New starts a Monitor: it seeds what is already there and starts ticking.
func New(cfg Config) (*Monitor, error) {
	if cfg.Probe == nil {
		cfg.Probe = ProcState
	}
	m := &Monitor{cfg: cfg, started: events.SinceBoot(), done: make(chan struct{}),
		tr: reaping.New(reaping.Config{ZombieAfter: cfg.ZombieAfter, Capacity: cfg.Capacity, Probe: cfg.Probe})}
	if cfg.Seed != nil {
		procs, err := cfg.Seed()
		if err != nil {
			return nil, err
		}
		m.tr.Seed(time.Now(), procs)
	}
	m.wg.Add(1)
	go m.tick()
	return m, nil
}

// Adoption follows an adopted process. The first adoption by a subreaper
// also brings in its children from before adoptwatch started (/proc cannot
// tell a subreaper; the kernel's record can).
func (m *Monitor) Adoption(a *output.Adoption) {
	r := reaping.Reaper{Process: a.NewParent, Kind: a.Reaper}
	m.mu.Lock()
	m.tr.OnAdopt(a.Adoption)
	first := m.tr.FirstSeen(r)
	m.mu.Unlock()
	if first && a.Reaper == events.ReaperSubreaper && m.cfg.Children != nil {
		if procs, err := m.cfg.Children(r, m.started); err == nil {
			m.mu.Lock()
			m.tr.Seed(a.Time, procs)
			m.mu.Unlock()
		}
	}
}

// Adoptee takes the kernel's record of what became of an adopted process:
// its exit, then its release (reap).
func (m *Monitor) Adoptee(a *events.Adoptee) {
	switch a.Kind {
	case events.KindAdopteeExit:
		m.Exit(a.Process.ID, a.Time, a.ExitStatus)
	case events.KindAdopteeReaped:
		m.Reaped(a.Process.ID, a.Time)
	}
}

// Exit notes that a process exited (its last thread): only the followed matter.
func (m *Monitor) Exit(id procfs.ID, at time.Time, status uint32) {
	m.mu.Lock()
	m.tr.OnExit(id, at, status)
	m.mu.Unlock()
}

// Reaped notes that a process was reaped; a zombie reported unreaped gets its
// "reaped" record.
func (m *Monitor) Reaped(id procfs.ID, at time.Time) {
	m.mu.Lock()
	r, ok := m.tr.OnReaped(id, at)
	m.mu.Unlock()
	if !ok {
		return
	}
	if r.Reported && m.cfg.Printer != nil {
		m.cfg.Printer.Reaped(r)
	}
	if m.cfg.OnReaped != nil {
		m.cfg.OnReaped(r)
	}
}

// Check reports the zombies due by now; the ticker calls it, tests may too.
func (m *Monitor) Check(now time.Time) {
	m.mu.Lock()
	due := m.tr.Tick(now)
	gone := m.tr.TakeGone()
	st := m.tr.Stats()
	m.mu.Unlock()
	m.forget(gone)
	m.warn(st)
	for _, u := range due {
		if m.cfg.Printer != nil {
			m.cfg.Printer.Unreaped(u)
		}
		if m.cfg.OnUnreaped != nil {
			m.cfg.OnUnreaped(u)
		}
	}
}

// forget deletes the kernel's entries of the adopted processes the tracker
// found gone without their reap record. The loader counts each it deleted
// (a lost release); a failure is warned about, as it leaves one behind.
func (m *Monitor) forget(gone []reaping.ID) {
	if m.cfg.Forget == nil {
		return
	}
	for _, id := range gone {
		if err := m.cfg.Forget(id); err != nil && m.cfg.Printer != nil {
			msg := fmt.Sprintf("adopted process %d: its kernel entry could not be deleted: %v", id.PID, err)
			m.cfg.Printer.Warn(output.WarningLine(time.Now(), msg), "%s", msg)
		}
	}
}

// warn says what the tracker's bound dropped: never silently. (Records the
// kernel lost are warned about by internal/losses.)
func (m *Monitor) warn(st reaping.Stats) {
	if m.cfg.Printer == nil {
		return
	}
	now := time.Now()
	if n := st.Evicted - m.warned.Evicted; n > 0 {
		msg := fmt.Sprintf("%d adopted processes are no longer followed to their reap: the tracker holds %d at most", n, m.tr.Capacity())
		m.cfg.Printer.Warn(output.WarningLine(now, msg), "%s", msg)
	}
	if n := st.GoneUntaken - m.warned.GoneUntaken; n > 0 {
		msg := fmt.Sprintf("%d adopted processes found gone keep their kernel entries: more than %d at once", n, m.tr.Capacity())
		m.cfg.Printer.Warn(output.WarningLine(now, msg), "%s", msg)
	}
	if n := st.EarlyExitsDropped - m.warned.EarlyExitsDropped; n > 0 {
		msg := fmt.Sprintf("%d exit records came without their adoption record (lost, or more than the tracker keeps waiting): those exits are not timed", n)
		m.cfg.Printer.Warn(output.WarningLine(now, msg), "%s", msg)
	}
	m.warned = st
}

// tick checks often enough that a record is at most a tenth of
// --zombie-after late (between 10ms and 1s).
func (m *Monitor) tick() {
	defer m.wg.Done()
	every := min(max(m.tr.ZombieAfter()/10, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case now := <-t.C:
			m.Check(now)
		}
	}
}

// ProcState reads what /proc shows of a process now.
func ProcState(id reaping.ID) reaping.State {
	st, err := procfs.ReadStat(int(id.PID))
	switch {
	case err != nil || !st.ID.Same(id):
		return reaping.StateGone
	case st.State == "Z":
		return reaping.StateZombie
	}
	return reaping.StateAlive
}

// Ps answers `adoptwatch ps`. What it lists is checked against /proc first
// (outside the lock: the record loop goes on): a process gone is not
// listed, and dropped unless its records come.
func (m *Monitor) Ps(req control.Request) [][]byte {
	m.mu.Lock()
	all := m.tr.Snapshot()
	m.mu.Unlock()
	entries := all[:0]
	var gone []procfs.ID
	for _, e := range all {
		if m.cfg.Probe(e.Process.ID) != reaping.StateGone {
			entries = append(entries, e)
		} else {
			gone = append(gone, e.Process.ID)
		}
	}
	now := time.Now()
	if len(gone) > 0 {
		m.mu.Lock()
		for _, id := range gone {
			m.tr.Suspect(id, now)
		}
		m.mu.Unlock()
	}
	if req.JSON {
		return output.PsLines(now, entries)
	}
	return output.PsText(now, entries)
}

// State is the metrics' view: the tracker's counts and the unreaped zombies
// per reaper kind.
func (m *Monitor) State() (reaping.Stats, map[events.Reaper]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tr.Stats(), m.tr.UnreapedByKind()
}

// Close stops the ticker. Nothing is pending: records are printed as they come.
func (m *Monitor) Close() error {
	select {
	case <-m.done:
	default:
		close(m.done)
	}
	m.wg.Wait()
	return nil
}
