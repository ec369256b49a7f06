package reaping

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// clock is a fake clock: tests move it by hand.
type clock struct{ now time.Time }

func newClock() *clock                             { return &clock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)} }
func (c *clock) advance(d time.Duration) time.Time { c.now = c.now.Add(d); return c.now }

var reaper = events.Process{ID: procfs.ID{PID: 4242, Start: 5 * time.Second}, Comm: "node"}
var otherReaper = events.Process{ID: procfs.ID{PID: 77, Start: 3 * time.Second}, Comm: "tini"}

// adoption builds a double-fork adoption of pid by r at time at.
func adoption(pid uint32, r events.Process, kind events.Reaper, at time.Time) *events.Adoption {
	start := time.Duration(pid) * time.Second
	child := events.Process{ID: procfs.ID{PID: pid, Start: start}, Comm: fmt.Sprintf("d%d", pid), SID: pid - 1}
	middle := events.Process{ID: procfs.ID{PID: pid - 1, Start: start - time.Millisecond}, Comm: "mid", SID: pid - 1}
	return &events.Adoption{
		Time: at, Hook: events.HookExitWalk, Child: child, PrevParent: middle, NewParent: r, Reaper: kind,
		Lineage: []events.Step{
			{ID: procfs.ID{PID: 900}, Comm: "bash", SID: 900, Source: "proc"},
			{ID: procfs.ID{PID: middle.PID, Start: middle.Start}, Comm: "mid", SID: middle.SID, Setsid: true, Source: "kernel"},
			{ID: procfs.ID{PID: pid, Start: start}, Comm: child.Comm, SID: middle.SID, Source: "kernel"},
		},
		LineageComplete: true,
	}
}

func idOf(a *events.Adoption) ID { return a.Child.ID }

func TestUnreapedOnceAfterThresholdThenReaped(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: 10 * time.Second})
	a := adoption(1000, reaper, events.ReaperSubreaper, c.now)
	tr.OnAdopt(a)
	c.advance(time.Second)
	tr.OnExit(idOf(a), c.now, 0)
	exitedAt := c.now

	if got := tr.Tick(c.advance(9 * time.Second)); len(got) != 0 {
		t.Fatalf("reported before zombie-after: %+v", got)
	}
	if at, ok := tr.NextDue(); !ok || !at.Equal(exitedAt.Add(10*time.Second)) {
		t.Fatalf("NextDue = %v %v, want %v", at, ok, exitedAt.Add(10*time.Second))
	}
	got := tr.Tick(c.advance(2 * time.Second))
	if len(got) != 1 {
		t.Fatalf("want one unreaped event, got %d", len(got))
	}
	u := got[0]
	if u.Zombie.Process.PID != 1000 || u.Zombie.Reaper.PID != 4242 || u.Zombie.Reaper.Comm != "node" ||
		u.Zombie.Reaper.Kind != events.ReaperSubreaper {
		t.Errorf("wrong zombie or reaper: %+v", u.Zombie)
	}
	if u.Waited != 11*time.Second || u.Held != 1 || u.Oldest != 11*time.Second {
		t.Errorf("waited %v held %d oldest %v, want 11s 1 11s", u.Waited, u.Held, u.Oldest)
	}
	if u.Zombie.Pattern != events.PatternDoubleFork || u.Zombie.From.PID != 999 || len(u.Zombie.Lineage) != 3 {
		t.Errorf("adoption facts lost: %+v", u.Zombie)
	}
	// Exactly once.
	if again := tr.Tick(c.advance(time.Minute)); len(again) != 0 {
		t.Fatalf("reported twice: %+v", again)
	}
	if s := tr.Stats(); s.Unreaped != 1 || s.UnreapedTotal != 1 || s.Zombies != 1 {
		t.Errorf("stats %+v", s)
	}
	if k := tr.UnreapedByKind(); k[events.ReaperSubreaper] != 1 || len(k) != 1 {
		t.Errorf("by kind %v", k)
	}

	r, ok := tr.OnReaped(idOf(a), c.advance(time.Second))
	if !ok || !r.Reported {
		t.Fatal("no reaped event for a reported zombie")
	}
	if want := c.now.Sub(exitedAt); r.Waited != want || r.Held != 0 || r.Zombie.Process.PID != 1000 {
		t.Errorf("reaped %+v, want waited %v held 0", r, want)
	}
	if s := tr.Stats(); s.Unreaped != 0 || s.Followed != 0 || s.ReapedTotal != 1 {
		t.Errorf("stats after reap %+v", s)
	}
	if k := tr.UnreapedByKind(); len(k) != 0 {
		t.Errorf("gauge not back to zero: %v", k)
	}
}

// A reaper that reaps within zombie-after produces neither event.
func TestPromptReaperProducesNothing(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: 10 * time.Second})
	a := adoption(1000, reaper, events.ReaperInit, c.now)
	tr.OnAdopt(a)
	tr.OnExit(idOf(a), c.advance(time.Second), 0)
	r, ok := tr.OnReaped(idOf(a), c.advance(9*time.Second))
	if !ok || r.Reported {
		t.Fatalf("a zombie reaped in time: want its delay and no event, got %+v %v", r, ok)
	}
	if r.Waited != 9*time.Second {
		t.Errorf("waited %v, want 9s", r.Waited)
	}
	if got := tr.Tick(c.advance(time.Hour)); len(got) != 0 {
		t.Fatalf("unreaped event for a reaped process: %+v", got)
	}
	if _, ok := tr.NextDue(); ok {
		t.Error("a reaped zombie is still due")
	}
	if s := tr.Stats(); s.Followed != 0 || s.UnreapedTotal != 0 || s.ReapedTotal != 0 {
		t.Errorf("stats %+v", s)
	}
}

// Zombies of one reaper due together each carry the reaper's final count;
// another reaper's zombies are counted apart.
func TestHeldCountsPerReaper(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: 5 * time.Second})
	var ids []ID
	for i := range 12 {
		a := adoption(uint32(2000+10*i), reaper, events.ReaperNS, c.now)
		tr.OnAdopt(a)
		tr.OnExit(idOf(a), c.advance(time.Millisecond), 0)
		ids = append(ids, idOf(a))
	}
	b := adoption(5000, otherReaper, events.ReaperSubreaper, c.now)
	tr.OnAdopt(b)
	tr.OnExit(idOf(b), c.now, 0)

	got := tr.Tick(c.advance(40 * time.Second))
	if len(got) != 13 {
		t.Fatalf("want 13 events, got %d", len(got))
	}
	for _, u := range got {
		switch u.Zombie.Reaper.PID {
		case reaper.PID:
			if u.Held != 12 || u.Oldest < 40*time.Second {
				t.Errorf("node's zombie %d: held %d oldest %v", u.Zombie.Process.PID, u.Held, u.Oldest)
			}
		case otherReaper.PID:
			if u.Held != 1 {
				t.Errorf("tini's zombie: held %d", u.Held)
			}
		}
	}
	// Reported oldest first (by exit time).
	if got[0].Zombie.Process.PID != 2000 {
		t.Errorf("first reported %d, want the first to exit (2000)", got[0].Zombie.Process.PID)
	}
	k := tr.UnreapedByKind()
	if k[events.ReaperNS] != 12 || k[events.ReaperSubreaper] != 1 {
		t.Errorf("by kind %v", k)
	}
	r, ok := tr.OnReaped(ids[3], c.advance(time.Second))
	if !ok || !r.Reported || r.Held != 11 {
		t.Errorf("reaped %+v %v: want held 11", r, ok)
	}
}

// Events due at different times are reported as each comes due, even if exits
// arrive out of order (records from several CPUs).
func TestOutOfOrderExits(t *testing.T) {
	c := newClock()
	base := c.now
	tr := New(Config{ZombieAfter: 10 * time.Second})
	a1 := adoption(100, reaper, events.ReaperInit, base)
	a2 := adoption(200, reaper, events.ReaperInit, base)
	tr.OnAdopt(a1)
	tr.OnAdopt(a2)
	tr.OnExit(idOf(a1), base.Add(5*time.Second), 0)
	tr.OnExit(idOf(a2), base.Add(2*time.Second), 0)
	got := tr.Tick(base.Add(12 * time.Second))
	if len(got) != 1 || got[0].Zombie.Process.PID != 200 {
		t.Fatalf("want only 200 due at +12s, got %+v", got)
	}
	got = tr.Tick(base.Add(15 * time.Second))
	if len(got) != 1 || got[0].Zombie.Process.PID != 100 || got[0].Held != 2 {
		t.Fatalf("want 100 due at +15s with held 2, got %+v", got)
	}
}

// A process followed under one pid that shows up with another start time was
// reaped unseen: the old entry must not be reported.
func TestPidReuse(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: time.Second})
	a := adoption(300, reaper, events.ReaperInit, c.now)
	tr.OnAdopt(a)
	tr.OnExit(idOf(a), c.now, 0)
	// An exit for the same pid with another start time is someone else's
	// (a third process: not the one adopted next).
	tr.OnExit(ID{PID: 300, Start: a.Child.Start + 2*time.Hour}, c.now, 0)
	b := adoption(300, reaper, events.ReaperInit, c.now)
	b.Child.Start = a.Child.Start + time.Hour
	tr.OnAdopt(b)
	if s := tr.Stats(); s.Replaced != 1 || s.Followed != 1 || s.Zombies != 0 {
		t.Fatalf("stats %+v", s)
	}
	if got := tr.Tick(c.advance(time.Minute)); len(got) != 0 {
		t.Fatalf("the replaced process was reported: %+v", got)
	}
	// A reap for the old identity does not touch the new process.
	if _, ok := tr.OnReaped(idOf(a), c.now); ok || tr.Stats().Followed != 1 {
		t.Fatal("a stale reap removed the new process")
	}
}

// /proc's start time has clock-tick precision: a process seeded from /proc
// matches the kernel's nanosecond start time.
func TestSeededMatchesKernelIdentity(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: time.Second})
	kernelStart := 7*time.Second + 123456789*time.Nanosecond
	procStart := kernelStart / procfs.ClockTick * procfs.ClockTick
	tr.Seed(c.now, []Preexisting{{
		Process: events.Process{ID: procfs.ID{PID: 50, Start: procStart}, Comm: "old"},
		Reaper:  Reaper{events.Process{ID: procfs.ID{PID: 1}, Comm: "init"}, events.ReaperInit},
	}})
	tr.OnExit(ID{PID: 50, Start: kernelStart}, c.advance(time.Second), 0)
	got := tr.Tick(c.advance(2 * time.Second))
	if len(got) != 1 || got[0].Zombie.Origin != OriginPreexisting || !got[0].Zombie.Adopted.IsZero() {
		t.Fatalf("want the pre-existing child reported as such: %+v", got)
	}
	if r, ok := tr.OnReaped(ID{PID: 50, Start: kernelStart}, c.now); !ok || !r.Reported {
		t.Fatal("reap by kernel identity not matched")
	}
}

// A zombie seeded at start-up waits from start-up on.
func TestSeededZombie(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: 10 * time.Second})
	tr.Seed(c.now, []Preexisting{{Process: events.Process{ID: procfs.ID{PID: 60, Start: time.Second}},
		Reaper: Reaper{reaper, events.ReaperSubreaper}, Zombie: true}})
	if got := tr.Tick(c.advance(9 * time.Second)); len(got) != 0 {
		t.Fatal("too early")
	}
	if got := tr.Tick(c.advance(time.Second)); len(got) != 1 || got[0].Waited != 10*time.Second {
		t.Fatalf("got %+v", got)
	}
}

// An adoption of a process already a zombie starts its wait then.
func TestAdoptedZombie(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: 10 * time.Second})
	a := adoption(400, reaper, events.ReaperSubreaper, c.now)
	a.Zombie = true
	tr.OnAdopt(a)
	if got := tr.Tick(c.advance(10 * time.Second)); len(got) != 1 {
		t.Fatalf("adopted zombie not reported: %+v", got)
	}
}

// When a reaper exits its zombies are adopted again: the count moves with them.
func TestReadoptedZombieMovesReaper(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: time.Second})
	a := adoption(500, reaper, events.ReaperSubreaper, c.now)
	tr.OnAdopt(a)
	tr.OnExit(idOf(a), c.now, 0)
	exited := c.now
	if got := tr.Tick(c.advance(2 * time.Second)); len(got) != 1 {
		t.Fatal("not reported")
	}
	again := adoption(500, otherReaper, events.ReaperInit, c.advance(time.Second))
	again.Zombie = true
	tr.OnAdopt(again)
	if k := tr.UnreapedByKind(); k[events.ReaperInit] != 1 || k[events.ReaperSubreaper] != 0 {
		t.Fatalf("count did not move: %v", k)
	}
	if got := tr.Tick(c.advance(time.Minute)); len(got) != 0 {
		t.Fatalf("reported again after re-adoption: %+v", got)
	}
	r, ok := tr.OnReaped(idOf(a), c.advance(time.Second))
	if !ok || !r.Reported || r.Zombie.Reaper.PID != otherReaper.PID || r.Waited != c.now.Sub(exited) {
		t.Fatalf("reaped %+v %v", r, ok)
	}
}

// probeOf is a fake /proc: gone for the pids in gone, zombie for those in zombie.
func probeOf(gone, zombie map[uint32]bool) func(ID) State {
	return func(id ID) State {
		switch {
		case gone[id.PID]:
			return StateGone
		case zombie[id.PID]:
			return StateZombie
		}
		return StateAlive
	}
}

// A zombie found gone when due is not reported; unless its reap record comes
// within the grace period, it is dropped as vanished.
func TestVanishedZombieNotReported(t *testing.T) {
	c := newClock()
	gone := map[uint32]bool{600: true, 650: true}
	tr := New(Config{ZombieAfter: time.Second, VerifyAfter: time.Second, Probe: probeOf(gone, nil)})
	for _, pid := range []uint32{600, 650, 700} {
		a := adoption(pid, reaper, events.ReaperInit, c.now)
		tr.OnAdopt(a)
		tr.OnExit(idOf(a), c.now, 0)
	}
	got := tr.Tick(c.advance(2 * time.Second))
	if len(got) != 1 || got[0].Zombie.Process.PID != 700 {
		t.Fatalf("got %+v", got)
	}
	// 650's reap record was on its way: it arrives within the grace period.
	if r, ok := tr.OnReaped(ID{PID: 650, Start: 650 * time.Second}, c.advance(100*time.Millisecond)); !ok || r.Reported {
		t.Fatalf("a record within the grace period: %+v %v", r, ok)
	}
	tr.Tick(c.advance(time.Second))
	if s := tr.Stats(); s.Vanished != 1 || s.Followed != 1 || s.Unfollowed != 0 {
		t.Errorf("stats %+v: want 600 vanished, 650 reaped, 700 followed", s)
	}
}

// An adoptee gone before the kernel could follow it (no exit, no reap
// record will come) is found by its one check and dropped; one alive, or
// one whose exit was seen, is left to its records.
func TestNewAdopteeChecked(t *testing.T) {
	c := newClock()
	gone, zombie := map[uint32]bool{}, map[uint32]bool{}
	tr := New(Config{ZombieAfter: 10 * time.Second, VerifyAfter: time.Second, Probe: probeOf(gone, zombie)})
	adoptedAt := c.now
	for _, pid := range []uint32{100, 200, 300, 400} {
		tr.OnAdopt(adoption(pid, reaper, events.ReaperSubreaper, c.now))
	}
	tr.OnExit(ID{PID: 300, Start: 300 * time.Second}, c.now, 0)
	gone[100], gone[300], zombie[400] = true, true, true
	tr.Tick(c.advance(500 * time.Millisecond))
	if s := tr.Stats(); s.Followed != 4 || s.Zombies != 1 {
		t.Fatalf("checked before VerifyAfter: %+v", s)
	}
	tr.Tick(c.advance(600 * time.Millisecond)) // 100 gone: suspect; 400 a zombie whose exit was unseen
	if s := tr.Stats(); s.Followed != 4 || s.Zombies != 2 {
		t.Fatalf("stats %+v: want 100 under suspicion, 400 taken as exited", s)
	}
	tr.Tick(c.advance(1100 * time.Millisecond))
	if s := tr.Stats(); s.Followed != 2 || s.Unfollowed != 1 || s.Vanished != 1 {
		t.Fatalf("stats %+v: want 100 dropped as unfollowed, 300 (exit seen, then gone) as vanished", s)
	}
	gone[200] = true
	got := tr.Tick(adoptedAt.Add(10 * time.Second)) // 400 waits from its adoption
	if len(got) != 1 || got[0].Zombie.Process.PID != 400 || got[0].Waited != 10*time.Second {
		t.Fatalf("the zombie adopted while exiting: %+v", got)
	}
	tr.Tick(c.advance(time.Hour)) // 200 was checked once only: left to its records
	if s := tr.Stats(); s.Followed != 2 || s.Vanished != 1 || s.Unfollowed != 1 {
		t.Fatalf("stats %+v: want 200 and 400 kept, 300 vanished", s)
	}
	// An exit seen, then gone without its reap record: found a second after
	// the exit (and a grace period), long before it would be due.
	e := adoption(500, reaper, events.ReaperSubreaper, c.now)
	tr.OnAdopt(e)
	tr.OnExit(idOf(e), c.advance(5*time.Second), 0)
	gone[500] = true
	tr.Tick(c.advance(1100 * time.Millisecond))
	tr.Tick(c.advance(1100 * time.Millisecond))
	if s := tr.Stats(); s.Vanished != 2 || s.Followed != 2 {
		t.Fatalf("stats %+v: want 500 vanished within seconds of its exit", s)
	}
	if len(tr.verify) != 0 || len(tr.suspect) != 0 {
		t.Errorf("checks left: %d, %d", len(tr.verify), len(tr.suspect))
	}
}

// A pre-existing process the kernel never followed is not a lost record.
func TestPreexistingGoneIsUnfollowed(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: time.Second, Probe: func(ID) State { return StateGone }})
	tr.Seed(c.now, []Preexisting{{Process: events.Process{ID: procfs.ID{PID: 70, Start: time.Second}},
		Reaper: Reaper{reaper, events.ReaperInit}, Zombie: true}, {Process: events.Process{ID: procfs.ID{PID: 71, Start: time.Second}},
		Reaper: Reaper{reaper, events.ReaperInit}}})
	tr.Tick(c.advance(2 * time.Second))
	tr.Suspect(ID{PID: 71, Start: time.Second}, c.now)
	tr.Tick(c.advance(2 * time.Second))
	if s := tr.Stats(); s.Followed != 0 || s.Unfollowed != 2 || s.Vanished != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// The bound holds: the oldest entries go first, counted, and a zombie evicted
// while reported leaves the gauge.
func TestCapacityEvictsOldest(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: time.Second, Capacity: 100})
	first := adoption(10, reaper, events.ReaperInit, c.now)
	tr.OnAdopt(first)
	tr.OnExit(idOf(first), c.now, 0)
	tr.Tick(c.advance(2 * time.Second))
	if tr.Stats().Unreaped != 1 {
		t.Fatal("setup: not reported")
	}
	for i := range 1000 {
		tr.OnAdopt(adoption(uint32(100+10*i), reaper, events.ReaperInit, c.advance(time.Millisecond)))
	}
	s := tr.Stats()
	if s.Followed != 100 || s.Evicted != 901 || s.Unreaped != 0 || s.Adoptions != 1001 {
		t.Fatalf("stats %+v", s)
	}
	snap := tr.Snapshot()
	if len(snap) != 100 || snap[0].Process.PID != 100+10*900 || snap[99].Process.PID != 100+10*999 {
		t.Fatalf("snapshot kept the wrong entries: first %d last %d", snap[0].Process.PID, snap[len(snap)-1].Process.PID)
	}
	if len(tr.UnreapedByKind()) != 0 || len(tr.reapers) != 0 {
		t.Error("reaper state leaked after eviction")
	}
}

// Snapshot: alive and unreaped processes, pre-existing first, then by adoption
// time; reaped ones are gone.
func TestSnapshot(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: time.Second})
	a := adoption(800, reaper, events.ReaperSubreaper, c.advance(time.Second))
	b := adoption(810, reaper, events.ReaperSubreaper, c.advance(time.Second))
	tr.OnAdopt(b)
	tr.OnAdopt(a) // records may arrive out of order
	tr.Seed(c.now, []Preexisting{{Process: events.Process{ID: procfs.ID{PID: 20, Start: time.Second}, Comm: "old"},
		Reaper: Reaper{events.Process{ID: procfs.ID{PID: 1}, Comm: "init"}, events.ReaperInit}}})
	tr.OnExit(idOf(b), c.now, 9)
	snap := tr.Snapshot()
	if len(snap) != 3 || snap[0].Process.PID != 20 || snap[1].Process.PID != 800 || snap[2].Process.PID != 810 {
		t.Fatalf("order: %+v", snap)
	}
	if snap[2].Exited.IsZero() || snap[2].ExitStatus != 9 || !snap[1].Exited.IsZero() {
		t.Errorf("exit state wrong: %+v", snap)
	}
	snap[1].Lineage[0].Comm = "changed" // a copy: the tracker's state is untouched
	tr.OnReaped(idOf(b), c.now)
	snap = tr.Snapshot()
	if len(snap) != 2 || snap[1].Lineage[0].Comm != "bash" {
		t.Fatalf("after reap: %+v", snap)
	}
}

// A reap whose exit was not seen has no delay to tell.
func TestReapWithoutExit(t *testing.T) {
	c := newClock()
	tr := New(Config{})
	a := adoption(900, reaper, events.ReaperInit, c.now)
	tr.OnAdopt(a)
	if _, ok := tr.OnReaped(idOf(a), c.advance(time.Second)); ok || tr.Stats().Followed != 0 {
		t.Fatal("a reap without a seen exit gave a delay, or left the entry")
	}
	if s := tr.Stats(); s.ExitUnseen != 1 {
		t.Errorf("stats %+v: the unseen exit not counted", s)
	}
}

func TestDefaults(t *testing.T) {
	tr := New(Config{})
	if tr.ZombieAfter() != DefaultZombieAfter || tr.Capacity() != DefaultCapacity {
		t.Fatalf("defaults %v %d", tr.ZombieAfter(), tr.Capacity())
	}
}

func TestFirstSeen(t *testing.T) {
	tr := New(Config{})
	r := Reaper{reaper, events.ReaperSubreaper}
	if !tr.FirstSeen(r) || tr.FirstSeen(r) {
		t.Fatal("first sight not reported exactly once")
	}
	reused := r
	reused.Start += time.Hour
	if !tr.FirstSeen(reused) {
		t.Fatal("a new process on the reaper's pid is a new reaper")
	}
	for i := range maxSeenReapers + 10 {
		tr.FirstSeen(Reaper{events.Process{ID: procfs.ID{PID: uint32(10000 + i)}}, events.ReaperSubreaper})
	}
	if len(tr.seen) > maxSeenReapers {
		t.Fatalf("unbounded: %d", len(tr.seen))
	}
}

func TestGone(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: time.Second})
	a := adoption(1100, reaper, events.ReaperInit, c.now)
	tr.OnAdopt(a)
	tr.Gone(ID{PID: 1100, Start: a.Child.Start - time.Hour}) // an older process on that pid
	if tr.Stats().Followed != 1 {
		t.Fatal("Gone dropped another process's entry")
	}
	tr.Gone(idOf(a)) // alive as far as the records go: never followed by the kernel
	if s := tr.Stats(); s.Followed != 0 || s.Unfollowed != 1 || s.Vanished != 0 {
		t.Fatalf("stats %+v", s)
	}
	b := adoption(1200, reaper, events.ReaperInit, c.now)
	tr.OnAdopt(b)
	tr.OnExit(idOf(b), c.now, 0)
	tr.Gone(idOf(b)) // its exit was seen, its reap not: a lost record
	if s := tr.Stats(); s.Followed != 0 || s.Vanished != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// Adopted processes dropped as gone are handed out once each, with the
// kernel's identity, so that the kernel's entries go too; pre-existing ones
// (the kernel never followed them) and reaped ones are not.
func TestTakeGone(t *testing.T) {
	c := newClock()
	gone := map[uint32]bool{100: true, 200: true, 70: true}
	tr := New(Config{ZombieAfter: time.Hour, Capacity: 2, VerifyAfter: time.Second, Probe: probeOf(gone, nil)})
	tr.Seed(c.now, []Preexisting{{Process: events.Process{ID: procfs.ID{PID: 70, Start: time.Second}},
		Reaper: Reaper{reaper, events.ReaperInit}}})
	tr.Suspect(ID{PID: 70, Start: time.Second}, c.now)
	a, b := adoption(100, reaper, events.ReaperInit, c.now), adoption(200, reaper, events.ReaperInit, c.now)
	tr.OnAdopt(a) // evicts 70: Capacity 2
	tr.OnAdopt(b)
	tr.OnExit(idOf(a), c.now, 0)
	tr.Tick(c.advance(1100 * time.Millisecond))
	tr.Tick(c.advance(1100 * time.Millisecond))
	got := tr.TakeGone()
	if len(got) != 2 || !slices.Contains(got, idOf(a)) || !slices.Contains(got, idOf(b)) {
		t.Fatalf("TakeGone = %v, want %v and %v", got, idOf(a), idOf(b))
	}
	if again := tr.TakeGone(); len(again) != 0 {
		t.Fatalf("handed out twice: %v", again)
	}
	// A reaped adoptee is not gone; past Capacity between two calls, the
	// oldest are counted instead.
	r := adoption(300, reaper, events.ReaperInit, c.now)
	tr.OnAdopt(r)
	tr.OnReaped(idOf(r), c.now)
	for _, pid := range []uint32{400, 500, 600} {
		gone[pid] = true
		tr.OnAdopt(adoption(pid, reaper, events.ReaperInit, c.now))
		tr.Gone(ID{PID: pid, Start: time.Duration(pid) * time.Second})
	}
	got = tr.TakeGone()
	if len(got) != 2 || got[0].PID != 500 || got[1].PID != 600 || tr.Stats().GoneUntaken != 1 {
		t.Fatalf("TakeGone = %v, untaken %d: want 500 and 600, 400 counted", got, tr.Stats().GoneUntaken)
	}
}

// A process seeded from /proc and then adopted is forgotten by the kernel's
// identity (to the nanosecond), which the kernel's entry is keyed by.
func TestTakeGoneKernelIdentity(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: time.Hour, Probe: func(ID) State { return StateGone }})
	kernel := ID{PID: 90, Start: 90*time.Second + 1234567}
	tr.Seed(c.now, []Preexisting{{Process: events.Process{ID: ID{PID: 90, Start: 90 * time.Second}},
		Reaper: Reaper{reaper, events.ReaperSubreaper}}})
	a := adoption(90, reaper, events.ReaperSubreaper, c.now)
	a.Child.ID = kernel
	tr.OnAdopt(a)
	tr.Gone(kernel)
	if got := tr.TakeGone(); len(got) != 1 || got[0] != kernel {
		t.Fatalf("TakeGone = %v, want %v", got, kernel)
	}
}

// An exit record may come before its process's adoption record (exit-walk:
// the kernel follows the child before it sends the adoption): it is kept for
// the adoption, and dropped, counted, if no adoption comes in time.
func TestExitBeforeAdoption(t *testing.T) {
	c := newClock()
	tr := New(Config{ZombieAfter: time.Second, VerifyAfter: time.Second})
	a := adoption(400, reaper, events.ReaperInit, c.now)
	exitAt := c.now
	tr.OnExit(idOf(a), exitAt, 7<<8)
	tr.OnAdopt(a)
	if s := tr.Stats(); s.Zombies != 1 || s.EarlyExitsDropped != 0 {
		t.Fatalf("the early exit was not applied: %+v", s)
	}
	got := tr.Tick(c.advance(2 * time.Second))
	if len(got) != 1 || got[0].Zombie.Process.PID != 400 || !got[0].Zombie.Exited.Equal(exitAt) || got[0].Zombie.ExitStatus != 7<<8 {
		t.Fatalf("want 400 unreaped since its exit, got %+v", got)
	}
	// No adoption follows this one: it goes at VerifyAfter, counted.
	tr.OnExit(ID{PID: 401, Start: time.Hour}, c.now, 0)
	tr.Tick(c.advance(2 * time.Second))
	if s := tr.Stats(); s.EarlyExitsDropped != 1 {
		t.Fatalf("an exit without adoption was not dropped: %+v", s)
	}
	late := adoption(401, reaper, events.ReaperInit, c.now)
	late.Child.Start = time.Hour
	tr.OnAdopt(late)
	if s := tr.Stats(); s.Zombies != 1 {
		t.Fatalf("a dropped exit was applied: %+v", s)
	}
	// The bound: the oldest go first, counted.
	for i := 0; i < maxEarlyExits+10; i++ {
		tr.OnExit(ID{PID: uint32(1000 + i), Start: time.Hour}, c.now, 0)
	}
	if s := tr.Stats(); s.EarlyExitsDropped != 11 {
		t.Fatalf("bound: %+v", s)
	}
	// Exits taken by their adoption do not grow the queue past the bound.
	for i := 0; i < 3*maxEarlyExits; i++ {
		a := adoption(uint32(5000+i), reaper, events.ReaperInit, c.now)
		tr.OnExit(idOf(a), c.now, 0)
		tr.OnAdopt(a)
	}
	if n := len(tr.early.order); n > maxEarlyExits {
		t.Fatalf("%d exits queued, bound %d", n, maxEarlyExits)
	}
}
