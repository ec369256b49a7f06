package subscribe

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
)

// Filter is what a subscriber asked for in its first line:
//
//	all           every adoption (also the default)
//	parent PID    adoptions by the reaper PID (new parent)
//	root PID      adoptions whose lineage includes PID: the adopted process
//	              is PID or descends from it
//	unit GLOB     adoptions whose adopted process or a lineage step was in a
//	              systemd unit (or slice) matching GLOB, as --unit
//	container ID  adoptions whose adopted process or a lineage step was in a
//	              container whose id starts with ID, as --container
type Filter struct {
	Kind    string // "all", "parent", "root", "unit" or "container"
	PID     uint32
	Pattern string // unit glob or container id prefix
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
	case len(f) == 2 && f[0] == "unit":
		if err := cgroups.ValidUnitGlob(f[1]); err != nil {
			return Filter{}, fmt.Errorf("bad filter: %w", err)
		}
		return Filter{Kind: "unit", Pattern: f[1]}, nil
	case len(f) == 2 && f[0] == "container":
		if err := cgroups.ValidContainerPrefix(f[1]); err != nil {
			return Filter{}, fmt.Errorf("bad filter: %w", err)
		}
		return Filter{Kind: "container", Pattern: f[1]}, nil
	}
	return Filter{}, fmt.Errorf("bad filter %q: want \"all\", \"parent PID\", \"root PID\", \"unit GLOB\" or \"container ID-PREFIX\"", line)
}

func (f Filter) String() string {
	switch f.Kind {
	case "all", "":
		return "all"
	case "unit", "container":
		return f.Kind + " " + f.Pattern
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
	case "unit":
		return matchContext(a, cgroups.Selector{Units: []string{f.Pattern}})
	case "container":
		return matchContext(a, cgroups.Selector{Containers: []string{f.Pattern}})
	default:
		return true
	}
}

// matchContext reports whether the adopted process or a lineage step was in
// a cgroup sel chooses (or beneath one). Unresolved cgroups match nothing.
func matchContext(a *events.Adoption, sel cgroups.Selector) bool {
	if a.Context == nil {
		return false
	}
	for _, info := range append([]cgroups.Info{a.Context.Child}, a.Context.Lineage...) {
		if info.State == cgroups.Resolved && sel.MatchesContext(info.Path, info.Context) {
			return true
		}
	}
	return false
}
