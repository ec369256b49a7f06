package reapwatch

import (
	"bytes"
	"encoding/json"
	"github.com/adoptwatch/adoptwatch/internal/syncbuf"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/control"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/reaping"
)

// splitLines splits what the printer wrote so far into lines.
func splitLines(b *syncbuf.Buffer) []string {
	return strings.Split(strings.TrimSpace(b.String()), "\n")
}

var node = events.Process{ID: procfs.ID{PID: 4242, Start: time.Second}, Comm: "node"}

func adoption(pid uint32, at time.Time) *output.Adoption {
	child := events.Process{ID: procfs.ID{PID: pid, Start: time.Duration(pid) * time.Second}, Comm: "helper", SID: pid - 1}
	return output.NewAdoption(&events.Adoption{Time: at, Hook: events.HookExitWalk, Child: child,
		PrevParent: events.Process{ID: procfs.ID{PID: pid - 1}, Comm: "helper"}, NewParent: node,
		Reaper: events.ReaperNS, LineageComplete: true,
		Lineage: []events.Step{
			{ID: procfs.ID{PID: pid - 1}, Comm: "helper", SID: pid - 1, Setsid: true, Source: "kernel"},
			{ID: child.ID, Comm: "helper", SID: pid - 1, Source: "kernel"},
		}})
}

// The monitor prints one unreaped line per zombie past zombie-after, a reaped
// line when it is reaped, and hands both (and prompt reaps) to the metrics.
func TestMonitorEvents(t *testing.T) {
	out := &syncbuf.Buffer{}
	p := output.NewPrinter(out, out, true)
	var mu sync.Mutex
	var unreaped []reaping.Unreaped
	var reaped []reaping.Reaped
	m, err := New(Config{ZombieAfter: time.Hour, Printer: p, Probe: func(procfs.ID) reaping.State { return reaping.StateAlive },
		OnUnreaped: func(u reaping.Unreaped) { mu.Lock(); unreaped = append(unreaped, u); mu.Unlock() },
		OnReaped:   func(r reaping.Reaped) { mu.Lock(); reaped = append(reaped, r); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	t0 := time.Now()
	for _, pid := range []uint32{100, 200, 300} {
		m.Adoption(adoption(pid, t0))
		m.Exit(procfs.ID{PID: pid, Start: time.Duration(pid) * time.Second}, t0, 0)
	}
	m.Reaped(procfs.ID{PID: 300, Start: 300 * time.Second}, t0.Add(time.Millisecond)) // prompt
	m.Check(t0.Add(time.Hour + time.Second))
	m.Check(t0.Add(2 * time.Hour)) // once only
	m.Reaped(procfs.ID{PID: 100, Start: 100 * time.Second}, t0.Add(2*time.Hour))

	var lines []map[string]any
	for _, l := range splitLines(out) {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("bad line %q", l)
		}
		lines = append(lines, ev)
	}
	if len(lines) != 3 || lines[0]["event"] != "unreaped" || lines[1]["event"] != "unreaped" || lines[2]["event"] != "reaped" {
		t.Fatalf("lines: %q", splitLines(out))
	}
	if lines[0]["held"] != 2.0 || lines[2]["pid"] != 100.0 || lines[2]["held"] != 1.0 {
		t.Errorf("counts: %v", lines)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(unreaped) != 2 || len(reaped) != 2 || reaped[0].Reported || !reaped[1].Reported {
		t.Errorf("metrics saw %d unreaped, reaped %+v", len(unreaped), reaped)
	}
	st, byKind := m.State()
	if st.Unreaped != 1 || byKind[events.ReaperNS] != 1 || st.Followed != 1 {
		t.Errorf("state %+v %v", st, byKind)
	}
}

// ps lists what is followed, and drops what /proc says is gone, warning once.
func TestMonitorPs(t *testing.T) {
	out, errOut := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	p := output.NewPrinter(out, errOut, false)
	gone := map[uint32]bool{}
	var gmu sync.Mutex
	m, err := New(Config{ZombieAfter: time.Hour, Printer: p,
		Probe: func(id procfs.ID) reaping.State {
			gmu.Lock()
			defer gmu.Unlock()
			if gone[id.PID] {
				return reaping.StateGone
			}
			return reaping.StateAlive
		},
		Seed: func() ([]reaping.Preexisting, error) {
			return []reaping.Preexisting{{Process: events.Process{ID: procfs.ID{PID: 50}, Comm: "old"},
				Reaper: reaping.Reaper{Process: events.Process{ID: procfs.ID{PID: 1}, Comm: "init"}, Kind: events.ReaperInit}}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Adoption(adoption(100, time.Now()))
	m.Adoption(adoption(200, time.Now()))
	text := string(bytes.Join(m.Ps(control.Request{}), nil))
	if !strings.Contains(text, output.PreexistingNote) || !strings.Contains(text, "helper[99 setsid] > helper[100]") ||
		strings.Count(text, "\n") != 4 {
		t.Fatalf("ps:\n%s", text)
	}
	gmu.Lock()
	gone[100] = true
	gmu.Unlock()
	lines := m.Ps(control.Request{JSON: true})
	if len(lines) != 2 || bytes.Contains(bytes.Join(lines, nil), []byte(`"pid":100,`)) {
		t.Fatalf("ps json after 100 was gone:\n%s", bytes.Join(lines, nil))
	}
	m.Check(time.Now().Add(2 * time.Second)) // past the grace for its records
	if st, _ := m.State(); st.Unfollowed != 1 || st.Followed != 2 {
		t.Errorf("the process gone without records not dropped: %+v", st)
	}
}

// What the tracker's bound drops is said, once per change.
func TestMonitorWarnsOnEviction(t *testing.T) {
	out, errOut := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	m, err := New(Config{ZombieAfter: time.Hour, Capacity: 2, Printer: output.NewPrinter(out, errOut, false),
		Probe: func(procfs.ID) reaping.State { return reaping.StateAlive }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, pid := range []uint32{100, 200, 300, 400} {
		m.Adoption(adoption(pid, time.Now()))
	}
	m.Check(time.Now())
	m.Check(time.Now())
	got := strings.Join(splitLines(errOut), "\n")
	if strings.Count(got, "2 adopted processes are no longer followed") != 1 {
		t.Errorf("want one warning about 2 evictions: %q", got)
	}
}

// An adoptee found gone without its reap record is handed to Forget (the
// kernel's entry for it goes), once, with the kernel's identity.
func TestMonitorForgetsGone(t *testing.T) {
	var mu sync.Mutex
	var forgot []procfs.ID
	m, err := New(Config{ZombieAfter: time.Hour,
		Probe: func(id procfs.ID) reaping.State {
			if id.PID == 100 {
				return reaping.StateGone
			}
			return reaping.StateAlive
		},
		Forget: func(id procfs.ID) error { mu.Lock(); forgot = append(forgot, id); mu.Unlock(); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	t0 := time.Now()
	for _, pid := range []uint32{100, 200} {
		m.Adoption(adoption(pid, t0))
		m.Exit(procfs.ID{PID: pid, Start: time.Duration(pid) * time.Second}, t0, 0)
	}
	m.Check(t0.Add(1100 * time.Millisecond)) // found gone: a grace period for its records
	m.Check(t0.Add(2200 * time.Millisecond)) // none came: dropped and forgotten
	m.Check(t0.Add(3300 * time.Millisecond))
	mu.Lock()
	defer mu.Unlock()
	if len(forgot) != 1 || forgot[0] != (procfs.ID{PID: 100, Start: 100 * time.Second}) {
		t.Fatalf("forgot %v, want only 100", forgot)
	}
	if st, _ := m.State(); st.Vanished != 1 || st.Followed != 1 {
		t.Errorf("state %+v", st)
	}
}
