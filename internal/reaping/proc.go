package reaping

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
// its reaper and its kind from the kernel's own flags.
func PreexistingFromProc(procRoot string, self int) ([]Preexisting, error) {
	dirs, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	type proc struct {
		known  events.Known
		zombie bool
	}
	var procs []proc
	reapers := map[uint32]Reaper{}
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
		procs = append(procs, proc{k, st.state == "Z"})
		if n := len(st.nspid); n > 0 && st.nspid[n-1] == 1 {
			kind := events.ReaperNS
			if n == 1 {
				kind = events.ReaperInit
			}
			reapers[k.PID] = Reaper{events.Process{PID: k.PID, PPID: k.PPID, SID: k.SID, PGID: k.PGID,
				Start: k.Start, Comm: k.Comm}, kind}
		}
	}
	var out []Preexisting
	for _, p := range procs {
		r, ok := reapers[p.known.PPID]
		if !ok || r.Start > p.known.Start { // the parent's pid was reused: not this reaper
			continue
		}
		k := p.known
		out = append(out, Preexisting{Process: events.Process{PID: k.PID, PPID: k.PPID, SID: k.SID,
			PGID: k.PGID, Start: k.Start, Comm: k.Comm}, Reaper: r, Zombie: p.zombie})
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
