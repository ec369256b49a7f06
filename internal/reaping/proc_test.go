package reaping

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
)

// writeProc makes a fake /proc entry.
func writeProc(t *testing.T, root string, pid, ppid int, comm, state string, startTicks int, nspid string) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Fields 3..22: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
	// utime stime cutime cstime priority nice threads itrealvalue starttime.
	stat := fmt.Sprintf("%d (%s) %s %d %d %d 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, comm, state, ppid, pid, pid, startTicks)
	status := fmt.Sprintf("Name:\t%s\nState:\t%s (x)\nNSpid:\t%s\n", comm, state, nspid)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPreexistingFromFakeProc(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 1, 0, "init", "S", 1, "1")
	writeProc(t, root, 2, 0, "kthreadd", "S", 1, "2")
	writeProc(t, root, 3, 2, "kworker", "I", 2, "3")
	writeProc(t, root, 10, 1, "sshd", "S", 50, "10")
	writeProc(t, root, 11, 10, "bash", "S", 60, "11")
	writeProc(t, root, 20, 11, "conmon", "S", 70, "20")        // a runtime's shim
	writeProc(t, root, 21, 20, "node", "S", 80, "21 1")        // a container's init
	writeProc(t, root, 22, 21, "helper", "Z", 90, "22 7")      // its zombie child
	writeProc(t, root, 23, 1, "self", "S", 95, "23")           // the watcher: left out
	writeProc(t, root, 30, 21, "reused", "S", 10, "30 8")      // older than its "parent": not its child
	writeProc(t, root, 40, 1, "weird (name) x", "S", 99, "40") // parentheses in comm
	os.MkdirAll(filepath.Join(root, "self"), 0o755)

	got, err := PreexistingFromProc(root, 23)
	if err != nil {
		t.Fatal(err)
	}
	byPID := map[uint32]Preexisting{}
	for _, p := range got {
		byPID[p.Process.PID] = p
	}
	if len(got) != 3 {
		t.Fatalf("want sshd, weird, helper; got %+v", got)
	}
	if p := byPID[10]; p.Reaper.PID != 1 || p.Reaper.Kind != events.ReaperInit || p.Zombie || p.Process.Start != 50*events.ClockTick {
		t.Errorf("sshd: %+v", p)
	}
	if p := byPID[22]; p.Reaper.PID != 21 || p.Reaper.Kind != events.ReaperNS || p.Reaper.Comm != "node" || !p.Zombie {
		t.Errorf("helper: %+v", p)
	}
	if p := byPID[40]; p.Process.Comm != "weird (name) x" {
		t.Errorf("comm: %+v", p)
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
	for time.Now().Before(deadline) && zombie == nil {
		time.Sleep(20 * time.Millisecond)
		got, err := PreexistingFromProc("/proc", os.Getpid())
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

func TestChildrenFromFakeProc(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 1, 0, "init", "S", 1, "1")
	writeProc(t, root, 50, 1, "tini", "S", 100, "50")  // a subreaper /proc cannot tell
	writeProc(t, root, 51, 50, "old", "S", 150, "51")  // before adoptwatch (t=300): listed
	writeProc(t, root, 52, 50, "dead", "Z", 160, "52") // a zombie from before: listed as such
	writeProc(t, root, 53, 50, "new", "S", 400, "53")  // started after: tini forked it, or we saw it
	writeProc(t, root, 54, 1, "other", "S", 150, "54") // someone else's child
	r := Reaper{events.Process{PID: 50, Start: 100*events.ClockTick + 3*time.Millisecond, Comm: "tini"}, events.ReaperSubreaper}
	got, err := ChildrenFromProc(root, r, 300*events.ClockTick)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Process.PID != 51 || got[1].Process.PID != 52 || !got[1].Zombie || got[0].Zombie {
		t.Fatalf("got %+v", got)
	}
	if got[0].Reaper.Kind != events.ReaperSubreaper {
		t.Errorf("reaper %+v", got[0].Reaper)
	}
	// A reaper younger than the "children": a reused pid, not its children.
	young := r
	young.Start = 200 * events.ClockTick
	if got, _ := ChildrenFromProc(root, young, 300*events.ClockTick); len(got) != 0 {
		t.Errorf("children older than their reaper: %+v", got)
	}
}
