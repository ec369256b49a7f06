// Package losses turns the kernel side's counters (loader.Counters) into
// warnings and "lost" lines, so that nothing is lost silently: each report
// says how many records or processes a bound dropped since the last one.
package losses

import (
	"fmt"
	"sync"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/loader"
)

// Source is where the counters come from (a *loader.Observer).
type Source interface {
	Counters() (loader.Counters, error)
}

// Reporter reports what the counters say was lost since its last check.
type Reporter struct {
	mu   sync.Mutex
	src  Source
	p    *output.Printer
	last loader.Counters
}

// New starts from zero: the maps are new, so everything counted since the
// programs were attached gets reported.
func New(src Source, p *output.Printer) *Reporter {
	return &Reporter{src: src, p: p}
}

// Every checks on each tick until done is closed.
func (r *Reporter) Every(interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			r.Check()
		}
	}
}

// Check reports what was lost since the last check (nothing once the source is closed).
func (r *Reporter) Check() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now, err := r.src.Counters()
	if err != nil {
		return // closed
	}
	last := r.last
	r.last = now
	for _, m := range Messages(last, now) {
		if m.Records != "" {
			r.p.Warn(output.LostLine(time.Now(), m.Records, m.Count), "%s", m.Text)
		} else {
			r.p.Warn(output.WarningLine(time.Now(), m.Text), "%s", m.Text)
		}
	}
}

// Message is one loss to report.
type Message struct {
	Records string // "adopt", "task" or "adoptee" for lost records ("lost" line); "" for a warning
	Count   uint64
	Text    string
}

// Messages says what changed between two readings of the counters.
func Messages(last, now loader.Counters) []Message {
	var out []Message
	if n := now.LostAdoptions - last.LostAdoptions; n > 0 {
		out = append(out, Message{"adopt", n, fmt.Sprintf("%d adoption records lost: the ring buffer was full", n)})
	}
	if n := now.LostTaskRecords - last.LostTaskRecords; n > 0 {
		out = append(out, Message{"task", n, fmt.Sprintf("%d fork/exec/exit records lost: the ring buffer was full", n)})
	}
	if n := now.LineageFull - last.LineageFull; n > 0 {
		out = append(out, Message{"", n, fmt.Sprintf("%d new processes have no lineage: the kernel's lineage map is full", n)})
	}
	if n := now.UnseenEvents - last.UnseenEvents; n > 0 {
		out = append(out, Message{"", n, fmt.Sprintf("up to %d forks, execs or exits were not seen: the kernel skipped the programs while they were preempted on that CPU; adoptions may be missing", n)})
	}
	if n := now.StaleChildren - last.StaleChildren; n > 0 {
		out = append(out, Message{"", n, fmt.Sprintf("%d children of exiting threads were gone before the exit-walk hook could check them: their adoptions may be missing", n)})
	}
	if n := now.UnfollowedAdoptions - last.UnfollowedAdoptions; n > 0 {
		out = append(out, Message{"adopt", n, fmt.Sprintf("%d adoptions lost: their parents had more children than the exit-walk hook follows (%d per exiting thread) or its maps were full", n, loader.ExitWalkMaxChildren)})
	}
	if n := now.SnapshotFull - last.SnapshotFull; n > 0 {
		out = append(out, Message{"", n, fmt.Sprintf("%d exiting threads could not be remembered by the exit-walk hook (its map was full): their adoptions may be missing", n)})
	}
	if n := now.ChildrenTruncated - last.ChildrenTruncated; n > 0 {
		out = append(out, Message{"", n, fmt.Sprintf("%d exiting threads had more children than the exit-walk hook can count: more adoptions were lost than reported", n)})
	}
	if n := now.LostAdopteeRecords - last.LostAdopteeRecords; n > 0 {
		out = append(out, Message{"adoptee", n, fmt.Sprintf("%d exit or reap records of adopted processes lost: the ring buffer was full", n)})
	}
	if n := now.AdopteesFull - last.AdopteesFull; n > 0 {
		out = append(out, Message{"", n, fmt.Sprintf("%d adopted processes cannot be followed to their end: the kernel's adoptee map is full", n)})
	}
	if n := now.ForgottenAdoptees - last.ForgottenAdoptees; n > 0 {
		out = append(out, Message{"", n, fmt.Sprintf("%d adopted processes were released without a reaped record (the kernel did not see their release): found gone, their kernel entries were deleted", n)})
	}
	if n := now.ScopeCgroupsDropped - last.ScopeCgroupsDropped; n > 0 {
		out = append(out, Message{"", n, fmt.Sprintf("%d cgroups chosen by --unit or --container did not fit the kernel's map: processes in them are not watched", n)})
	}
	return out
}
