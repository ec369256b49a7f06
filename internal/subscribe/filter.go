package subscribe

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/adoptwatch/adoptwatch/events"
)

// Filter is what a subscriber asked for in its first line:
//
//	all           every adoption (also the default)
//	parent PID    adoptions by the reaper PID (new parent)
//	root PID      adoptions whose lineage includes PID: the adopted process
//	              is PID or descends from it
type Filter struct {
	Kind string // "all", "parent" or "root"
	PID  uint32
}

// maxFilterLine bounds the first line a subscriber may send.
const maxFilterLine = 128

// ParseFilter reads one filter line (without its newline).
func ParseFilter(line string) (Filter, error) {
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && f[0] == "all":
		return Filter{Kind: "all"}, nil
	case len(f) == 2 && (f[0] == "parent" || f[0] == "root"):
		pid, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil || pid == 0 {
			return Filter{}, fmt.Errorf("bad pid %q in filter", f[1])
		}
		return Filter{Kind: f[0], PID: uint32(pid)}, nil
	}
	return Filter{}, fmt.Errorf("bad filter %q: want \"all\", \"parent PID\" or \"root PID\"", line)
}

func (f Filter) String() string {
	if f.Kind == "all" || f.Kind == "" {
		return "all"
	}
	return fmt.Sprintf("%s %d", f.Kind, f.PID)
}

// Match reports whether an adoption passes the filter.
func (f Filter) Match(a *events.Adoption) bool {
	switch f.Kind {
	case "parent":
		return a.NewParent.PID == f.PID
	case "root":
		for _, s := range a.Lineage {
			if s.PID == f.PID {
				return true
			}
		}
		return false
	default:
		return true
	}
}
