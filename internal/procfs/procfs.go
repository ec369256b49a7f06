// Package procfs is adoptwatch's one reader of /proc: the identity of a
// process (pid and start time) and how two are compared, /proc/PID/stat, the
// list of running processes, and /proc's unit of time. Whatever else user space
// learns from /proc (cgroups, namespaces) belongs here too.
package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTick is the unit of /proc/PID/stat's start time (USER_HZ, 100 on Linux).
const ClockTick = 10 * time.Millisecond

// ID is a process's identity: its pid and its start time (CLOCK_BOOTTIME, as
// the kernel records it and /proc shows it). A pid alone may have been reused.
type ID struct {
	PID   uint32
	Start time.Duration
}

// Same compares two identities at /proc's precision, so a process read from
// /proc matches the same process seen by the kernel side.
func (a ID) Same(b ID) bool { return a.PID == b.PID && SameStart(a.Start, b.Start) }

// StartTicks is the start time in /proc's clock ticks.
func (a ID) StartTicks() uint64 { return Ticks(a.Start) }

// SameStart compares start times at /proc's precision.
func SameStart(a, b time.Duration) bool { return Ticks(a) == Ticks(b) }

// Ticks converts a CLOCK_BOOTTIME duration to /proc's clock ticks.
func Ticks(d time.Duration) uint64 { return uint64(d / ClockTick) }

// Stat is what adoptwatch reads of /proc/PID/stat.
type Stat struct {
	ID
	PPID  uint32
	PGID  uint32
	SID   uint32
	State string        // "R", "S", "Z", ...
	CPU   time.Duration // user + system time so far, at clock-tick precision
	Comm  string
}

// dir is /proc; a variable only so that tests may point it elsewhere.
var dir = "/proc"

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	data, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", dir, pid))
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(data)
}

// Lookup reads the identity of whatever process pid names now.
func Lookup(pid int) (ID, error) {
	st, err := ReadStat(pid)
	return st.ID, err
}

// Running reports whether id still names a running (or unreaped) process.
func Running(id ID) bool {
	now, err := Lookup(int(id.PID))
	return err == nil && now.Same(id)
}

// ParseStat parses the contents of /proc/PID/stat. The command name is
// between the first '(' and the last ')': it may itself contain both.
func ParseStat(data []byte) (Stat, error) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("malformed stat: no command name")
	}
	pid, err := strconv.ParseUint(strings.TrimSpace(string(data[:open])), 10, 32)
	if err != nil {
		return Stat{}, fmt.Errorf("malformed stat pid: %w", err)
	}
	// Fields after the name, from field 3 (state) on.
	rest := strings.Fields(string(data[end+1:]))
	const startField = 22 - 3 // starttime is field 22
	if len(rest) <= startField {
		return Stat{}, fmt.Errorf("malformed stat: %d fields", len(rest)+2)
	}
	num := func(i int) (uint64, error) { return strconv.ParseUint(rest[i], 10, 64) }
	ppid, err1 := num(4 - 3)
	pgid, err2 := num(5 - 3)
	sid, err3 := num(6 - 3)
	utime, err5 := num(14 - 3)
	stime, err6 := num(15 - 3)
	start, err4 := num(startField)
	for _, err := range []error{err1, err2, err3, err4, err5, err6} {
		if err != nil {
			return Stat{}, fmt.Errorf("malformed stat: %w", err)
		}
	}
	return Stat{
		ID:   ID{PID: uint32(pid), Start: time.Duration(start) * ClockTick},
		PPID: uint32(ppid), PGID: uint32(pgid), SID: uint32(sid),
		State: rest[0], CPU: time.Duration(utime+stime) * ClockTick, Comm: string(data[open+1 : end]),
	}, nil
}

// All reads every process in /proc now. Processes that exit during the walk
// are left out.
func All() ([]Stat, error) {
	dirs, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]Stat, 0, len(dirs))
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		st, err := ReadStat(pid)
		if err != nil || int(st.PID) != pid {
			continue // exited meanwhile
		}
		out = append(out, st)
	}
	return out, nil
}

// Children lists the processes (zombies included) whose parent is pid now.
func Children(pid int) []Stat {
	all, _ := All()
	var out []Stat
	for _, st := range all {
		if int(st.PPID) == pid {
			out = append(out, st)
		}
	}
	return out
}
