package supervise

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// startSleeper starts a real process that lives until the test ends, and
// returns its identity as /proc gives it.
func startSleeper(t *testing.T) procfs.ID {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	st, err := procfs.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return st.ID
}

func forkRecord(parent, child procfs.ID) *events.Task {
	return &events.Task{Kind: events.KindFork, Process: events.Process{ID: parent}, Child: &events.Process{ID: child, Comm: "x"}}
}

func exitRecord(id procfs.ID) *events.Task {
	return &events.Task{Kind: events.KindExit, Process: events.Process{ID: id}, ProcessExit: true}
}

// TestUnrecordedWithoutSubreaper: without a subreaper, run waits for the
// adoption records of the live processes the tree forked (an exit-walk
// record can come after the tree settled). Real processes stand for them:
// a live one no record named is listed until it exits or is adopted; one
// found gone is dropped; CMD is never listed; past the bound, forks are
// counted, not kept; nor are they once a daemon is followed.
func TestUnrecordedWithoutSubreaper(t *testing.T) {
	cmdID := startSleeper(t)
	s := &supervisor{cfg: Config{NoSubreaper: true}, cmd: cmdID, forked: map[procfs.ID]bool{}}
	s.tracker = NewTracker(cmdID, time.Now(), time.Second, 1, false)

	orphan := startSleeper(t)
	s.noteForked(forkRecord(cmdID, orphan))
	s.noteForked(forkRecord(procfs.ID{PID: 1}, cmdID)) // CMD itself is never waited for
	gone := procfs.ID{PID: orphan.PID, Start: orphan.Start + time.Hour}
	s.noteForked(forkRecord(cmdID, gone)) // its pid now names another process
	got := s.unrecorded()
	if len(got) != 1 || !strings.HasPrefix(got[0], "pid="+strconv.Itoa(int(orphan.PID))+" ") {
		t.Fatalf("unrecorded %q, want only the live orphan %d", got, orphan.PID)
	}
	if s.forked[gone] {
		t.Errorf("a process found gone is still kept")
	}

	// Its adoption record names it: no longer waited for.
	a := &events.Adoption{Child: events.Process{ID: orphan, Comm: "sleep"}, Lineage: []events.Step{{ID: cmdID}, {ID: orphan}}}
	if s.tracker.Adopted(a, true, time.Now()) == nil {
		t.Fatal("the tracker did not take the adoption")
	}
	if got := s.unrecorded(); len(got) != 0 {
		t.Errorf("unrecorded %q after its adoption record", got)
	}

	// A second one, then the exit records of both.
	other := startSleeper(t)
	s.noteForked(forkRecord(orphan, other))
	s.tracker.members = nil // as if the first one's record had not come either
	if got := s.unrecorded(); len(got) != 2 {
		t.Errorf("unrecorded %q, want both sleepers once no record named them", got)
	}
	s.noteForked(exitRecord(other))
	s.noteForked(exitRecord(orphan))
	if got := s.unrecorded(); len(got) != 0 || len(s.forked) != 0 {
		t.Errorf("unrecorded %q, kept %d, after their exit records", got, len(s.forked))
	}

	// The bound.
	for i := 0; i < maxForked+5; i++ {
		s.noteForked(forkRecord(cmdID, procfs.ID{PID: uint32(1_000_000 + i), Start: time.Second}))
	}
	if len(s.forked) != maxForked || s.forkedDropped != 5 {
		t.Errorf("kept %d (bound %d), dropped %d, want 5 dropped", len(s.forked), maxForked, s.forkedDropped)
	}

	// Once a daemon is followed, forks (its workers) are not kept.
	clear(s.forked)
	s.state = following
	s.noteForked(forkRecord(cmdID, other))
	if len(s.forked) != 0 {
		t.Errorf("kept %d forks while following a daemon", len(s.forked))
	}

	// With a subreaper, forks are not kept at all (run's children tell).
	sub := &supervisor{cmd: cmdID, forked: map[procfs.ID]bool{}}
	sub.noteForked(forkRecord(cmdID, orphan))
	if len(sub.forked) != 0 {
		t.Errorf("subreaper mode kept %d forks", len(sub.forked))
	}
}

// TestOthersText: the other adopted processes are named, escaped, and at
// most maxOthersNamed of them; the rest are counted.
func TestOthersText(t *testing.T) {
	var others []*Candidate
	for i := 0; i < 3000; i++ {
		others = append(others, &Candidate{ID: procfs.ID{PID: uint32(1000 + i)}, Comm: "w\n\x1b[31m"})
	}
	if got, want := othersText(others[:2]), `1000 (w\n\x1b[31m), 1001 (w\n\x1b[31m)`; got != want {
		t.Errorf("othersText of 2 = %q, want %q", got, want)
	}
	got := othersText(others)
	if !strings.HasSuffix(got, " and 2980 more") || strings.Count(got, "(") != maxOthersNamed || strings.ContainsAny(got, "\n\x1b") {
		t.Errorf("othersText of 3000 = %q", got)
	}
}
