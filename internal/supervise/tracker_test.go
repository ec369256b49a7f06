package supervise

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

const self = 100

var t0 = time.Unix(1000, 0)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// start gives each pid a distinct start time, so identities are checked.
func start(pid uint32) time.Duration { return time.Duration(pid) * time.Second }

func id(pid uint32) procfs.ID { return procfs.ID{PID: pid, Start: start(pid)} }

func step(pid uint32) events.Step { return events.Step{ID: id(pid)} }

// adoption of child, adopted by newParent, with lineage pids (oldest first, without the child).
func adoption(child, newParent uint32, lineage ...uint32) *events.Adoption {
	a := &events.Adoption{
		Child:     events.Process{ID: id(child), Comm: "c"},
		NewParent: events.Process{ID: procfs.ID{PID: newParent}},
	}
	for _, p := range lineage {
		a.Lineage = append(a.Lineage, step(p))
	}
	a.Lineage = append(a.Lineage, step(child))
	return a
}

func newTracker(subreaper bool) *Tracker {
	return NewTracker(id(200), t0, 500*time.Millisecond, self, subreaper)
}

func TestHelperThatExitsIsNotTheDaemon(t *testing.T) {
	tr := newTracker(true)
	tr.Adopted(adoption(300, self, self, 200, 250), true, at(10)) // a helper, adopted first
	tr.Adopted(adoption(301, self, self, 200, 260), true, at(20)) // the daemon
	if d := tr.Decide(at(30), 0, false); !d.Wait {
		t.Fatalf("decided while CMD runs: %+v", d)
	}
	tr.RootExited(at(40))
	if d := tr.Decide(at(100), 0, false); !d.Wait {
		t.Fatalf("decided before --settle: %+v", d)
	}
	tr.Exited(300, at(200)) // the helper ends: the quiet time starts again
	if d := tr.Decide(at(600), 0, false); !d.Wait {
		t.Fatalf("decided less than --settle after the helper exited: %+v", d)
	}
	d := tr.Decide(at(701), 0, false)
	if d.Wait || d.Daemon == nil || d.Daemon.PID != 301 || len(d.Others) != 0 {
		t.Fatalf("want daemon 301 alone, got %+v", d)
	}
}

func TestFirstAdoptedWinsUnlessThePidfileSaysOtherwise(t *testing.T) {
	tr := newTracker(true)
	tr.Adopted(adoption(300, self, 200), true, at(0))
	tr.Adopted(adoption(301, self, 200), true, at(0))
	tr.RootExited(at(0))
	if d := tr.Decide(at(600), 0, false); d.Daemon == nil || d.Daemon.PID != 300 || len(d.Others) != 1 {
		t.Fatalf("want the first adopted, 300, and one other: %+v", d)
	}
	if d := tr.Decide(at(600), 301, true); d.Daemon == nil || d.Daemon.PID != 301 || d.Others[0].PID != 300 {
		t.Fatalf("want the pid file's 301: %+v", d)
	}
	if d := tr.Decide(at(600), 999, true); !d.Wait {
		t.Fatalf("a pid file naming no adopted process must make it wait: %+v", d)
	}
	if d := tr.Decide(at(600), 0, true); !d.Wait {
		t.Fatalf("a missing pid file must make it wait: %+v", d)
	}
}

func TestNoDaemon(t *testing.T) {
	tr := newTracker(true)
	tr.Adopted(adoption(300, self, 200), true, at(0))
	tr.Adopted(adoption(302, self, 200), false, at(0)) // already gone when read
	zombie := adoption(303, self, 200)
	zombie.Zombie = true
	tr.Adopted(zombie, true, at(0))
	tr.Exited(300, at(10))
	tr.RootExited(at(20))
	if d := tr.Decide(at(600), 0, false); d.Wait || d.Daemon != nil {
		t.Fatalf("want no daemon, got %+v", d)
	}
}

func TestMembership(t *testing.T) {
	// --no-subreaper: adopted by init; only the lineage ties it to CMD.
	tr := newTracker(false)
	if c := tr.Adopted(adoption(400, 1, 1, 7, 8), true, at(0)); c != nil {
		t.Fatalf("a stranger adopted by init joined the tree: %+v", c)
	}
	if c := tr.Adopted(adoption(300, 1, self, 200, 250), true, at(0)); c == nil {
		t.Fatal("CMD's descendant not in the tree")
	}
	// Lineage truncated above CMD, but through a member.
	if c := tr.Adopted(adoption(301, 1, 300, 290), true, at(0)); c == nil {
		t.Fatal("a member's descendant not in the tree")
	}
	// Same process adopted twice (its first reaper exited): one member.
	if c := tr.Adopted(adoption(300, 1, self, 200, 250), true, at(0)); c != nil {
		t.Fatal("adopted twice, counted twice")
	}
	// Subreaper mode: what run adopts is in the tree whatever the lineage says.
	tr = newTracker(true)
	if c := tr.Adopted(adoption(500, self, 9, 10), true, at(0)); c == nil {
		t.Fatal("an adoption by run itself not in the tree")
	}
}

func TestSuccessorMustDescendFromTheDaemon(t *testing.T) {
	tr := newTracker(true)
	other := tr.Adopted(adoption(300, self, 200), true, at(0))
	d := tr.Adopted(adoption(301, self, 200), true, at(0))
	tr.RootExited(at(0))
	got := tr.Decide(at(600), 301, true)
	if got.Daemon != d {
		t.Fatalf("want 301: %+v", got)
	}
	tr.Follow(d)
	// Re-daemonised: 301 > 320 (middle) > 321, adopted while 301 runs.
	tr.Adopted(adoption(321, self, 200, 301, 320), true, at(700))
	// And through a member: 321 > 330 > 331.
	tr.Adopted(adoption(331, self, 321, 330), true, at(710))
	if got := tr.Decide(at(2000), 0, false); !got.Wait {
		t.Fatalf("decided while the daemon runs: %+v", got)
	}
	tr.Exited(301, at(720))
	tr.RootExited(at(720))
	got = tr.Decide(at(1300), 0, false)
	if got.Daemon == nil || got.Daemon.PID != 321 || len(got.Others) != 1 || got.Others[0].PID != 331 {
		t.Fatalf("want successor 321 (and 331), never 300: %+v", got)
	}
	if other.Alive != true {
		t.Fatal("the unrelated member should still be alive")
	}
	// No descendant alive: none.
	tr = newTracker(true)
	tr.Adopted(adoption(300, self, 200), true, at(0))
	d = tr.Adopted(adoption(301, self, 200), true, at(0))
	tr.RootExited(at(0))
	tr.Follow(d)
	tr.Exited(301, at(10))
	tr.RootExited(at(10))
	if got := tr.Decide(at(600), 0, false); got.Wait || got.Daemon != nil {
		t.Fatalf("want no successor (300 does not descend from 301): %+v", got)
	}
}

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		ws   unix.WaitStatus
		code int
		text string
	}{
		{0, 0, "exited with code 0"},
		{42 << 8, 42, "exited with code 42"},
		{9, 137, "killed by SIGKILL (signal 9)"},
		{15 | 0x80, 143, "killed by SIGTERM (signal 15)"}, // with a core dump
	} {
		if got := exitCode(c.ws); got != c.code {
			t.Errorf("exitCode(%#x) = %d, want %d", int(c.ws), got, c.code)
		}
		if got := output.StatusText(uint32(c.ws)); got != c.text {
			t.Errorf("output.StatusText(%#x) = %q, want %q", int(c.ws), got, c.text)
		}
	}
}

func TestResolveCommand(t *testing.T) {
	t.Setenv("PATH", "/nonexistent:/bin:/usr/bin")
	if p, _, err := resolveCommand("sh"); err != nil || p == "" {
		t.Errorf("sh: %q %v", p, err)
	}
	if _, code, err := resolveCommand("no-such-command-here"); code != ExitNotFound || err == nil {
		t.Errorf("missing command: code %d, %v", code, err)
	}
	if _, code, _ := resolveCommand("/no/such/file"); code != ExitNotFound {
		t.Errorf("missing path: code %d", code)
	}
	if _, code, _ := resolveCommand(t.TempDir()); code != ExitNotExecutable {
		t.Errorf("a directory: code %d", code)
	}
}
