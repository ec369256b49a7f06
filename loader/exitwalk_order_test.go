package loader_test

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"github.com/adoptwatch/adoptwatch/loader"
)

// TestExitWalkDaemonExitsAsAdopted: with the exit-walk hook, a daemon that
// exits the instant its middle's exit_notify() re-parents it is reported
// exactly once, as adopted alive by the subreaper, and followed to its
// release. Its exit races the middle's final context switch, where the hook
// reads where children went: on a 2-CPU machine most daemons exit before that
// switch or while its program runs, so the report comes from the daemon's own
// exit (resolve_exiting_child) or from the switch, and the two must never both
// report it. Its release comes after the switch unless the middle's CPU
// stalls for a grace period, which the test cannot force (see
// fixture.StartExitOrder). Many rounds in one observer, with three copies of
// the fork/exec/exit programs whatever the kernel; the counters must explain
// any shortfall, except releases the kernel did without running the release
// hook at all (releaseHookSkipped: seen in CI on 6.18 under load).
func TestExitWalkDaemonExitsAsAdopted(t *testing.T) {
	testsupport.RequireBPF(t)
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil || cpus.Count() < 2 {
		t.Skipf("needs two CPUs (have %d: %v)", cpus.Count(), err)
	}
	n := 200
	if testing.Short() {
		n = 40
	}
	obs := testsupport.Open(t, loader.Options{Hook: events.HookExitWalk, WatchPIDs: []int{os.Getpid()}, RingBytes: 4 << 20, Copies: 3})
	c := collect(obs)
	t.Cleanup(func() {
		if errs := c.decodeErrors(); len(errs) > 0 {
			t.Errorf("undecodable records: %v", errs)
		}
	})
	before, err := obs.Counters()
	if err != nil {
		t.Fatal(err)
	}

	tree, err := fixture.StartExitOrder(n)
	if err != nil {
		t.Fatal(err)
	}
	testsupport.StopAtEnd(t, tree)
	daemonOf := map[uint32]uint32{} // middle → daemon
	for i := 0; i < n; i++ {
		rep := testsupport.Next(t, tree, "round")
		daemonOf[uint32(rep.Int(1))] = uint32(rep.Int(2))
	}
	testsupport.Next(t, tree, "done")
	isDaemon := map[uint32]bool{}
	for _, d := range daemonOf {
		isDaemon[d] = true
	}

	fromMiddles := func(a *events.Adoption) bool { return daemonOf[a.PrevParent.PID] != 0 }
	got := c.waitFor(n, 30*time.Second, fromMiddles)
	// Each daemon's reaped record comes at its release, an RCU grace period
	// after its reaping, and is sent without waking the reader.
	var exits, reaps map[uint32]*events.Adoptee
	c.records.Wait(20*time.Second, func(all []events.Record, _ bool) bool {
		exits, reaps = map[uint32]*events.Adoptee{}, map[uint32]*events.Adoptee{}
		for _, r := range all {
			if a := r.Adoptee; a != nil && isDaemon[a.Process.PID] {
				if a.Kind == events.KindAdopteeExit {
					exits[a.Process.PID] = a
				} else {
					reaps[a.Process.PID] = a
				}
			}
		}
		return len(reaps) >= n
	})
	time.Sleep(200 * time.Millisecond) // room for a duplicate to show
	got = c.waitFor(n+1, 0, fromMiddles)
	after, err := obs.Counters()
	if err != nil {
		t.Fatal(err)
	}

	seen := map[uint32]int{}
	adopted := map[uint32]procfs.ID{} // daemon pid → its identity in the records
	zombies := 0
	for _, a := range got {
		seen[a.PrevParent.PID]++
		adopted[a.Child.PID] = a.Child.ID
		if a.Child.PID != daemonOf[a.PrevParent.PID] {
			t.Errorf("adoption of %d from middle %d: its daemon is %d", a.Child.PID, a.PrevParent.PID, daemonOf[a.PrevParent.PID])
		}
		// The daemon exits only once re-parented: it was alive when adopted.
		if a.Zombie {
			zombies++
			t.Errorf("daemon %d from middle %d: reported as adopted a zombie; it was alive when re-parented", a.Child.PID, a.PrevParent.PID)
		}
		if a.NewParent.PID != uint32(tree.Reaper) || a.Reaper != events.ReaperSubreaper {
			t.Errorf("daemon %d adopted by %d (%s), want the subreaper %d", a.Child.PID, a.NewParent.PID, a.Reaper, tree.Reaper)
		}
	}
	var missing, exitUnseen, reapMissing, releaseUnseen int
	for middle, daemon := range daemonOf {
		switch k := seen[middle]; {
		case k == 0:
			missing++
			t.Logf("no adoption of daemon %d from middle %d", daemon, middle)
		case k > 1:
			t.Errorf("daemon %d from middle %d: adoption reported %d times, want once", daemon, middle, k)
		}
		if seen[middle] == 0 {
			continue
		}
		// Its exit: an adoptee exit record with the subreaper as its parent,
		// never "exited before adoption" (it waited to be re-parented). It
		// exits only after it was re-parented, so its exit tracepoint either
		// reports the adoption itself or finds it followed already (the final
		// switch follows before it claims): an exit without its record is an
		// error unless the kernel counted a missed run.
		switch e := exits[daemon]; {
		case e == nil:
			exitUnseen++
		case e.ExitedBeforeAdoption:
			t.Errorf("daemon %d: exit reported as before its adoption; it exited only once re-parented", daemon)
		case e.Reaper.PID != uint32(tree.Reaper):
			t.Errorf("daemon %d: exited with parent %d, want the subreaper %d", daemon, e.Reaper.PID, tree.Reaper)
		}
		switch r := reaps[daemon]; {
		case r == nil:
			reapMissing++
			if unseen := releaseHookSkipped(t, obs, adopted[daemon]); unseen {
				releaseUnseen++
			}
		case exits[daemon] == nil && !r.ExitTime.IsZero():
			t.Errorf("daemon %d: reaped record has an exit time, but no exit record came", daemon)
		}
	}

	d := func(a, b uint64) uint64 { return a - b }
	lost := d(after.LostAdoptions, before.LostAdoptions)
	unfollowed := d(after.UnfollowedAdoptions, before.UnfollowedAdoptions)
	stale := d(after.StaleChildren, before.StaleChildren)
	unseen := d(after.UnseenEvents, before.UnseenEvents)
	t.Logf("%d rounds: %d adoptions reported (%d missing, %d as zombies), %d exits unseen (reaped record only), %d reaped records missing; "+
		"counter deltas: lost %d, unfollowed %d, stale %d, unseen events %d, adoptions %d, adoptees full %d, lost adoptee records %d",
		n, len(got), missing, zombies, exitUnseen, reapMissing, lost, unfollowed, stale, unseen,
		d(after.Adoptions, before.Adoptions), d(after.AdopteesFull, before.AdopteesFull), d(after.LostAdopteeRecords, before.LostAdopteeRecords))
	// A missing record is acceptable only where the kernel says why, or
	// where its release hook never ran (releaseHookSkipped).
	if explained := unseen + d(after.LostAdopteeRecords, before.LostAdopteeRecords) + d(after.AdopteesFull, before.AdopteesFull) + uint64(releaseUnseen); uint64(reapMissing) > explained {
		t.Errorf("%d adoptee reaped records missing, only %d explained by the counters and %d releases the kernel never ran its hook for",
			reapMissing, explained-uint64(releaseUnseen), releaseUnseen)
	}
	if explained := unseen + d(after.LostAdopteeRecords, before.LostAdopteeRecords); uint64(exitUnseen) > explained {
		t.Errorf("%d daemons' exits unseen, only %d explained by the counters (unseen events, lost adoptee records)", exitUnseen, explained)
	}
	if explained := lost + unfollowed + stale + unseen; uint64(missing) > explained {
		t.Errorf("%d adoptions missing, only %d explained by the counters (lost %d, unfollowed %d, stale %d, unseen events %d)",
			missing, explained, lost, unfollowed, stale, unseen)
	}
}

// releaseHookSkipped tells, for an adopted daemon without a reaped record,
// whether the kernel released it without running sched_process_free's BPF
// program: the process is gone (its reaper reaped it) but its entry is still
// in the adoptees map, which only that program deletes. Measured on 6.18, the
// kernel skips the program now and then, uncounted (loader.ForgetAdoptee);
// user space then forgets the entry as the test does here. An entry gone
// without its record would be a record lost by adoptwatch itself.
func releaseHookSkipped(t *testing.T, obs *loader.Observer, id procfs.ID) bool {
	t.Helper()
	if st, err := procfs.ReadStat(int(id.PID)); err == nil && st.ID.Same(id) {
		t.Errorf("daemon %d: not reaped by the subreaper", id.PID)
		return false
	}
	entry, err := obs.ForgetAdoptee(id)
	if err != nil {
		t.Fatal(err)
	}
	if entry {
		t.Logf("daemon %d: no adoptee reaped record; released without the kernel running its release hook (its entry was still there)", id.PID)
	} else {
		t.Logf("daemon %d: no adoptee reaped record, and its entry is gone from the kernel", id.PID)
	}
	return entry
}
