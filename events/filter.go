package events

import "time"

// PIDFilter keeps adoptions in the subtree or the lineage of one process: the
// adopted process is that process, descends from it, or is one of its ancestors.
type PIDFilter struct {
	PID   uint32
	Start time.Duration // from /proc when the filter was set up
}

// Match reports whether the adoption concerns the filter's process tree.
func (f PIDFilter) Match(a *Adoption, t *Table) bool {
	for _, s := range a.Lineage {
		if s.PID == f.PID && sameStart(s.Start, f.Start) {
			return true
		}
	}
	up, _ := t.Ancestors(f.PID, f.Start)
	for _, s := range up {
		if s.PID == a.Child.PID && sameStart(s.Start, a.Child.Start) {
			return true
		}
	}
	return false
}
