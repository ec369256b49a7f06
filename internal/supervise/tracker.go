package supervise

import (
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// Candidate is a process of the launch tree that was adopted: by run itself
// (subreaper mode) or by init (--no-subreaper).
type Candidate struct {
	procfs.ID
	Comm     string
	Adoption *events.Adoption
	Alive    bool
	seq      int // adoption order
}

// Tracker applies the identification rule. It is fed events in order and
// reads no clock of its own, so it is tested without processes.
//
// The launch tree is CMD and every adopted process whose kernel lineage
// contains CMD or an earlier member (in subreaper mode, every process run
// adopts). A phase has a root: CMD first, then the followed daemon. The phase
// ends when its root has exited and the tree has been quiet (no member adopted,
// none exited) for Settle. Then the daemon is the phase's member still alive
// that was adopted first, or the one the pid file names. In a phase rooted at a
// daemon, members are only its descendants (by lineage): a successor.
type Tracker struct {
	Settle time.Duration
	// Self is run's pid: in subreaper mode every adoption by it belongs to the
	// tree even when the lineage was truncated.
	Self      uint32
	Subreaper bool

	cmd        procfs.ID
	root       procfs.ID // CMD, then the followed daemon
	followed   bool      // root is a daemon: members must descend from it
	rootExited bool
	quietSince time.Time
	members    []*Candidate
}

// NewTracker starts the first phase, rooted at CMD.
func NewTracker(cmd procfs.ID, now time.Time, settle time.Duration, self uint32, subreaper bool) *Tracker {
	return &Tracker{Settle: settle, Self: self, Subreaper: subreaper, cmd: cmd, root: cmd, quietSince: now}
}

// Adopted records an adoption and returns the member it made, or nil if the
// adopted process is not part of the launch tree. alive says whether the
// process was still running (and the same one) when the record was read.
func (t *Tracker) Adopted(a *events.Adoption, alive bool, now time.Time) *Candidate {
	id := a.Child.ID
	if t.member(id) != nil {
		return nil // adopted again (its subreaper exited): it is the same process
	}
	inTree := t.Subreaper && a.NewParent.PID == t.Self
	for _, s := range ancestors(a.Lineage) {
		if s.Same(t.cmd) || t.member(s) != nil {
			inTree = true
		}
	}
	if !inTree {
		return nil
	}
	c := &Candidate{ID: id, Comm: a.Child.Comm, Adoption: a, Alive: alive && !a.Zombie, seq: len(t.members)}
	t.members = append(t.members, c)
	if t.inPhase(c) {
		t.quietSince = now
	}
	return c
}

// ancestors are the lineage's steps but the last (the process itself).
func ancestors(lineage []events.Step) []procfs.ID {
	var out []procfs.ID
	for i := 0; i+1 < len(lineage); i++ {
		out = append(out, lineage[i].ID)
	}
	return out
}

func (t *Tracker) member(id procfs.ID) *Candidate {
	for _, m := range t.members {
		if m.ID.Same(id) {
			return m
		}
	}
	return nil
}

// inPhase: c belongs to the current phase (it is not its root).
func (t *Tracker) inPhase(c *Candidate) bool {
	if c.ID.Same(t.root) {
		return false
	}
	return !t.followed || t.descendsFrom(c, t.root)
}

// descendsFrom: r is in c's lineage, or an earlier member in it descends from r.
func (t *Tracker) descendsFrom(c *Candidate, r procfs.ID) bool {
	for _, s := range ancestors(c.Adoption.Lineage) {
		if s.Same(r) {
			return true
		}
		if m := t.member(s); m != nil && m.seq < c.seq && t.descendsFrom(m, r) {
			return true
		}
	}
	return false
}

// Exited records that a member ended. It returns the member, if there was one.
func (t *Tracker) Exited(pid uint32, now time.Time) *Candidate {
	for _, m := range t.members {
		if m.PID == pid && m.Alive {
			m.Alive = false
			if t.inPhase(m) {
				t.quietSince = now
			}
			return m
		}
	}
	return nil
}

// RootExited records that the phase's root (CMD, or the followed daemon) ended.
func (t *Tracker) RootExited(now time.Time) {
	t.rootExited = true
	t.quietSince = now
}

// Follow makes the daemon the root of a new phase: should it exit cleanly, a
// successor is looked for among its adopted descendants.
func (t *Tracker) Follow(d *Candidate) {
	t.root = d.ID
	t.rootExited = false
	t.followed = true
}

// Decision is what Decide concluded.
type Decision struct {
	Wait   bool       // not yet: the root runs, the tree is not quiet, or the pid file is not there
	Daemon *Candidate // the daemon (nil with Wait false: there is none)
	Others []*Candidate
	Reason string // why it waits, or how the daemon was chosen
}

// Decide applies the rule at time now. pidfile is the pid the pid file names
// (0: no pid file, or not readable yet); requirePidfile makes it mandatory.
func (t *Tracker) Decide(now time.Time, pidfile uint32, requirePidfile bool) Decision {
	if !t.rootExited {
		return Decision{Wait: true, Reason: "the launcher is still running"}
	}
	if now.Sub(t.quietSince) < t.Settle {
		return Decision{Wait: true, Reason: "the process tree is still changing"}
	}
	var live []*Candidate
	for _, m := range t.members {
		if m.Alive && t.inPhase(m) {
			live = append(live, m)
		}
	}
	if len(live) == 0 {
		return Decision{Reason: "no adopted process is alive"}
	}
	if pidfile != 0 {
		for i, m := range live {
			if m.PID == pidfile {
				others := append(append([]*Candidate{}, live[:i]...), live[i+1:]...)
				return Decision{Daemon: m, Others: others, Reason: "named by the pid file"}
			}
		}
	}
	if requirePidfile {
		return Decision{Wait: true, Reason: "the pid file does not name an adopted process yet"}
	}
	return Decision{Daemon: live[0], Others: live[1:], Reason: "first adopted process still alive"}
}

// Live lists the live members of the current phase.
func (t *Tracker) Live() []*Candidate {
	var out []*Candidate
	for _, m := range t.members {
		if m.Alive && t.inPhase(m) {
			out = append(out, m)
		}
	}
	return out
}
