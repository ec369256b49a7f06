// Package events turns the kernel's raw records into adoptwatch's events: it
// decodes ring-buffer samples, keeps a bounded table of known processes (seeded
// from /proc) and resolves each adopted process's lineage: who launched it,
// through which fork, exec and setsid steps.
package events

import (
	"fmt"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// Kind names an event, as the "event" field of the JSON output does.
type Kind string

const (
	KindAdopt Kind = "adopt"
	KindFork  Kind = "fork"
	KindExec  Kind = "exec"
	KindExit  Kind = "exit"
	// What became of an adopted process (sent whatever the options).
	KindAdopteeExit   Kind = "adoptee-exit"   // its last thread exited
	KindAdopteeReaped Kind = "adoptee-reaped" // it was released: reaped, or autoreaped
)

// Hook names the kernel path that sees adoptions: the one Go type for it, in
// records and in options (bpf/records.h has the kernel's enum).
type Hook string

const (
	HookAuto     Hook = "auto"      // an option only: the best this kernel supports
	HookExact    Hook = "exact"     // kill_orphaned_pgrp(child, old_parent), via fentry or kprobe
	HookExitWalk Hook = "exit-walk" // exit snapshot + final sched_switch: every kernel
)

// ParseHook checks a --hook value.
func ParseHook(s string) (Hook, error) {
	switch h := Hook(s); h {
	case HookAuto, HookExact, HookExitWalk:
		return h, nil
	}
	return "", fmt.Errorf("unknown hook %q (want auto, exact or exit-walk)", s)
}

// Reaper is the kind of process that adopted an orphan.
type Reaper string

const (
	ReaperInit      Reaper = "init"      // the initial pid namespace's init
	ReaperSubreaper Reaper = "subreaper" // an ancestor that set PR_SET_CHILD_SUBREAPER
	ReaperNS        Reaper = "ns-reaper" // the init of a child pid namespace
	ReaperOther     Reaper = "other"     // none of those (should not happen; kept visible)
)

// Process is a task as a record saw it. Identity is its procfs.ID (PID: the
// thread group id, Start: CLOCK_BOOTTIME), never PID alone.
type Process struct {
	procfs.ID
	TID  uint32 // the thread involved
	PPID uint32 // real parent's pid at the time of the record
	SID  uint32 // session id
	PGID uint32 // process group id
	UID  uint32 // real uid
	Comm string

	CgroupID   uint64 // cgroup v2 id (the cgroup directory's inode number); 0: unknown
	PidNSInode uint32 // its pid namespace: the inode /proc/PID/ns/pid names; 0: unknown
	NSPid      uint32 // its pid as its own pid namespace sees it
	// ReaperNSPid (adoptions only) is its pid as the new parent's pid
	// namespace sees it: what ps shows inside the reaper's container; 0 where
	// it is not visible there.
	ReaperNSPid uint32
}

// Step is one generation in a lineage, oldest first, ending with the adopted process.
type Step struct {
	procfs.ID
	Comm   string // the command name when it forked the next generation
	SID    uint32
	PGID   uint32
	Exec   bool   // it had called execve by then
	Setsid bool   // it started a new session: its sid differs from its parent's
	Source string // "kernel" (recorded at fork) or "proc" (read at start-up)

	CgroupID uint64 // its cgroup v2 id when it forked the next generation (0: unknown)
}

// Adoption is one orphan re-parented to a reaper.
type Adoption struct {
	Time       time.Time
	Hook       Hook
	Child      Process
	PrevParent Process
	NewParent  Process
	Reaper     Reaper
	NSLevel    uint32 // pid namespace depth of the child (0: the initial namespace)
	Zombie     bool   // the child had already exited when it was adopted
	Lineage    []Step // oldest first; the last step is Child
	// LineageComplete is false when older generations could not be known
	// (dropped in the kernel, or gone before adoptwatch started).
	LineageComplete bool
	// Context is what the kernel's cgroup ids and namespaces mean (units,
	// containers, the reaper's kind), resolved by the Assembler; nil where
	// no resolver was given.
	Context *Context
}

// Task is a fork, exec or exit (only sent with --all).
type Task struct {
	Time        time.Time
	Kind        Kind
	Process     Process  // fork: the parent; exec: the new image; exit: the thread
	Child       *Process // fork only
	ExitStatus  uint32   // exit: wait(2) status
	ProcessExit bool     // exit: the last thread, so the process is gone
}

// Adoptee is what became of a process whose adoption was reported: its exit
// (KindAdopteeExit), then its release (KindAdopteeReaped).
type Adoptee struct {
	Time       time.Time // when it exited; when it was released
	Kind       Kind
	Process    Process // exit: as its last thread exited; reaped: PID, TID, Start, Comm, CgroupID
	Reaper     Process // its parent when it exited (zero if the exit was not seen)
	ExitStatus uint32  // wait(2) status
	// ExitTime is when it exited; zero when its exit was not seen (it was
	// adopted while it was exiting).
	ExitTime time.Time
	// ExitedBeforeAdoption: it was a zombie when adopted; Time is the adoption's.
	ExitedBeforeAdoption bool
}

// Record is one finished record (Assembler.Assemble): exactly one field is set.
type Record struct {
	Adoption *Adoption
	Task     *Task
	Adoptee  *Adoptee
}
