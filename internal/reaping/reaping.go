// Package reaping follows each adopted process to its end and says whether its
// new parent (its reaper) reaps it: an adoptee that has exited but is still
// unreaped after ZombieAfter is reported once as "unreaped"; when it is
// finally reaped, "reaped" says after how long. It also keeps the list of
// adopted processes still alive or unreaped, for `adoptwatch ps`.
//
// A reaper that reaps within ZombieAfter produces neither event: a zombie that
// lives for a few milliseconds between exit and wait() is normal.
//
// The Tracker is pure logic: the caller feeds it adoptions, exits and reaps
// (from the kernel's records) and the time, so it is tested with a fake clock.
// It is bounded: past Capacity the oldest entries are evicted and counted.
// It is not safe for concurrent use.
package reaping

import (
	"container/heap"
	"container/list"
	"slices"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// DefaultZombieAfter is how long an adopted zombie may wait for its reaper
// before it is reported (--zombie-after).
const DefaultZombieAfter = 10 * time.Second

// DefaultCapacity bounds the processes followed at once.
const DefaultCapacity = 1 << 16

// ID is a process's identity. Start times are compared at /proc's precision
// (procfs.ID.Same), so a process read from /proc at start-up matches the same
// process in a kernel record.
type ID = procfs.ID

// Reaper is the process that adopted an entry, and its kind.
type Reaper struct {
	events.Process
	Kind events.Reaper
}

// Origin says how an entry came to be followed.
type Origin string

const (
	// OriginAdopted: adoptwatch saw the adoption.
	OriginAdopted Origin = "adopted"
	// OriginPreexisting: the process was already a child of a reaper when
	// adoptwatch started. Whether that reaper started it or adopted it, and
	// from whom, is unknown.
	OriginPreexisting Origin = "preexisting"
)

// Entry is one followed process, as Snapshot and the events show it.
type Entry struct {
	Process events.Process // the adopted process
	Origin  Origin
	Reaper  Reaper
	// Adoption facts; zero for OriginPreexisting.
	Adopted         time.Time
	From            events.Process // the previous parent
	Pattern         events.Pattern
	Lineage         []events.Step
	LineageComplete bool
	Hook            events.Hook
	// Context is where the adoption's processes were (units, containers),
	// as the adoption record said; nil when unknown.
	Context *events.Context

	// Exited is when the process exited (zero: alive). For a process that
	// was already a zombie when it was first seen, it is that moment: the
	// wait is then at least what is reported.
	Exited     time.Time
	ExitStatus uint32 // wait(2) status, when the exit was seen
	// Reported: an unreaped event was emitted for it.
	Reported bool
}

// Unreaped reports an adopted zombie its reaper has not reaped within ZombieAfter.
type Unreaped struct {
	Time   time.Time // when the tracker noticed
	Zombie Entry
	Waited time.Duration // since it exited
	// Held is how many adopted zombies its reaper has now left unreaped past
	// ZombieAfter (this one included), and Oldest the longest wait among them.
	Held   int
	Oldest time.Duration
}

// Reaped says that an adopted zombie has been reaped. It is a "reaped" event
// only if Reported: the zombie had been reported Unreaped.
type Reaped struct {
	Time     time.Time // when it was reaped
	Zombie   Entry
	Waited   time.Duration // from exit to reap
	Held     int           // zombies its reaper still leaves unreaped past ZombieAfter
	Reported bool
}

// Stats count what the tracker did and what its bound dropped.
type Stats struct {
	Followed      int    // entries now
	Zombies       int    // exited, not yet reaped
	Unreaped      int    // reported unreaped, not yet reaped (the gauge)
	Adoptions     uint64 // OnAdopt calls that followed a process
	UnreapedTotal uint64 // unreaped events emitted
	ReapedTotal   uint64 // reaped events emitted
	Evicted       uint64 // entries dropped because Capacity was reached
	// Vanished counts processes whose exit was seen but which were found gone
	// without their reap record (a lost record). No event is emitted for them.
	Vanished uint64
	// Unfollowed counts processes found gone whose exit was never seen: the
	// kernel never followed them (pre-existing ones), or they were reaped
	// before it could (an adoption and a reap racing in the kernel).
	Unfollowed uint64
	// Replaced counts entries dropped because their pid was seen again with
	// another start time: the old process was reaped unseen.
	Replaced uint64
	// GoneUntaken counts processes found gone that TakeGone never returned
	// (more than Capacity between two calls).
	GoneUntaken uint64
	// EarlyExitsDropped counts exit records that came before their process's
	// adoption record and were dropped: no adoption came within VerifyAfter,
	// or more than maxEarlyExits were waiting.
	EarlyExitsDropped uint64
	// ExitUnseen counts followed processes reaped whose exit was not seen
	// (adopted while exiting): no delay to tell, and no unreaped report
	// could have been made for them.
	ExitUnseen uint64
}

// Config configures a Tracker.
type Config struct {
	ZombieAfter time.Duration // <= 0: DefaultZombieAfter
	Capacity    int           // <= 0: DefaultCapacity
	// Probe, if set, says what /proc shows of a process now. It is asked
	// before a zombie is reported, and once about each adopted process
	// VerifyAfter after its adoption: a process gone without its records is
	// dropped (counted as Vanished or Unfollowed) after a grace period for
	// records still on their way, instead of being followed for ever; one
	// that is a zombie although its exit was not seen (adopted while
	// exiting: the kernel sends no exit record then) is taken as exited at
	// its adoption. nil trusts the records alone.
	Probe func(ID) State
	// VerifyAfter is when Probe is asked about a new adoptee, and the grace
	// a process found gone has for its records to arrive (<= 0: 1s).
	VerifyAfter time.Duration
}

// Tracker follows adopted processes. Create it with New.
type Tracker struct {
	cfg     Config
	byPID   map[uint32]*entry
	order   *list.List // *entry, oldest first: eviction order
	due     dueHeap    // zombies not yet reported, by exit time
	reapers map[reaperKey]*reaperState
	seen    map[reaperKey]struct{} // reapers FirstSeen has reported
	verify  []pending              // adoptees to check once, oldest first (bounded by Capacity)
	suspect []pending              // entries found gone, dropped at due unless their records came
	dropped []ID                   // adopted entries gone without their reap record (TakeGone)
	early   earlyExits
	stats   Stats
}

// maxEarlyExits bounds the exits kept for an adoption still to come.
const maxEarlyExits = 1024

// earlyExits keeps exit records that came before their process's adoption
// record, until it comes. With the exit-walk hook the kernel starts to
// follow a child before it sends the child's adoption (bpf/adopt_exit_walk.bpf.h):
// a child exiting at that moment on another CPU may get its exit record into
// the ring first.
type earlyExits struct {
	byPID map[uint32]earlyExit
	order []earlyExit // oldest first: expiry and eviction order
}

type earlyExit struct {
	id     ID
	at     time.Time
	status uint32
	until  time.Time // dropped then: its adoption is not coming
}

// keep stores an exit; it returns how many the bound dropped.
func (x *earlyExits) keep(ex earlyExit) (dropped uint64) {
	if x.byPID == nil {
		x.byPID = map[uint32]earlyExit{}
	}
	// The order holds taken exits too until they expire: bound it, not the map.
	for len(x.order) >= maxEarlyExits {
		if x.forget(x.order[0]) {
			dropped++
		}
		x.order = x.order[1:]
	}
	x.byPID[ex.id.PID] = ex
	x.order = append(x.order, ex)
	return dropped
}

// take returns and forgets the exit kept for id, if any.
func (x *earlyExits) take(id ID) (earlyExit, bool) {
	ex, ok := x.byPID[id.PID]
	if !ok || !ex.id.Same(id) {
		return earlyExit{}, false
	}
	delete(x.byPID, id.PID)
	return ex, true
}

// expire forgets the exits whose adoption did not come by now.
func (x *earlyExits) expire(now time.Time) (dropped uint64) {
	for len(x.order) > 0 && !x.order[0].until.After(now) {
		if x.forget(x.order[0]) {
			dropped++
		}
		x.order = x.order[1:]
	}
	return dropped
}

// forget deletes ex if it is still the one kept for its pid.
func (x *earlyExits) forget(ex earlyExit) bool {
	if cur, ok := x.byPID[ex.id.PID]; ok && cur.until.Equal(ex.until) && cur.id == ex.id {
		delete(x.byPID, ex.id.PID)
		return true
	}
	return false
}

type entry struct {
	Entry
	id      ID
	elem    *list.Element
	heapIdx int // index in due, -1 when not there
}

// State is what /proc shows of a process.
type State int

const (
	StateGone   State = iota // no such process (or its pid names another)
	StateAlive               // running
	StateZombie              // exited, not reaped
)

// pending is an entry to check at due.
type pending struct {
	e   *entry
	due time.Time
}

// reaperState holds, per reaper, the zombies reported unreaped and not reaped.
type reaperState struct {
	kind     events.Reaper
	reported map[*entry]struct{}
}

// New returns an empty Tracker.
func New(cfg Config) *Tracker {
	if cfg.ZombieAfter <= 0 {
		cfg.ZombieAfter = DefaultZombieAfter
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.VerifyAfter <= 0 {
		cfg.VerifyAfter = time.Second
	}
	return &Tracker{cfg: cfg, byPID: map[uint32]*entry{}, order: list.New(), reapers: map[reaperKey]*reaperState{},
		seen: map[reaperKey]struct{}{}}
}

// ZombieAfter is the configured threshold.
func (t *Tracker) ZombieAfter() time.Duration { return t.cfg.ZombieAfter }

// Capacity is the configured bound.
func (t *Tracker) Capacity() int { return t.cfg.Capacity }

// lookup finds the entry for id. An entry with the same pid and another start
// time is a process reaped unseen (its pid was reused): it is dropped.
func (t *Tracker) lookup(id ID) *entry {
	e := t.byPID[id.PID]
	if e == nil {
		return nil
	}
	if !e.id.Same(id) {
		if id.Start > e.id.Start { // a newer process holds the pid now
			t.remove(e)
			t.stats.Replaced++
		}
		return nil
	}
	return e
}

// OnAdopt follows an adopted process. An adoption of a process already
// followed (its reaper exited, so it was adopted again) moves it to the new
// reaper, keeping when it exited.
func (t *Tracker) OnAdopt(a *events.Adoption) {
	id := a.Child.ID
	e := t.lookup(id)
	if e == nil {
		e = t.insert(id)
	}
	e.Process = a.Child // the kernel's identity (a seeded entry had /proc's)
	t.setReaper(e, Reaper{a.NewParent, a.Reaper})
	e.Origin = OriginAdopted
	e.Adopted = a.Time
	e.From = a.PrevParent
	e.Pattern = events.DaemonPattern(a.Lineage)
	e.Lineage = a.Lineage
	e.Context = a.Context
	e.LineageComplete = a.LineageComplete
	e.Hook = a.Hook
	t.stats.Adoptions++
	if ex, ok := t.early.take(id); ok && e.Exited.IsZero() {
		t.exited(e, ex.at, ex.status)
	}
	if a.Zombie && e.Exited.IsZero() {
		t.exited(e, a.Time, 0)
	}
	if t.cfg.Probe != nil {
		t.verify = bounded(t.verify, pending{e, a.Time.Add(t.cfg.VerifyAfter)}, t.cfg.Capacity)
	}
}

// maxSeenReapers bounds FirstSeen's memory: past it, it starts afresh, and a
// reaper may be reported first-seen again (Seed ignores what it follows).
const maxSeenReapers = 4096

// FirstSeen reports whether r is a reaper not seen before, so that the caller
// can Seed its children that predate adoptwatch (ChildrenFromProc).
func (t *Tracker) FirstSeen(r Reaper) bool {
	key := reaperID(r)
	if _, ok := t.seen[key]; ok {
		return false
	}
	if len(t.seen) >= maxSeenReapers {
		clear(t.seen)
	}
	t.seen[key] = struct{}{}
	return true
}

// Preexisting is a process that was a child of a reaper when adoptwatch started.
type Preexisting struct {
	Process events.Process
	Reaper  Reaper
	Zombie  bool // already exited, unreaped
}

// Seed follows processes that were already children of a reaper at start-up;
// now is the start-up time (a zombie's wait is counted from it).
func (t *Tracker) Seed(now time.Time, procs []Preexisting) {
	for _, p := range procs {
		id := p.Process.ID
		if t.lookup(id) != nil {
			continue
		}
		e := t.insert(id)
		e.Process = p.Process
		e.Origin = OriginPreexisting
		t.setReaper(e, p.Reaper)
		if p.Zombie {
			t.exited(e, now, 0)
		}
	}
}

// OnExit notes that a process exited (its last thread). The exit of a
// process not followed yet is kept a while (VerifyAfter) for its adoption
// record, which may come after it.
func (t *Tracker) OnExit(id ID, at time.Time, status uint32) {
	e := t.lookup(id)
	if e == nil {
		t.stats.EarlyExitsDropped += t.early.keep(earlyExit{id: id, at: at, status: status, until: at.Add(t.cfg.VerifyAfter)})
		return
	}
	if e.Exited.IsZero() {
		t.exited(e, at, status)
	}
}

// OnReaped notes that a process was reaped (released by the kernel). For a
// followed process that had exited it returns how long it waited (ok); only
// if r.Reported (it had been reported unreaped) is that a "reaped" event: a
// reaper that reaps within ZombieAfter produces none, but its delay still
// counts for the reaped-after histogram.
func (t *Tracker) OnReaped(id ID, at time.Time) (r Reaped, ok bool) {
	e := t.lookup(id)
	if e == nil {
		return Reaped{}, false
	}
	rs := t.reapers[reaperID(e.Reaper)]
	snap := e.Entry // e goes now: nothing changes its lineage any more (snapshot copies it for the living)
	t.remove(e)
	if snap.Exited.IsZero() {
		t.stats.ExitUnseen++
		return Reaped{}, false // the exit was not seen: no delay to tell
	}
	r = Reaped{Time: at, Zombie: snap, Waited: max(at.Sub(snap.Exited), 0), Reported: snap.Reported}
	if rs != nil {
		r.Held = len(rs.reported)
	}
	if r.Reported {
		t.stats.ReapedTotal++
	}
	return r, true
}

// Gone drops a followed process found gone without its records (counted
// as Vanished or Unfollowed). A process not followed is ignored.
func (t *Tracker) Gone(id ID) {
	if e := t.lookup(id); e != nil {
		t.gone(e)
	}
}

func (t *Tracker) gone(e *entry) {
	if e.Origin == OriginAdopted && !e.Exited.IsZero() {
		t.stats.Vanished++
	} else {
		t.stats.Unfollowed++
	}
	if e.Origin == OriginAdopted {
		// The kernel followed it and saw no release: its entry there must go too.
		if len(t.dropped) >= t.cfg.Capacity {
			t.dropped = t.dropped[1:]
			t.stats.GoneUntaken++
		}
		t.dropped = append(t.dropped, e.Process.ID)
	}
	t.remove(e)
}

// TakeGone returns, once each, the adopted processes dropped since the last
// call because they were found gone without their reap record, with the
// start time of the kernel's records: the caller deletes the kernel's entries
// for them (the kernel never saw them released).
func (t *Tracker) TakeGone() []ID {
	out := t.dropped
	t.dropped = nil
	return out
}

// Tick reports the zombies that have waited longer than ZombieAfter by now:
// one Unreaped each, once. Events of one Tick carry the counts after all of
// them were noted, so twelve zombies of one reaper due together each say 12.
func (t *Tracker) Tick(now time.Time) []Unreaped {
	t.stats.EarlyExitsDropped += t.early.expire(now)
	t.checkNew(now)
	t.dropSuspects(now)
	var due []*entry
	for t.due.Len() > 0 && !t.due[0].Exited.Add(t.cfg.ZombieAfter).After(now) {
		e := heap.Pop(&t.due).(*entry)
		if t.cfg.Probe != nil && t.cfg.Probe(e.id) == StateGone {
			t.suspectEntry(e, now) // reaped: its record may be on its way
			continue
		}
		e.Reported = true
		t.reaperOf(e).reported[e] = struct{}{}
		due = append(due, e)
	}
	out := make([]Unreaped, 0, len(due))
	for _, e := range due {
		held, oldest := t.held(t.reapers[reaperID(e.Reaper)], now)
		out = append(out, Unreaped{Time: now, Zombie: e.snapshot(), Waited: now.Sub(e.Exited), Held: held, Oldest: oldest})
	}
	t.stats.UnreapedTotal += uint64(len(out))
	return out
}

// checkNew probes the adoptees due for their check, a second after their
// adoption and a second after their exit. Gone: its records should have
// come; unless they do within the grace period, it is dropped (its reap
// record lost, or it was reaped before the kernel could follow it). A zombie
// although its exit was never seen: adopted while exiting, so the kernel
// sent no exit record; it waits from its adoption.
func (t *Tracker) checkNew(now time.Time) {
	n := 0
	for ; n < len(t.verify) && !t.verify[n].due.After(now); n++ {
		e := t.verify[n].e
		if t.byPID[e.id.PID] != e {
			continue // reaped or replaced
		}
		switch t.cfg.Probe(e.id) {
		case StateGone:
			t.suspectEntry(e, now)
		case StateZombie:
			if e.Exited.IsZero() {
				t.exited(e, e.Adopted, 0)
			}
		}
	}
	t.verify = t.verify[n:]
}

// Suspect notes that a followed process was found gone (by ps): unless its
// records arrive within the grace period, it is dropped.
func (t *Tracker) Suspect(id ID, now time.Time) {
	if e := t.lookup(id); e != nil {
		t.suspectEntry(e, now)
	}
}

func (t *Tracker) suspectEntry(e *entry, now time.Time) {
	t.suspect = bounded(t.suspect, pending{e, now.Add(t.cfg.VerifyAfter)}, t.cfg.Capacity)
}

// dropSuspects drops the entries found gone whose records did not come.
func (t *Tracker) dropSuspects(now time.Time) {
	n := 0
	for ; n < len(t.suspect) && !t.suspect[n].due.After(now); n++ {
		if e := t.suspect[n].e; t.byPID[e.id.PID] == e {
			t.gone(e)
		}
	}
	t.suspect = t.suspect[n:]
}

// bounded appends p to a FIFO of at most max: past it, the oldest goes.
func bounded(q []pending, p pending, max int) []pending {
	if len(q) >= max {
		q = q[1:]
	}
	return append(q, p)
}

// NextDue is when the next zombie becomes due, if any is waiting: the caller
// may sleep until then instead of ticking blindly.
func (t *Tracker) NextDue() (time.Time, bool) {
	if t.due.Len() == 0 {
		return time.Time{}, false
	}
	return t.due[0].Exited.Add(t.cfg.ZombieAfter), true
}

func (t *Tracker) held(rs *reaperState, now time.Time) (int, time.Duration) {
	if rs == nil {
		return 0, 0
	}
	var oldest time.Duration
	for e := range rs.reported {
		oldest = max(oldest, now.Sub(e.Exited))
	}
	return len(rs.reported), oldest
}

// Snapshot lists every followed process, alive or unreaped, in the order they
// were adopted (pre-existing ones first).
func (t *Tracker) Snapshot() []Entry {
	out := make([]Entry, 0, len(t.byPID))
	for el := t.order.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*entry).snapshot())
	}
	slices.SortStableFunc(out, func(a, b Entry) int {
		if (a.Origin == OriginPreexisting) != (b.Origin == OriginPreexisting) {
			if a.Origin == OriginPreexisting {
				return -1
			}
			return 1
		}
		return a.Adopted.Compare(b.Adopted)
	})
	return out
}

// UnreapedByKind counts the zombies reported unreaped and not yet reaped, per
// reaper kind (the metrics' gauge).
func (t *Tracker) UnreapedByKind() map[events.Reaper]int {
	out := map[events.Reaper]int{}
	for _, rs := range t.reapers {
		if n := len(rs.reported); n > 0 {
			out[rs.kind] += n
		}
	}
	return out
}

// Stats returns the counts now.
func (t *Tracker) Stats() Stats {
	s := t.stats
	s.Followed = len(t.byPID)
	s.Unreaped = 0
	for _, rs := range t.reapers {
		s.Unreaped += len(rs.reported)
	}
	s.Zombies = 0
	for _, e := range t.byPID {
		if !e.Exited.IsZero() {
			s.Zombies++
		}
	}
	return s
}

func (t *Tracker) insert(id ID) *entry {
	for len(t.byPID) >= t.cfg.Capacity {
		t.remove(t.order.Front().Value.(*entry))
		t.stats.Evicted++
	}
	e := &entry{id: id, heapIdx: -1}
	e.elem = t.order.PushBack(e)
	t.byPID[id.PID] = e
	return e
}

func (t *Tracker) remove(e *entry) {
	t.order.Remove(e.elem)
	delete(t.byPID, e.id.PID)
	if e.heapIdx >= 0 {
		heap.Remove(&t.due, e.heapIdx)
	}
	t.unreport(e)
}

func (t *Tracker) exited(e *entry, at time.Time, status uint32) {
	e.Exited, e.ExitStatus = at, status
	heap.Push(&t.due, e)
	if t.cfg.Probe != nil { // gone a second after its exit without a reap record: the record was lost
		t.verify = bounded(t.verify, pending{e, at.Add(t.cfg.VerifyAfter)}, t.cfg.Capacity)
	}
}

// setReaper moves e to another reaper, carrying a reported zombie's count.
func (t *Tracker) setReaper(e *entry, r Reaper) {
	reported := e.Reported
	t.unreport(e)
	e.Reaper = r
	if reported {
		e.Reported = true
		t.reaperOf(e).reported[e] = struct{}{}
	}
}

func (t *Tracker) unreport(e *entry) {
	if !e.Reported {
		return
	}
	e.Reported = false
	key := reaperID(e.Reaper)
	if rs := t.reapers[key]; rs != nil {
		delete(rs.reported, e)
		if len(rs.reported) == 0 {
			delete(t.reapers, key)
		}
	}
}

func (t *Tracker) reaperOf(e *entry) *reaperState {
	key := reaperID(e.Reaper)
	rs := t.reapers[key]
	if rs == nil {
		rs = &reaperState{kind: e.Reaper.Kind, reported: map[*entry]struct{}{}}
		t.reapers[key] = rs
	}
	return rs
}

// reaperKey identifies a reaper at /proc's precision, as ID.same compares.
type reaperKey struct {
	pid   uint32
	ticks time.Duration
}

func reaperID(r Reaper) reaperKey { return reaperKey{r.PID, r.Start / procfs.ClockTick} }

func (e *entry) snapshot() Entry {
	out := e.Entry
	out.Lineage = slices.Clone(e.Lineage)
	return out
}

// dueHeap orders zombies not yet reported by exit time.
type dueHeap []*entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].Exited.Before(h[j].Exited) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}
