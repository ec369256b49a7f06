package events

import "github.com/adoptwatch/adoptwatch/bpf"

// ReaperKind names the new parent from the facts the kernel side recorded.
// A namespace's reaper takes precedence: init may also have set the subreaper bit.
func ReaperKind(reaperFlags, nsLevel uint32) Reaper {
	switch {
	case reaperFlags&uint32(bpf.AdoptwatchReaperFlagREAPER_IS_NS_CHILD_REAPER) != 0 && nsLevel == 0:
		return ReaperInit
	case reaperFlags&uint32(bpf.AdoptwatchReaperFlagREAPER_IS_NS_CHILD_REAPER) != 0:
		return ReaperNS
	case reaperFlags&uint32(bpf.AdoptwatchReaperFlagREAPER_IS_CHILD_SUBREAPER) != 0:
		return ReaperSubreaper
	default:
		return ReaperOther
	}
}

// markSetsid flags each step whose session differs from its parent's: that
// process (or an exec'd image of it) called setsid() before forking the next step.
func markSetsid(steps []Step) {
	for i := range steps {
		steps[i].Setsid = i > 0 && steps[i].SID != steps[i-1].SID && steps[i].SID == steps[i].PID
	}
}

// Pattern names how an adopted process escaped its launcher, from its lineage.
type Pattern string

const (
	// PatternDoubleFork: fork, setsid, fork again; the middle process exited.
	PatternDoubleFork Pattern = "double-fork"
	// PatternForkSetsid: the adopted process itself started a new session.
	PatternForkSetsid Pattern = "fork-setsid"
	// PatternOrphan: its parent simply exited; no new session.
	PatternOrphan Pattern = "orphan"
)

// DaemonPattern classifies an adoption from its lineage (oldest first, ending
// with the adopted process).
func DaemonPattern(lineage []Step) Pattern {
	n := len(lineage)
	if n == 0 {
		return PatternOrphan
	}
	child := lineage[n-1]
	if child.SID == child.PID {
		return PatternForkSetsid
	}
	// The middle must have started its session itself: a shell that merely leads
	// its login session and exits leaves plain orphans behind.
	if n >= 2 {
		middle := lineage[n-2]
		if middle.Setsid && child.SID == middle.SID {
			return PatternDoubleFork
		}
	}
	return PatternOrphan
}
