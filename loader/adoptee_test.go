package loader_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"github.com/adoptwatch/adoptwatch/loader"
)

// records keeps every record of one Observer, in arrival order.
type records struct {
	obs  *loader.Observer
	mu   sync.Mutex
	all  []events.Record
	errs []error
}

func readAll(t *testing.T, obs *loader.Observer) *records {
	r := &records{obs: obs}
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
	eachHookRecordsWith(t, loader.Options{}, test)
}

// eachHookRecordsWith is eachHookRecords with these options (Hook set per hook).
func eachHookRecordsWith(t *testing.T, opts loader.Options, test func(t *testing.T, recs *records)) {
	testsupport.EachHook(t, func(t *testing.T, hook events.Hook) {
		opts.Hook = hook
		test(t, readAll(t, testsupport.Open(t, opts)))
	})
}

// TestAdopteeBurst: 1,000 daemons adopted by the test's subreaper, which
// reaps them: each gets exactly one exit and one reaped record, or the miss
// is counted (the kernel skipped every copy of a program, or the ring was
// full); and none is left in the kernel's adoptees map, whatever was missed.
// Three copies whatever the kernel: the spares and their count are exercised.
func TestAdopteeBurst(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 500 // emulated CPUs (test VMs): as in TestBurst
	}
	eachHookRecordsWith(t, loader.Options{Copies: 3}, func(t *testing.T, recs *records) {
		obs := recs.obs
		before, err := obs.Counters()
		if err != nil {
			t.Fatal(err)
		}
		tree := testsupport.StartTree(t, fmt.Sprintf("raw:%d", n))
		middles := map[uint32]bool{}
		for range n {
			middles[uint32(testsupport.Next(t, tree, "middle").Int(0))] = true
		}
		// The daemons: adopted from our middles by our subreaper.
		daemons := map[procfs.ID]bool{}
		exits, reaps := map[procfs.ID]int{}, map[procfs.ID]int{}
		exitUnseen := map[procfs.ID]bool{} // adopted while exiting: flagged on the reaped record
		tally := func() {
			recs.mu.Lock()
			defer recs.mu.Unlock()
			clear(exits)
			clear(reaps)
			clear(exitUnseen)
			for _, rec := range recs.all {
				if a := rec.Adoption; a != nil && a.NewParent.PID == uint32(tree.Reaper) && middles[a.PrevParent.PID] {
					daemons[a.Child.ID] = true
				}
				if a := rec.Adoptee; a != nil {
					switch a.Kind {
					case events.KindAdopteeExit:
						exits[a.Process.ID]++
					case events.KindAdopteeReaped:
						reaps[a.Process.ID]++
						if a.ExitTime.IsZero() {
							exitUnseen[a.Process.ID] = true
						}
					}
				}
			}
		}
		deadline := time.Now().Add(20 * time.Second) // releases wait for RCU, which may be lazy
		for {
			tally()
			missing := 0
			for id := range daemons {
				if (exits[id] == 0 && !exitUnseen[id]) || reaps[id] == 0 {
					missing++
				}
			}
			if (len(daemons) >= n && missing == 0) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Records still missing: give the reader one more poll.
		time.Sleep(500 * time.Millisecond)
		tally()
		after, err := obs.Counters()
		if err != nil {
			t.Fatal(err)
		}
		counted := (after.UnseenEvents - before.UnseenEvents) +
			(after.LostAdopteeRecords - before.LostAdopteeRecords) +
			2*(after.AdopteesFull-before.AdopteesFull)
		var noExit, noReap int
		for id := range daemons {
			if exits[id] > 1 || reaps[id] > 1 {
				t.Errorf("daemon %d: %d exit and %d reaped records, want 1 each", id.PID, exits[id], reaps[id])
			}
			// An exit record is missing only where a reaped record came that
			// does not say the exit went unseen (adopted mid-exit, the kernel
			// has no exit to report). Where the reaped record was lost too,
			// that flag was lost with it: the one forgotten entry accounts
			// for the daemon.
			if exits[id] == 0 && !exitUnseen[id] && reaps[id] > 0 {
				noExit++
			}
			if reaps[id] == 0 {
				noReap++
			}
		}
		t.Logf("%d daemons adopted: %d without an exit record, %d without a reaped record; counted %d (counters %+v)",
			len(daemons), noExit, noReap, counted, after)
		if len(daemons) < n-int(after.UnseenEvents-before.UnseenEvents+after.LostAdoptions-before.LostAdoptions) {
			t.Errorf("%d adoptions reported of %d", len(daemons), n)
		}
		if st, err := obs.ProgramStats(); err == nil {
			for _, p := range st {
				if p.RecursionMisses > 0 {
					t.Logf("program %s: %d recursion misses", p.Name, p.RecursionMisses)
				}
			}
		}

		logged := 0
		for id := range daemons {
			if (reaps[id] == 0 || (exits[id] == 0 && !exitUnseen[id])) && logged < 20 {
				logged++
				t.Logf("daemon %d (start %v): %d exit records, %d reaped records", id.PID, id.Start, exits[id], reaps[id])
			}
		}
		// Every daemon is reaped (the subreaper reaps): none may be left in
		// the kernel's map. One whose reaped record never came is forgotten
		// as user space would, once /proc shows it gone.
		forgotten := 0
		for id := range daemons {
			if reaps[id] == 0 && releaseHookSkipped(t, obs, id) {
				forgotten++
			}
		}
		left, err := loader.AdopteeKeys(obs)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range left {
			if daemons[id] {
				t.Errorf("daemon %d still in the kernel's adoptees map", id.PID)
			}
		}
		if forgotten > noReap {
			t.Errorf("forgot %d adoptees, but only %d reaped records were missing", forgotten, noReap)
		}
		// Exact accounting: each missing record is counted, by the kernel or
		// by user space deleting the entry the kernel kept.
		if uint64(noExit+noReap) > counted+uint64(forgotten) {
			t.Errorf("%d exit and %d reaped records missing, only %d counted by the kernel and %d adoptees forgotten",
				noExit, noReap, counted, forgotten)
		}
		final, err := obs.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if got := final.ForgottenAdoptees - before.ForgottenAdoptees; got != uint64(forgotten) {
			t.Errorf("ForgottenAdoptees %d, want %d", got, forgotten)
		}
		t.Logf("%d adoptees forgotten by user space", forgotten)
	})
}
