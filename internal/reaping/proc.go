package reaping

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
)

// PreexistingFromProc lists the processes that are children of a reaper now,
// from procRoot (normally /proc), for Seed at start-up.
//
// Which processes are reapers: /proc shows a pid namespace's init (the last
// NSpid of /proc/PID/status is 1: PID 1 itself, and each container's init),
// but not PR_SET_CHILD_SUBREAPER, which only the kernel's
// task->signal->is_child_subreaper holds. So subreapers that were set before
// adoptwatch started are not listed here; from then on, each adoption names
// its reaper and its kind from the kernel's own flags, and ChildrenFromProc
// adds such a reaper's older children when it is first seen.
func PreexistingFromProc(procRoot string, self int) ([]Preexisting, error) {
	procs, err := readProcs(procRoot, self)
	if err != nil {
		return nil, err
	}
	reapers := map[uint32]Reaper{}
	for _, p := range procs {
		if n := len(p.nspid); n > 0 && p.nspid[n-1] == 1 {
			kind := events.ReaperNS
			if n == 1 {
				kind = events.ReaperInit
			}
			reapers[p.PID] = Reaper{p.Process, kind}
		}
	}
	var out []Preexisting
	for _, p := range procs {
		r, ok := reapers[p.PPID]
		if !ok || r.Start > p.Start { // the parent's pid was reused: not this reaper
			continue
		}
		out = append(out, Preexisting{Process: p.Process, Reaper: r, Zombie: p.zombie})
	}
	return out, nil
}

// ChildrenFromProc lists r's children that started before since (CLOCK_BOOTTIME,
// adoptwatch's own start): once an adoption has shown that r is a reaper
// (a subreaper set before adoptwatch started, which /proc does not show),
// those may have been adopted before adoptwatch could see it. Children that
// started later and were adopted were seen; the others r started itself.
func ChildrenFromProc(procRoot string, r Reaper, since time.Duration) ([]Preexisting, error) {
	procs, err := readProcs(procRoot, -1)
	if err != nil {
		return nil, err
	}
	var out []Preexisting
	for _, p := range procs {
		if p.PPID == r.PID && p.Start < since && p.Start >= r.Start/events.ClockTick*events.ClockTick {
			out = append(out, Preexisting{Process: p.Process, Reaper: r, Zombie: p.zombie})
		}
	}
	return out, nil
}

// procEntry is one process as /proc shows it.
type procEntry struct {
	events.Process
	zombie bool
	nspid  []uint32
}

// readProcs reads stat and status of every process in procRoot but self.
func readProcs(procRoot string, self int) ([]procEntry, error) {
	dirs, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var out []procEntry
	for _, d := range dirs {
		pid, err := strconv.ParseUint(d.Name(), 10, 32)
		if err != nil || int(pid) == self {
			continue
		}
		k, err := events.ReadProcStat(filepath.Join(procRoot, d.Name(), "stat"))
		if err != nil || k.PID != uint32(pid) {
			continue // exited meanwhile
		}
		st, err := readStatus(filepath.Join(procRoot, d.Name(), "status"))
		if err != nil {
			continue
		}
		out = append(out, procEntry{Process: events.Process{PID: k.PID, PPID: k.PPID, SID: k.SID, PGID: k.PGID,
			Start: k.Start, Comm: k.Comm}, zombie: st.state == "Z", nspid: st.nspid})
	}
	return out, nil
}

type status struct {
	state string
	nspid []uint32
}

// readStatus reads the State and NSpid lines of /proc/PID/status. NSpid lists
// the pid in each pid namespace, outermost first (Linux 4.1+).
func readStatus(path string) (status, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return status{}, err
	}
	var st status
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		switch key {
		case "State":
			if len(fields) > 0 {
				st.state = fields[0]
			}
		case "NSpid":
			for _, f := range fields {
				n, err := strconv.ParseUint(f, 10, 32)
				if err != nil {
					return status{}, err
				}
				st.nspid = append(st.nspid, uint32(n))
			}
		}
	}
	return st, sc.Err()
}
