package reaping

import (
	"os"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// PreexistingFromProc lists the processes that are children of a reaper now,
// from /proc, for Seed at start-up. The calling process is left out.
//
// Which processes are reapers: /proc shows a pid namespace's init (the last
// NSpid of /proc/PID/status is 1: PID 1 itself, and each container's init),
// but not PR_SET_CHILD_SUBREAPER, which only the kernel's
// task->signal->is_child_subreaper holds. So subreapers that were set before
// adoptwatch started are not listed here; from then on, each adoption names
// its reaper and its kind from the kernel's own flags, and ChildrenFromProc
// adds such a reaper's older children when it is first seen.
func PreexistingFromProc() ([]Preexisting, error) {
	procs, err := readProcs()
	if err != nil {
		return nil, err
	}
	return preexisting(procs, uint32(os.Getpid())), nil
}

// ChildrenFromProc lists r's children that started before since (CLOCK_BOOTTIME,
// adoptwatch's own start): once an adoption has shown that r is a reaper
// (a subreaper set before adoptwatch started, which /proc does not show),
// those may have been adopted before adoptwatch could see it. Children that
// started later and were adopted were seen; the others r started itself.
func ChildrenFromProc(r Reaper, since time.Duration) ([]Preexisting, error) {
	procs, err := procfs.All()
	if err != nil {
		return nil, err
	}
	return childrenOf(procs, r, since), nil
}

// procEntry is one process as /proc shows it, with its pids in each namespace.
type procEntry struct {
	procfs.Stat
	nspid []uint32
}

func readProcs() ([]procEntry, error) {
	all, err := procfs.All()
	if err != nil {
		return nil, err
	}
	out := make([]procEntry, 0, len(all))
	for _, st := range all {
		nspid, err := procfs.NSpids(int(st.PID))
		if err != nil {
			continue // exited meanwhile
		}
		out = append(out, procEntry{st, nspid})
	}
	return out, nil
}

func process(st procfs.Stat) events.Process {
	return events.Process{ID: st.ID, PPID: st.PPID, SID: st.SID, PGID: st.PGID, Comm: st.Comm}
}

// preexisting finds the namespace inits and lists their children but self.
func preexisting(procs []procEntry, self uint32) []Preexisting {
	reapers := map[uint32]Reaper{}
	for _, p := range procs {
		if n := len(p.nspid); n > 0 && p.nspid[n-1] == 1 {
			kind := events.ReaperNS
			if n == 1 {
				kind = events.ReaperInit
			}
			reapers[p.PID] = Reaper{process(p.Stat), kind}
		}
	}
	var out []Preexisting
	for _, p := range procs {
		r, ok := reapers[p.PPID]
		if !ok || p.PID == self || r.Start > p.Start { // a younger "parent": its pid was reused
			continue
		}
		out = append(out, Preexisting{Process: process(p.Stat), Reaper: r, Zombie: p.State == "Z"})
	}
	return out
}

// childrenOf lists r's children that started before since, and not before r.
func childrenOf(procs []procfs.Stat, r Reaper, since time.Duration) []Preexisting {
	var out []Preexisting
	for _, p := range procs {
		if p.PPID == r.PID && p.Start < since && procfs.Ticks(p.Start) >= procfs.Ticks(r.Start) {
			out = append(out, Preexisting{Process: process(p), Reaper: r, Zombie: p.State == "Z"})
		}
	}
	return out
}
