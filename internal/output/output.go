// Package output renders adoptwatch's events for people (one line each) and
// for programs (JSON lines, a stable schema other tools parse). Every JSON line
// the program emits is built here, with one time format (TimeFormat).
package output

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
)

// Party is a process named in a record.
type Party struct {
	PID  uint32 `json:"pid"`
	Comm string `json:"comm"`
	Namespace
	Where
}

// StepJSON is one generation of a lineage.
type StepJSON struct {
	PID    uint32 `json:"pid"`
	Comm   string `json:"comm"`
	SID    uint32 `json:"sid"`
	PGID   uint32 `json:"pgid"`
	Exec   bool   `json:"exec"`
	Setsid bool   `json:"setsid"`
	Source string `json:"source"`
	Where
}

// AdoptionJSON is the schema of an "adopt" line. Field names are an interface:
// change them only compatibly.
type AdoptionJSON struct {
	Event           string     `json:"event"`
	Time            string     `json:"time"`
	PID             uint32     `json:"pid"`
	TID             uint32     `json:"tid"`
	Comm            string     `json:"comm"`
	SID             uint32     `json:"sid"`
	PGID            uint32     `json:"pgid"`
	UID             uint32     `json:"uid"`
	Zombie          bool       `json:"zombie"`
	PrevParent      Party      `json:"prev_parent"`
	NewParent       Party      `json:"new_parent"`
	Reaper          string     `json:"reaper"`
	NSLevel         uint32     `json:"ns_level"`
	Pattern         string     `json:"pattern"`
	Lineage         []StepJSON `json:"lineage"`
	LineageComplete bool       `json:"lineage_complete"`
	Hook            string     `json:"hook"`
	// The adopted process's pid namespace and cgroup (issue 11's context).
	Namespace
	Where
	Slice       string `json:"slice,omitempty"`
	UserManager string `json:"user_manager,omitempty"`
	// ReaperKind names a pid namespace's reaper (reaper "ns-reaper").
	ReaperKind string `json:"reaper_kind,omitempty"`
	// Pidfd is set on the subscriber socket only (subscribe: "passed", ...).
	Pidfd string `json:"pidfd,omitempty"`
}

// TimeFormat is RFC 3339 with nanoseconds: the one time format of every JSON line.
const TimeFormat = time.RFC3339Nano

// stamp formats a line's time.
func stamp(t time.Time) string { return t.Format(TimeFormat) }

// AdoptionObject returns the JSON object for an adoption.
func AdoptionObject(a *events.Adoption) AdoptionJSON {
	out := AdoptionJSON{
		Event: string(events.KindAdopt), Time: stamp(a.Time),
		PID: a.Child.PID, TID: a.Child.TID, Comm: a.Child.Comm, SID: a.Child.SID, PGID: a.Child.PGID,
		UID: a.Child.UID, Zombie: a.Zombie,
		PrevParent: Party{PID: a.PrevParent.PID, Comm: a.PrevParent.Comm},
		NewParent:  Party{PID: a.NewParent.PID, Comm: a.NewParent.Comm},
		Reaper:     string(a.Reaper), NSLevel: a.NSLevel,
		Pattern:         string(events.DaemonPattern(a.Lineage)),
		Lineage:         make([]StepJSON, 0, len(a.Lineage)),
		LineageComplete: a.LineageComplete,
		Hook:            string(a.Hook),
	}
	for _, s := range a.Lineage {
		out.Lineage = append(out.Lineage, StepJSON{PID: s.PID, Comm: s.Comm, SID: s.SID, PGID: s.PGID,
			Exec: s.Exec, Setsid: s.Setsid, Source: s.Source})
	}
	addContext(&out, a)
	return out
}

// AdoptionLine is the JSON line (with its newline) for an adoption.
func AdoptionLine(a *events.Adoption) []byte { return line(AdoptionObject(a)) }

// line marshals one JSON line. Every value given is plain data: it cannot fail.
func line(v any) []byte {
	b, _ := json.Marshal(v)
	return append(b, '\n')
}

// TaskJSON is the schema of "fork", "exec" and "exit" lines.
type TaskJSON struct {
	Event       string  `json:"event"`
	Time        string  `json:"time"`
	PID         uint32  `json:"pid"`
	TID         uint32  `json:"tid"`
	PPID        uint32  `json:"ppid"`
	Comm        string  `json:"comm"`
	SID         uint32  `json:"sid"`
	Child       *Party  `json:"child,omitempty"`
	Status      *uint32 `json:"status,omitempty"`
	ProcessExit *bool   `json:"process_exit,omitempty"`
}

// TaskLine is the JSON line for a fork, exec or exit.
func TaskLine(ev *events.Task) []byte {
	p := ev.Process
	out := TaskJSON{Event: string(ev.Kind), Time: stamp(ev.Time),
		PID: p.PID, TID: p.TID, PPID: p.PPID, Comm: p.Comm, SID: p.SID}
	if ev.Child != nil {
		out.Child = &Party{PID: ev.Child.PID, Comm: ev.Child.Comm}
	}
	if ev.Kind == events.KindExit {
		status, whole := ev.ExitStatus, ev.ProcessExit
		out.Status, out.ProcessExit = &status, &whole
	}
	return line(out)
}

// clock is the time column of text lines.
func clock(t time.Time) string { return t.Format(clockFormat) }

const clockFormat = "15:04:05.000000"

// AdoptionText is the one-line, human form of an adoption:
//
//	12:00:01.000001 adopt 4242 mydaemon from 4241 mydaemon to 1 systemd (init) in unit my.service double-fork: bash[900] > mydaemon[4240 exec] > mydaemon[4241 setsid] > mydaemon[4242]
//
// A pid in a child pid namespace shows as HOST/NS (NS as ps inside the
// reaper's namespace prints it); "in ..." names the adopted process's
// container or unit, when it has one. It is built by appending to one
// buffer: fmt cost more than the rest of a text line's handling (issue 12).
func AdoptionText(a *events.Adoption) string {
	b := make([]byte, 0, 160+24*len(a.Lineage))
	b = a.Time.AppendFormat(b, clockFormat)
	b = append(b, " adopt "...)
	b = party(b, a.Child.PID, seenByReaper(a.Child), a.Child.Comm)
	if a.Zombie {
		b = append(b, " (zombie)"...)
	}
	b = append(b, " from "...)
	b = party(b, a.PrevParent.PID, seenByReaper(a.PrevParent), a.PrevParent.Comm)
	b = append(b, " to "...)
	b = party(b, a.NewParent.PID, a.NewParent.NSPid, a.NewParent.Comm)
	b = append(b, " ("...)
	b = append(b, a.Reaper...)
	if a.Context != nil && a.Context.ReaperKind != "" {
		b = append(b, ": "...)
		b = append(b, a.Context.ReaperKind...)
	}
	b = append(b, ')')
	if a.Context != nil {
		if where := ContextText(a.Context.Child); where != "" {
			b = append(b, " in "...)
			b = append(b, where...)
		}
	}
	b = append(b, ' ')
	b = append(b, events.DaemonPattern(a.Lineage)...)
	b = append(b, ": "...)
	b = appendLineage(b, a.Lineage, a.LineageComplete)
	return string(b)
}

// party is "PID COMM", the pid as pidText shows it.
func party(b []byte, pid, nsPid uint32, comm string) []byte {
	b = strconv.AppendUint(b, uint64(pid), 10)
	if nsPid != 0 && nsPid != pid {
		b = append(b, '/')
		b = strconv.AppendUint(b, uint64(nsPid), 10)
	}
	b = append(b, ' ')
	return append(b, Escape(comm)...)
}

// seenByReaper is p's pid as ps shows it in the new parent's namespace (or,
// where the kernel did not say, in its own).
func seenByReaper(p events.Process) uint32 {
	if p.ReaperNSPid != 0 {
		return p.ReaperNSPid
	}
	return p.NSPid
}

// LineageText renders a lineage oldest first: comm[pid marks] > ...
func LineageText(steps []events.Step, complete bool) string {
	return string(appendLineage(nil, steps, complete))
}

func appendLineage(b []byte, steps []events.Step, complete bool) []byte {
	sep := false
	if !complete {
		b = append(b, "…"...)
		sep = true
	}
	for _, s := range steps {
		if sep {
			b = append(b, " > "...)
		}
		sep = true
		b = append(b, Escape(s.Comm)...)
		b = append(b, '[')
		b = strconv.AppendUint(b, uint64(s.PID), 10)
		if s.Exec {
			b = append(b, " exec"...)
		}
		if s.Setsid {
			b = append(b, " setsid"...)
		}
		b = append(b, ']')
	}
	return b
}

// TaskText is the one-line form of a fork, exec or exit.
func TaskText(ev *events.Task) string {
	p := ev.Process
	comm := Escape(p.Comm)
	switch ev.Kind {
	case events.KindFork:
		return fmt.Sprintf("%s fork  %d %s > %d", clock(ev.Time), p.PID, comm, ev.Child.PID)
	case events.KindExec:
		return fmt.Sprintf("%s exec  %d %s", clock(ev.Time), p.PID, comm)
	default:
		if !ev.ProcessExit {
			return fmt.Sprintf("%s exit  %d %s thread %d", clock(ev.Time), p.PID, comm, p.TID)
		}
		return fmt.Sprintf("%s exit  %d %s %s", clock(ev.Time), p.PID, comm, StatusText(ev.ExitStatus))
	}
}

// StatusText describes a wait(2) status, the one wording of the whole
// program: "exited with code 0", "killed by SIGKILL (signal 9)".
func StatusText(status uint32) string {
	ws := unix.WaitStatus(status)
	if ws.Signaled() {
		return fmt.Sprintf("killed by %s (signal %d)", unix.SignalName(ws.Signal()), int(ws.Signal()))
	}
	return fmt.Sprintf("exited with code %d", ws.ExitStatus())
}
