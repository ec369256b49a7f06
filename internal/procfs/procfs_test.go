package procfs

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	st, err := ParseStat([]byte("4242 (my (odd) daemon) S 1 4242 4242 0 -1 4194624 0 0 0 0 7 5 0 0 20 0 1 0 1234 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != 4242 || st.Comm != "my (odd) daemon" || st.State != "S" || st.PPID != 1 || st.PGID != 4242 || st.SID != 4242 || st.Start != 1234*ClockTick || st.CPU != 12*ClockTick {
		t.Errorf("parsed %+v", st)
	}
	for _, bad := range []string{"", "12 no name", "12 (x) S 1 2", "x (y) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 0 0 0 0 5 0"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

func TestSame(t *testing.T) {
	a := ID{PID: 7, Start: 6 * time.Second}
	if !a.Same(ID{PID: 7, Start: 6*time.Second + 3*time.Millisecond}) {
		t.Errorf("the kernel's nanoseconds and /proc's ticks of one process should match")
	}
	if a.Same(ID{PID: 7, Start: 9 * time.Second}) || a.Same(ID{PID: 8, Start: 6 * time.Second}) {
		t.Errorf("another start time or pid matched")
	}
	b := ID{5, 1234567890 * time.Nanosecond}
	if !b.Same(ID{5, 1230000000 * time.Nanosecond}) || b.Same(ID{5, 1240000000 * time.Nanosecond}) || b.Same(ID{6, b.Start}) {
		t.Errorf("identities compare at clock-tick precision, pid and start both")
	}
	if a.StartTicks() != 600 {
		t.Errorf("ticks %d, want 600", a.StartTicks())
	}
}

// TestLiveProcesses reads this process and a child of its own from the real /proc.
func TestLiveProcesses(t *testing.T) {
	self, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if int(self.PID) != os.Getpid() || int(self.PPID) != os.Getppid() || self.Start <= 0 {
		t.Errorf("self: %+v", self)
	}
	if !Running(self.ID) || Running(ID{PID: self.PID, Start: self.Start + time.Second}) {
		t.Errorf("Running should match this process and nothing with another start time")
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	found := false
	for _, c := range Children(os.Getpid()) {
		found = found || int(c.PID) == child.Process.Pid
	}
	if !found {
		t.Errorf("child %d not among Children(%d)", child.Process.Pid, os.Getpid())
	}
	all, err := All()
	if err != nil || len(all) < 2 {
		t.Fatalf("All: %d processes, %v", len(all), err)
	}
}
