package reaping

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// entry is a process as readProcs would return it.
func pentry(pid, ppid uint32, comm, state string, startTicks int, nspid ...uint32) procEntry {
	return procEntry{procfs.Stat{ID: procfs.ID{PID: pid, Start: time.Duration(startTicks) * procfs.ClockTick},
		PPID: ppid, PGID: pid, SID: pid, State: state, Comm: comm}, nspid}
}

func TestPreexisting(t *testing.T) {
	procs := []procEntry{
		pentry(1, 0, "init", "S", 1, 1),
		pentry(2, 0, "kthreadd", "S", 1, 2),
		pentry(3, 2, "kworker", "I", 2, 3),
		pentry(10, 1, "sshd", "S", 50, 10),
		pentry(11, 10, "bash", "S", 60, 11),
		pentry(20, 11, "conmon", "S", 70, 20),    // a runtime's shim
		pentry(21, 20, "node", "S", 80, 21, 1),   // a container's init
		pentry(22, 21, "helper", "Z", 90, 22, 7), // its zombie child
		pentry(23, 1, "self", "S", 95, 23),       // the watcher: left out
		pentry(30, 21, "reused", "S", 10, 30, 8), // older than its "parent": not its child
	}
	got := preexisting(procs, 23)
	byPID := map[uint32]Preexisting{}
	for _, p := range got {
		byPID[p.Process.PID] = p
	}
	if len(got) != 2 {
		t.Fatalf("want sshd and helper; got %+v", got)
	}
	if p := byPID[10]; p.Reaper.PID != 1 || p.Reaper.Kind != events.ReaperInit || p.Zombie || p.Process.Start != 50*procfs.ClockTick {
		t.Errorf("sshd: %+v", p)
	}
	if p := byPID[22]; p.Reaper.PID != 21 || p.Reaper.Kind != events.ReaperNS || p.Reaper.Comm != "node" || !p.Zombie {
		t.Errorf("helper: %+v", p)
	}
}

// A real pid namespace: its init is a reaper, and a child it never waits for
// is listed as a pre-existing zombie of a namespace reaper.
func TestPreexistingFromRealProc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a pid namespace (unshare --pid)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1) from util-linux")
	}
	// sh forks "sleep 0" and execs a sleep that never waits: the child stays a zombie.
	cmd := exec.Command("unshare", "--pid", "--fork", "sh", "-c", "sleep 0 & exec sleep 60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var nsInit, zombie *Preexisting
	deadline := time.Now().Add(5 * time.Second)
	// Until the zombie is there and its reaper has exec'd sleep: on a slow
	// machine the zombie can show while the namespace's init is still
	// unshare's copy of itself (comm "exe" in the test VMs).
	for time.Now().Before(deadline) && (zombie == nil || zombie.Reaper.Comm != "sleep") {
		zombie = nil
		time.Sleep(20 * time.Millisecond)
		got, err := PreexistingFromProc()
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range got {
			if p.Process.PPID == uint32(cmd.Process.Pid) {
				nsInit = &got[i] // unshare's child, the namespace's pid 1, is not a reaper's child
			}
			if p.Reaper.PPID == uint32(cmd.Process.Pid) && p.Zombie {
				zombie = &got[i]
			}
		}
	}
	if nsInit != nil {
		t.Errorf("the namespace init was listed as a reaper's child: %+v", nsInit)
	}
	if zombie == nil {
		t.Fatal("the namespace init's zombie child was not listed")
	}
	if zombie.Reaper.Kind != events.ReaperNS || zombie.Reaper.Comm != "sleep" {
		t.Errorf("reaper: %+v", zombie.Reaper)
	}
}

func TestChildrenOf(t *testing.T) {
	var procs []procfs.Stat
	for _, e := range []procEntry{
		pentry(1, 0, "init", "S", 1),
		pentry(50, 1, "tini", "S", 100),  // a subreaper /proc cannot tell
		pentry(51, 50, "old", "S", 150),  // before adoptwatch (t=300): listed
		pentry(52, 50, "dead", "Z", 160), // a zombie from before: listed as such
		pentry(53, 50, "new", "S", 400),  // started after: tini forked it, or we saw it
		pentry(54, 1, "other", "S", 150), // someone else's child
	} {
		procs = append(procs, e.Stat)
	}
	r := Reaper{events.Process{ID: procfs.ID{PID: 50, Start: 100*procfs.ClockTick + 3*time.Millisecond}, Comm: "tini"}, events.ReaperSubreaper}
	got := childrenOf(procs, r, 300*procfs.ClockTick)
	if len(got) != 2 || got[0].Process.PID != 51 || got[1].Process.PID != 52 || !got[1].Zombie || got[0].Zombie {
		t.Fatalf("got %+v", got)
	}
	if got[0].Reaper.Kind != events.ReaperSubreaper {
		t.Errorf("reaper %+v", got[0].Reaper)
	}
	// A reaper younger than the "children": a reused pid, not its children.
	young := r
	young.Start = 200 * procfs.ClockTick
	if got := childrenOf(procs, young, 300*procfs.ClockTick); len(got) != 0 {
		t.Errorf("children older than their reaper: %+v", got)
	}
}

// The real /proc: this test's own child is listed once the test is known
// as a reaper, and not before.
func TestChildrenFromRealProc(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	self, err := procfs.ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	r := Reaper{process(self), events.ReaperSubreaper}
	got, err := ChildrenFromProc(r, time.Duration(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range got {
		found = found || int(p.Process.PID) == cmd.Process.Pid
	}
	if !found {
		t.Errorf("child %d not listed: %+v", cmd.Process.Pid, got)
	}
	child, err := procfs.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ChildrenFromProc(r, child.Start); len(got) != 0 {
		for _, p := range got {
			if int(p.Process.PID) == cmd.Process.Pid {
				t.Errorf("a child started at adoptwatch's start or later is listed")
			}
		}
	}
}
