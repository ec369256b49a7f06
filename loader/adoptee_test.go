package loader_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"github.com/adoptwatch/adoptwatch/loader"
)

// records keeps every record of one Observer, in arrival order.
type records struct {
	mu   sync.Mutex
	all  []events.Record
	errs []error
}

func readAll(t *testing.T, obs *loader.Observer) *records {
	r := &records{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			rec, err := obs.Read()
			if errors.Is(err, loader.ErrClosed) {
				return
			}
			r.mu.Lock()
			if err != nil {
				r.errs = append(r.errs, err)
			} else {
				r.all = append(r.all, rec)
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		obs.Close()
		<-done
		if len(r.errs) > 0 {
			t.Errorf("undecodable records: %v", r.errs)
		}
	})
	return r
}

// wait returns the index and record of the first record from index from on
// that matches, or -1 after timeout.
func (r *records) wait(from int, timeout time.Duration, match func(events.Record) bool) (int, events.Record) {
	deadline := time.Now().Add(timeout)
	for {
		r.mu.Lock()
		for i := from; i < len(r.all); i++ {
			if match(r.all[i]) {
				rec := r.all[i]
				r.mu.Unlock()
				return i, rec
			}
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			return -1, events.Record{}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func adopteeOf(kind events.Kind, p events.Process) func(events.Record) bool {
	return func(rec events.Record) bool {
		a := rec.Adoptee
		return a != nil && a.Kind == kind && a.Process.PID == p.PID && a.Process.Start == p.Start
	}
}

// TestAdopteeExitAndReaped: a daemon adopted by the test's subreaper is ended;
// its exit record arrives, and its reaped record only once the subreaper has
// reaped it, after the exit record.
func TestAdopteeExitAndReaped(t *testing.T) {
	eachHookRecords(t, func(t *testing.T, recs *records) {
		tree, err := fixture.StartLazyReaper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tree.Stop() })
		middle := testsupport.Next(t, tree, "middle").Int(0)

		_, rec := recs.wait(0, 10*time.Second, func(rec events.Record) bool {
			return rec.Adoption != nil && rec.Adoption.PrevParent.PID == uint32(middle)
		})
		if rec.Adoption == nil {
			t.Fatalf("no adoption from middle %d", middle)
		}
		daemon := rec.Adoption.Child
		// The daemon pauses once adopted (signals blocked, as rawfork leaves
		// them): end it now, after its adoption.
		if err := unix.Kill(int(daemon.PID), unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		exitAt, exit := recs.wait(0, 10*time.Second, adopteeOf(events.KindAdopteeExit, daemon))
		if exit.Adoptee == nil {
			t.Fatalf("no exit record for adopted daemon %d", daemon.PID)
		}
		e := exit.Adoptee
		t.Logf("exit: %+v", *e)
		if e.Reaper.PID != uint32(tree.Reaper) || e.ExitStatus != uint32(unix.SIGKILL) || e.ExitTime.IsZero() || e.ExitedBeforeAdoption {
			t.Errorf("exit of %d: reaper %d, status %d, time %v, zombie when adopted %v; want reaper %d, status 9 (SIGKILL)",
				daemon.PID, e.Reaper.PID, e.ExitStatus, e.ExitTime, e.ExitedBeforeAdoption, tree.Reaper)
		}
		if e.Time.Before(rec.Adoption.Time) {
			t.Errorf("exit at %v, before its adoption at %v", e.Time, rec.Adoption.Time)
		}
		// Unreaped: no reaped record while the zombie waits.
		if i, _ := recs.wait(0, 300*time.Millisecond, adopteeOf(events.KindAdopteeReaped, daemon)); i >= 0 {
			t.Fatalf("reaped record for %d before its reaper reaped it", daemon.PID)
		}

		reapedAt := time.Now()
		if err := tree.Reap(); err != nil {
			t.Fatal(err)
		}
		for {
			if testsupport.Next(t, tree, "reaped").Int(0) == int(daemon.PID) {
				break
			}
		}
		at, reaped := recs.wait(0, 10*time.Second, adopteeOf(events.KindAdopteeReaped, daemon))
		if reaped.Adoptee == nil {
			t.Fatalf("no reaped record for %d after its reaper reaped it", daemon.PID)
		}
		r := reaped.Adoptee
		t.Logf("reaped: %+v", *r)
		if at < exitAt {
			t.Errorf("reaped record (#%d) before the exit record (#%d)", at, exitAt)
		}
		if !r.ExitTime.Equal(e.ExitTime) || r.Reaper.PID != e.Reaper.PID || r.ExitStatus != e.ExitStatus {
			t.Errorf("reaped record says exit at %v, reaper %d, status %d; the exit record %v, %d, %d",
				r.ExitTime, r.Reaper.PID, r.ExitStatus, e.ExitTime, e.Reaper.PID, e.ExitStatus)
		}
		if r.Time.Before(reapedAt.Add(-time.Second)) || r.Time.Sub(r.ExitTime) < 300*time.Millisecond {
			t.Errorf("released at %v: the reaper reaped at about %v, %v after the exit", r.Time, reapedAt, r.Time.Sub(r.ExitTime))
		}
		time.Sleep(100 * time.Millisecond)
		for _, kind := range []events.Kind{events.KindAdopteeExit, events.KindAdopteeReaped} {
			if i, _ := recs.wait(max(exitAt, at)+1, 0, adopteeOf(kind, daemon)); i >= 0 {
				t.Errorf("a second %s record for %d", kind, daemon.PID)
			}
		}
	})
}

// TestAdopteeZombie: a process that had already exited when it was adopted
// gets its exit record at once, marked so, then its reaped record.
func TestAdopteeZombie(t *testing.T) {
	eachHookRecords(t, func(t *testing.T, recs *records) {
		tree := testsupport.StartTree(t, "zombie")
		zmiddle := testsupport.Next(t, tree, "zmiddle").Int(0)
		zombie := testsupport.Next(t, tree, "zombie").Int(0)
		_, rec := recs.wait(0, 10*time.Second, func(rec events.Record) bool {
			return rec.Adoption != nil && rec.Adoption.Child.PID == uint32(zombie)
		})
		if rec.Adoption == nil || !rec.Adoption.Zombie || rec.Adoption.PrevParent.PID != uint32(zmiddle) {
			t.Fatalf("adoption of zombie %d from %d: %+v", zombie, zmiddle, rec.Adoption)
		}
		z := rec.Adoption.Child
		exitAt, exit := recs.wait(0, 10*time.Second, adopteeOf(events.KindAdopteeExit, z))
		at, reaped := recs.wait(0, 10*time.Second, adopteeOf(events.KindAdopteeReaped, z))
		if exit.Adoptee == nil || reaped.Adoptee == nil {
			t.Fatalf("zombie %d: exit record %v, reaped record %v", zombie, exit.Adoptee, reaped.Adoptee)
		}
		if !exit.Adoptee.ExitedBeforeAdoption || exit.Adoptee.Reaper.PID != uint32(tree.Reaper) || at < exitAt {
			t.Errorf("zombie %d: exit %+v (#%d), reaped (#%d): want an exit marked as before the adoption, by reaper %d, first",
				zombie, *exit.Adoptee, exitAt, at, tree.Reaper)
		}
	})
}

// eachHookRecords runs test once per adoption hook (subtests hook=NAME) with
// an Observer whose every record is kept.
func eachHookRecords(t *testing.T, test func(t *testing.T, recs *records)) {
	testsupport.EachHook(t, func(t *testing.T, hook events.Hook) {
		test(t, readAll(t, testsupport.Open(t, loader.Options{Hook: hook})))
	})
}
