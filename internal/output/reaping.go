package output

import (
	"bytes"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/reaping"
)

// PreexistingNote is what ps says of a process that was a reaper's child
// before adoptwatch started: nothing about its origin is invented.
const PreexistingNote = "parent is a reaper; adopted before adoptwatch started, origin unknown"

// UnreapedJSON is the schema of an "unreaped" line: an adopted zombie its
// reaper has left unreaped past --zombie-after.
type UnreapedJSON struct {
	Event     string  `json:"event"`
	Time      string  `json:"time"`
	PID       uint32  `json:"pid"`
	Comm      string  `json:"comm"`
	Exited    string  `json:"exited"`
	Status    uint32  `json:"status"` // wait(2) status
	Waited    float64 `json:"waited_seconds"`
	Reaper    string  `json:"reaper"`
	NewParent Party   `json:"new_parent"`
	// Held: the reaper's adopted zombies unreaped past --zombie-after now
	// (this one included); Oldest: the longest wait among them.
	Held   int     `json:"held"`
	Oldest float64 `json:"oldest_seconds"`
	// The zombie's pid namespace and cgroup (unit, container), as at its adoption.
	Namespace
	Where
	adopted
}

// adopted is what is known of how a followed process was adopted.
type adopted struct {
	Origin          string     `json:"origin"`            // "adopted" or "preexisting"
	Adopted         string     `json:"adopted,omitempty"` // when; none for preexisting
	PrevParent      *Party     `json:"prev_parent,omitempty"`
	Pattern         string     `json:"pattern,omitempty"`
	Lineage         []StepJSON `json:"lineage"`
	LineageComplete bool       `json:"lineage_complete"`
	Note            string     `json:"note,omitempty"`
}

func adoptedOf(e reaping.Entry) adopted {
	out := adopted{Origin: string(e.Origin), Lineage: []StepJSON{}, LineageComplete: e.LineageComplete}
	if e.Origin == reaping.OriginPreexisting {
		out.Note = PreexistingNote
		return out
	}
	out.Adopted = stamp(e.Adopted)
	var prev *cgroups.Info
	if e.Context != nil {
		prev = &e.Context.PrevParent
	}
	from := partyOf(e.From, prev)
	out.PrevParent = &from
	out.Pattern = string(e.Pattern)
	for i, s := range e.Lineage {
		step := StepJSON{PID: s.PID, Comm: s.Comm, SID: s.SID, PGID: s.PGID, Exec: s.Exec, Setsid: s.Setsid, Source: s.Source}
		if e.Context != nil && i < len(e.Context.Lineage) {
			step.Where = whereOf(e.Context.Lineage[i], false)
		}
		out.Lineage = append(out.Lineage, step)
	}
	return out
}

// partyOf is a process named in a record, with its cgroup where known.
func partyOf(p events.Process, info *cgroups.Info) Party {
	out := Party{PID: p.PID, Comm: p.Comm, Namespace: namespaceOf(p)}
	if info != nil {
		out.Where = whereOf(*info, true)
	}
	return out
}

// contextOf is where the entry's process and its reaper were, as adopted.
func contextOf(e reaping.Entry) (child, reaper *cgroups.Info) {
	if e.Context == nil {
		return nil, nil
	}
	return &e.Context.Child, &e.Context.NewParent
}

// reaperText is "4242 node (ns-reaper, container docker:3f2a…)".
func reaperText(e reaping.Entry) string {
	kind := string(e.Reaper.Kind)
	if e.Context != nil && e.Context.ReaperKind != "" {
		kind += ": " + e.Context.ReaperKind
	}
	if _, r := contextOf(e); r != nil {
		if where := ContextText(*r); where != "" {
			kind += ", " + where
		}
	}
	return fmt.Sprintf("%d %s (%s)", e.Reaper.PID, Escape(e.Reaper.Comm), kind)
}

// whereText is " in container …" for a process, or "".
func whereText(e reaping.Entry) string {
	if c, _ := contextOf(e); c != nil {
		if where := ContextText(*c); where != "" {
			return " in " + where
		}
	}
	return ""
}

// Unreaped prints an unreaped event.
func (p *Printer) Unreaped(u reaping.Unreaped) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.add(UnreapedLine(u))
	} else {
		p.addLine(UnreapedText(u))
	}
}

// Reaped prints a reaped event.
func (p *Printer) Reaped(r reaping.Reaped) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.add(ReapedLine(r))
	} else {
		p.addLine(ReapedText(r))
	}
}

// UnreapedLine is the JSON line for an unreaped event.
func UnreapedLine(u reaping.Unreaped) []byte {
	z := u.Zombie
	child, reaper := contextOf(z)
	out := UnreapedJSON{
		Event: "unreaped", Time: stamp(u.Time), PID: z.Process.PID, Comm: z.Process.Comm,
		Exited: stamp(z.Exited), Status: z.ExitStatus, Waited: u.Waited.Seconds(),
		Reaper: string(z.Reaper.Kind), NewParent: partyOf(z.Reaper.Process, reaper),
		Held: u.Held, Oldest: u.Oldest.Seconds(), Namespace: namespaceOf(z.Process), adopted: adoptedOf(z),
	}
	if child != nil {
		out.Where = whereOf(*child, true)
	}
	return line(out)
}

// UnreapedText is the one-line, human form of an unreaped event:
//
//	12:00:41.000000 unreaped 4300 helper: reaper 4242 node (ns-reaper) has not reaped 12 adopted zombies; oldest 40s; this one exited 31s ago: bash[900] > helper[4299 setsid] > helper[4300]
func UnreapedText(u reaping.Unreaped) string {
	z := u.Zombie
	return fmt.Sprintf("%s unreaped %d %s%s: reaper %s has not reaped %s; oldest %s; this one exited %s ago: %s",
		clock(u.Time), z.Process.PID, Escape(z.Process.Comm), whereText(z), reaperText(z),
		plural(u.Held, "adopted zombie"), Seconds(u.Oldest), Seconds(u.Waited), origin(z))
}

// ReapedJSON is the schema of a "reaped" line: a zombie reported unreaped
// that its reaper has reaped at last.
type ReapedJSON struct {
	Event     string  `json:"event"`
	Time      string  `json:"time"`
	PID       uint32  `json:"pid"`
	Comm      string  `json:"comm"`
	Exited    string  `json:"exited"`
	Status    uint32  `json:"status"`
	Waited    float64 `json:"waited_seconds"` // from exit to reap
	Reaper    string  `json:"reaper"`
	NewParent Party   `json:"new_parent"`
	Held      int     `json:"held"` // the reaper's zombies still unreaped past --zombie-after
	Namespace
	Where
}

// ReapedLine is the JSON line for a reaped event.
func ReapedLine(r reaping.Reaped) []byte {
	z := r.Zombie
	child, reaper := contextOf(z)
	out := ReapedJSON{
		Event: "reaped", Time: stamp(r.Time), PID: z.Process.PID, Comm: z.Process.Comm,
		Exited: stamp(z.Exited), Status: z.ExitStatus, Waited: r.Waited.Seconds(),
		Reaper: string(z.Reaper.Kind), NewParent: partyOf(z.Reaper.Process, reaper), Held: r.Held,
		Namespace: namespaceOf(z.Process),
	}
	if child != nil {
		out.Where = whereOf(*child, true)
	}
	return line(out)
}

// ReapedText is the one-line form of a reaped event:
//
//	12:01:41.000000 reaped 4300 helper after 1m31s by reaper 4242 node (ns-reaper); it still has not reaped 11 adopted zombies
func ReapedText(r reaping.Reaped) string {
	z := r.Zombie
	s := fmt.Sprintf("%s reaped %d %s%s after %s by reaper %s", clock(r.Time), z.Process.PID, Escape(z.Process.Comm),
		whereText(z), Seconds(r.Waited), reaperText(z))
	if r.Held > 0 {
		s += fmt.Sprintf("; it still has not reaped %s", plural(r.Held, "adopted zombie"))
	}
	return s
}

// PsJSON is the schema of one `adoptwatch ps --json` line: a process adopted
// (or a reaper's child since before adoptwatch started), alive or unreaped.
type PsJSON struct {
	Event     string `json:"event"` // "ps"
	Time      string `json:"time"`  // when the list was made
	PID       uint32 `json:"pid"`
	Comm      string `json:"comm"`
	SID       uint32 `json:"sid"`
	State     string `json:"state"` // "alive" or "zombie"
	Exited    string `json:"exited,omitempty"`
	Reaper    string `json:"reaper"`
	NewParent Party  `json:"new_parent"`
	Namespace
	Where
	adopted
}

// PsLines is the answer to `ps json`: one line per entry.
func PsLines(now time.Time, entries []reaping.Entry) [][]byte {
	out := make([][]byte, 0, len(entries))
	for _, e := range entries {
		child, reaper := contextOf(e)
		p := PsJSON{Event: "ps", Time: stamp(now), PID: e.Process.PID, Comm: e.Process.Comm,
			SID: e.Process.SID, State: "alive", Reaper: string(e.Reaper.Kind),
			NewParent: partyOf(e.Reaper.Process, reaper), Namespace: namespaceOf(e.Process), adopted: adoptedOf(e)}
		if child != nil {
			p.Where = whereOf(*child, true)
		}
		if !e.Exited.IsZero() {
			p.State, p.Exited = "zombie", stamp(e.Exited)
		}
		out = append(out, line(p))
	}
	return out
}

// PsText is the answer to `ps`: a header and one aligned row per entry,
// the lineage last as it is the longest.
//
//	PID   COMM     STATE       WHERE                    ADOPTED          BY                      FROM         PATTERN      LINEAGE
//	4300  helper   zombie 40s  container docker:3f2a…  12:00:01 (2m0s)  4242 node (ns-reaper)  4299 helper  double-fork  bash[900] > helper[4299 setsid] > helper[4300]
func PsText(now time.Time, entries []reaping.Entry) [][]byte {
	var buf bytes.Buffer
	w := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PID\tCOMM\tSTATE\tWHERE\tADOPTED\tBY\tFROM\tPATTERN\tLINEAGE")
	for _, e := range entries {
		state := "alive"
		if !e.Exited.IsZero() {
			state = "zombie " + Seconds(now.Sub(e.Exited))
		}
		by := reaperText(e)
		where := "-"
		if c, _ := contextOf(e); c != nil {
			if t := ContextText(*c); t != "" {
				where = t
			}
		}
		when, from, pattern := "before start", "?", "?"
		if e.Origin == reaping.OriginAdopted {
			when = fmt.Sprintf("%s (%s ago)", e.Adopted.Format("15:04:05"), Seconds(now.Sub(e.Adopted)))
			from = fmt.Sprintf("%d %s", e.From.PID, Escape(e.From.Comm))
			pattern = string(e.Pattern)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Process.PID, Escape(e.Process.Comm), state, where, when, by, from,
			pattern, origin(e))
	}
	w.Flush()
	lines := bytes.SplitAfter(buf.Bytes(), []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	return lines
}

// origin is the lineage of an adopted process, or the note for one that
// predates adoptwatch.
func origin(e reaping.Entry) string {
	if e.Origin == reaping.OriginPreexisting {
		return PreexistingNote
	}
	return LineageText(e.Lineage, e.LineageComplete)
}

// Seconds renders a duration to the second (to the millisecond below one
// second): "40s", "2m5s", "350ms".
func Seconds(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
