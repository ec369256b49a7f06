package events

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ClockTick is the unit of /proc/PID/stat's start time (USER_HZ, 100 on Linux).
const ClockTick = 10 * time.Millisecond

// Known is what the table remembers of one process.
type Known struct {
	PID   uint32
	PPID  uint32
	SID   uint32
	PGID  uint32
	Start time.Duration // CLOCK_BOOTTIME; from /proc only to clockTick precision
	Comm  string
}

// SameStart compares start times at /proc's precision, so a process read from
// /proc matches the same process seen by the kernel side.
func SameStart(a, b time.Duration) bool {
	return a/ClockTick == b/ClockTick
}

// Table remembers processes adoptwatch knows of: those running at start-up and
// those seen in records since. It is bounded: past Capacity, the oldest entries
// are forgotten first. It is not safe for concurrent use.
type Table struct {
	Capacity int
	procs    map[uint32]Known
	order    []uint32 // insertion order, for eviction
	Evicted  uint64
}

// NewTable returns an empty table holding at most capacity processes.
func NewTable(capacity int) *Table {
	return &Table{Capacity: capacity, procs: make(map[uint32]Known)}
}

// Len is the number of processes known.
func (t *Table) Len() int { return len(t.procs) }

// Put records a process, replacing any earlier process with the same pid.
func (t *Table) Put(k Known) {
	if _, ok := t.procs[k.PID]; !ok {
		t.order = append(t.order, k.PID)
	}
	t.procs[k.PID] = k
	for len(t.procs) > t.Capacity && len(t.order) > 0 {
		oldest := t.order[0]
		t.order = t.order[1:]
		if _, ok := t.procs[oldest]; ok {
			delete(t.procs, oldest)
			t.Evicted++
		}
	}
	if len(t.order) > 2*t.Capacity { // drop pids already deleted
		t.compact()
	}
}

func (t *Table) compact() {
	kept := t.order[:0]
	for _, pid := range t.order {
		if _, ok := t.procs[pid]; ok {
			kept = append(kept, pid)
		}
	}
	t.order = kept
}

// Forget drops a process that has exited, if the table still holds that one.
func (t *Table) Forget(pid uint32, start time.Duration) {
	if k, ok := t.procs[pid]; ok && SameStart(k.Start, start) {
		delete(t.procs, pid)
	}
}

// Lookup finds the process with this pid and start time. A reused pid never
// matches: its start time differs.
func (t *Table) Lookup(pid uint32, start time.Duration) (Known, bool) {
	k, ok := t.procs[pid]
	if !ok || !SameStart(k.Start, start) {
		return Known{}, false
	}
	return k, true
}

// Get finds the process with this pid, whatever its start time.
func (t *Table) Get(pid uint32) (Known, bool) {
	k, ok := t.procs[pid]
	return k, ok
}

// maxAncestry bounds the walk up the table (it cannot loop: pids are checked).
const maxAncestry = 64

// Ancestors returns the known ancestors of the process (pid, start), oldest first,
// not including the process itself, and whether the walk reached the top (a
// process whose parent is 0: init or kthreadd).
func (t *Table) Ancestors(pid uint32, start time.Duration) (up []Step, complete bool) {
	k, ok := t.Lookup(pid, start)
	if !ok {
		return nil, false
	}
	seen := map[uint32]bool{pid: true}
	for len(up) < maxAncestry && k.PPID != 0 && !seen[k.PPID] {
		parent, ok := t.procs[k.PPID]
		if !ok || parent.Start > k.Start {
			break // unknown, or a newer process reusing the parent's pid
		}
		seen[parent.PID] = true
		up = append(up, Step{PID: parent.PID, Start: parent.Start, Comm: parent.Comm,
			SID: parent.SID, PGID: parent.PGID, Source: "proc"})
		k = parent
	}
	for i, j := 0, len(up)-1; i < j; i, j = i+1, j-1 {
		up[i], up[j] = up[j], up[i]
	}
	return up, k.PPID == 0
}

// Resolve completes an adoption's lineage with what the table knows above the
// oldest generation the kernel recorded, when that one predates adoptwatch,
// and remembers the processes the adoption names.
func (t *Table) Resolve(a *Adoption) {
	if a.lineagePreexisting && len(a.Lineage) > 0 {
		oldest := a.Lineage[0]
		above, complete := t.Ancestors(oldest.PID, oldest.Start)
		a.Lineage = append(above, a.Lineage...)
		a.LineageComplete = complete
		markSetsid(a.Lineage)
	}
	t.Put(Known{PID: a.Child.PID, PPID: a.NewParent.PID, SID: a.Child.SID, PGID: a.Child.PGID,
		Start: a.Child.Start, Comm: a.Child.Comm})
	if a.Zombie {
		t.Forget(a.Child.PID, a.Child.Start)
	}
}

// ObserveTask keeps the table current from fork, exec and exit records.
func (t *Table) ObserveTask(ev *Task) {
	p := ev.Process
	switch ev.Kind {
	case KindFork:
		c := ev.Child
		t.Put(Known{PID: c.PID, PPID: p.PID, SID: c.SID, PGID: c.PGID, Start: c.Start, Comm: c.Comm})
	case KindExec:
		t.Put(Known{PID: p.PID, PPID: p.PPID, SID: p.SID, PGID: p.PGID, Start: p.Start, Comm: p.Comm})
	case KindExit:
		if ev.ProcessExit {
			t.Forget(p.PID, p.Start)
		}
	}
}

// SeedFromProc adds every process in procRoot (normally /proc).
func (t *Table) SeedFromProc(procRoot string) error {
	dirs, err := os.ReadDir(procRoot)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		pid, err := strconv.ParseUint(d.Name(), 10, 32)
		if err != nil {
			continue
		}
		k, err := ReadProcStat(filepath.Join(procRoot, d.Name(), "stat"))
		if err != nil || k.PID != uint32(pid) {
			continue // exited meanwhile
		}
		t.Put(k)
	}
	return nil
}

// ReadProcStat reads one /proc/PID/stat file.
func ReadProcStat(path string) (Known, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Known{}, err
	}
	return ParseProcStat(data)
}

// ParseProcStat parses the contents of /proc/PID/stat. The command name is
// between the first '(' and the last ')': it may itself contain both.
func ParseProcStat(data []byte) (Known, error) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return Known{}, fmt.Errorf("malformed stat: no command name")
	}
	pid, err := strconv.ParseUint(strings.TrimSpace(string(data[:open])), 10, 32)
	if err != nil {
		return Known{}, fmt.Errorf("malformed stat pid: %w", err)
	}
	// Fields after the name, from field 3 (state) on.
	rest := strings.Fields(string(data[end+1:]))
	const startField = 22 - 3 // starttime is field 22
	if len(rest) <= startField {
		return Known{}, fmt.Errorf("malformed stat: %d fields", len(rest)+2)
	}
	num := func(i int) (uint64, error) { return strconv.ParseUint(rest[i], 10, 64) }
	ppid, err1 := num(4 - 3)
	pgid, err2 := num(5 - 3)
	sid, err3 := num(6 - 3)
	start, err4 := num(startField)
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return Known{}, fmt.Errorf("malformed stat: %w", err)
		}
	}
	return Known{
		PID: uint32(pid), PPID: uint32(ppid), PGID: uint32(pgid), SID: uint32(sid),
		Start: time.Duration(start) * ClockTick, Comm: string(data[open+1 : end]),
	}, nil
}
