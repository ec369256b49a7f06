// Package output renders adoptwatch's events for people (one line each) and
// for programs (JSON lines, a stable schema other tools parse). Every JSON line
// the program emits is built here, with one time format (TimeFormat).
package output

import (
	"encoding/json"
	"fmt"
	"strings"
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
		Lineage:         []StepJSON{},
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
func clock(t time.Time) string { return t.Format("15:04:05.000000") }

// AdoptionText is the one-line, human form of an adoption:
//
//	12:00:01.000001 adopt 4242 mydaemon from 4241 mydaemon to 1 systemd (init) in unit my.service double-fork: bash[900] > mydaemon[4240 exec] > mydaemon[4241 setsid] > mydaemon[4242]
//
// A pid in a child pid namespace shows as HOST/NS (NS as ps inside the
// reaper's namespace prints it); "in ..." names the adopted process's
// container or unit, when it has one.
func AdoptionText(a *events.Adoption) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s adopt %s %s", clock(a.Time), pidText(a.Child.PID, seenByReaper(a.Child)), Escape(a.Child.Comm))
	if a.Zombie {
		b.WriteString(" (zombie)")
	}
	reaper := string(a.Reaper)
	if a.Context != nil && a.Context.ReaperKind != "" {
		reaper += ": " + a.Context.ReaperKind
	}
	fmt.Fprintf(&b, " from %s %s to %s %s (%s)", pidText(a.PrevParent.PID, seenByReaper(a.PrevParent)), Escape(a.PrevParent.Comm),
		pidText(a.NewParent.PID, a.NewParent.NSPid), Escape(a.NewParent.Comm), reaper)
	if a.Context != nil {
		if where := ContextText(a.Context.Child); where != "" {
			b.WriteString(" in " + where)
		}
	}
	fmt.Fprintf(&b, " %s: ", events.DaemonPattern(a.Lineage))
	b.WriteString(LineageText(a.Lineage, a.LineageComplete))
	return b.String()
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
	parts := make([]string, 0, len(steps)+1)
	if !complete {
		parts = append(parts, "…")
	}
	for _, s := range steps {
		marks := ""
		if s.Exec {
			marks += " exec"
		}
		if s.Setsid {
			marks += " setsid"
		}
		parts = append(parts, fmt.Sprintf("%s[%d%s]", Escape(s.Comm), s.PID, marks))
	}
	return strings.Join(parts, " > ")
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
