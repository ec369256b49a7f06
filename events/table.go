package events

import (
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// Table remembers processes adoptwatch knows of: those running at start-up and
// those seen in records since. It is bounded: past Capacity, the oldest entries
// are forgotten first (counted in Evicted). It is not safe for concurrent use:
// the Assembler that owns it is its only user.
type Table struct {
	Capacity int
	procs    map[uint32]procfs.Stat
	order    []uint32 // insertion order, for eviction
	Evicted  uint64
	scratch  []Step // finishAdoption's walk up the table, reused
}

// NewTable returns an empty table holding at most capacity processes.
func NewTable(capacity int) *Table {
	return &Table{Capacity: capacity, procs: make(map[uint32]procfs.Stat)}
}

// Len is the number of processes known.
func (t *Table) Len() int { return len(t.procs) }

// Put records a process, replacing any earlier process with the same pid.
func (t *Table) Put(k procfs.Stat) {
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
func (t *Table) Forget(id procfs.ID) {
	if k, ok := t.procs[id.PID]; ok && k.ID.Same(id) {
		delete(t.procs, id.PID)
	}
}

// Lookup finds the process with this identity. A reused pid never matches:
// its start time differs.
func (t *Table) Lookup(id procfs.ID) (procfs.Stat, bool) {
	k, ok := t.procs[id.PID]
	if !ok || !k.ID.Same(id) {
		return procfs.Stat{}, false
	}
	return k, true
}

// Get finds the process with this pid, whatever its start time.
func (t *Table) Get(pid uint32) (procfs.Stat, bool) {
	k, ok := t.procs[pid]
	return k, ok
}

// maxAncestry bounds the walk up the table (it cannot loop: pids are checked).
const maxAncestry = 64

// Ancestors returns the known ancestors of process id, oldest first, not
// including the process itself, and whether the walk reached the top (a
// process whose parent is 0: init or kthreadd).
func (t *Table) Ancestors(id procfs.ID) (up []Step, complete bool) {
	return t.appendAncestors(nil, id)
}

// appendAncestors is Ancestors, built in up (which must be empty): the
// finished adoption path reuses one buffer for the walk.
func (t *Table) appendAncestors(up []Step, id procfs.ID) ([]Step, bool) {
	k, ok := t.Lookup(id)
	if !ok {
		return up, false
	}
	// A loop in the table ends the walk. The walk is short (maxAncestry),
	// so a scan of what it has found beats a set built for every adoption.
	seen := func(pid uint32) bool {
		if pid == id.PID {
			return true
		}
		for _, s := range up {
			if s.PID == pid {
				return true
			}
		}
		return false
	}
	for len(up) < maxAncestry && k.PPID != 0 && !seen(k.PPID) {
		parent, ok := t.procs[k.PPID]
		if !ok || parent.Start > k.Start {
			break // unknown, or a newer process reusing the parent's pid
		}
		up = append(up, Step{ID: parent.ID, Comm: parent.Comm, SID: parent.SID, PGID: parent.PGID, Source: "proc"})
		k = parent
	}
	for i, j := 0, len(up)-1; i < j; i, j = i+1, j-1 {
		up[i], up[j] = up[j], up[i]
	}
	return up, k.PPID == 0
}

// finishAdoption completes an adoption's lineage with what the table knows
// above the oldest generation the kernel recorded, when that one predates
// adoptwatch (preexisting), and remembers the processes the adoption names.
func (t *Table) finishAdoption(a *Adoption, preexisting bool) {
	if preexisting && len(a.Lineage) > 0 {
		above, complete := t.appendAncestors(t.scratch[:0], a.Lineage[0].ID)
		t.scratch = above[:0]
		// One allocation per adoption, of the final size (issue 12: the
		// GC's share of the watcher's CPU follows the bytes allocated).
		lineage := make([]Step, 0, len(above)+len(a.Lineage))
		a.Lineage = append(append(lineage, above...), a.Lineage...)
		a.LineageComplete = complete
		markSetsid(a.Lineage)
	}
	t.Put(procfs.Stat{ID: a.Child.ID, PPID: a.NewParent.PID, SID: a.Child.SID, PGID: a.Child.PGID, Comm: a.Child.Comm})
	if a.Zombie {
		t.Forget(a.Child.ID)
	}
}

// observeTask keeps the table current from fork, exec and exit records.
func (t *Table) observeTask(ev *Task) {
	p := ev.Process
	switch ev.Kind {
	case KindFork:
		c := ev.Child
		t.Put(procfs.Stat{ID: c.ID, PPID: p.PID, SID: c.SID, PGID: c.PGID, Comm: c.Comm})
	case KindExec:
		t.Put(procfs.Stat{ID: p.ID, PPID: p.PPID, SID: p.SID, PGID: p.PGID, Comm: p.Comm})
	case KindExit:
		if ev.ProcessExit {
			t.Forget(p.ID)
		}
	}
}

// SeedFromProc adds every process running now (procfs.All).
func (t *Table) SeedFromProc() error {
	all, err := procfs.All()
	if err != nil {
		return err
	}
	for _, st := range all {
		t.Put(st)
	}
	return nil
}
