package loader

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/adoptwatch/adoptwatch/bpf"
	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/pidns"
)

// Bounds of the context caches: cgroups resolved (one entry per cgroup, not
// per process) and namespace reapers named.
const (
	contextCgroups = 8192
	contextReapers = 1024
)

// newContexts sets up what resolves adoptions' contexts. Without a cgroup v2
// hierarchy every cgroup is "unresolved"; the rest still works.
func newContexts() (*events.Contexts, error) {
	c := &events.Contexts{Reapers: pidns.NewKinds(contextReapers)}
	m, err := cgroups.FindMount()
	if errors.Is(err, cgroups.ErrNoV2) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if c.Cgroups, err = cgroups.NewResolver(m, contextCgroups); err != nil {
		return nil, err
	}
	return c, nil
}

// ContextStats are the counters of the cgroup resolver (zero without cgroup v2).
func (o *Observer) ContextStats() cgroups.Stats {
	if o.contexts == nil || o.contexts.Cgroups == nil {
		return cgroups.Stats{}
	}
	return o.contexts.Cgroups.Stats()
}

// scopeSelector checks --unit and --container values.
func scopeSelector(opts Options) (cgroups.Selector, error) {
	sel := cgroups.Selector{Units: opts.WatchUnits, Containers: opts.WatchContainers}
	for _, g := range sel.Units {
		if err := cgroups.ValidUnitGlob(g); err != nil {
			return sel, fmt.Errorf("--unit: %w", err)
		}
	}
	for _, p := range sel.Containers {
		if err := cgroups.ValidContainerPrefix(p); err != nil {
			return sel, fmt.Errorf("--container: %w", err)
		}
	}
	return sel, nil
}

// startScope fills the kernel's map of chosen cgroups and keeps it current.
// It runs before the programs attach, so no process in a chosen cgroup forks
// unseen.
func (o *Observer) startScope(sel cgroups.Selector) error {
	m, err := cgroups.FindMount()
	if err != nil {
		return fmt.Errorf("--unit and --container need cgroup v2: %w", err)
	}
	chosen := o.coll.Maps[bpf.AdoptwatchMapScopeCgroups]
	add := func(id uint64, _ string) error { return chosen.Update(id, uint8(1), ebpf.UpdateAny) }
	remove := func(id uint64, _ string) { chosen.Delete(id) }
	if o.scope, err = cgroups.NewTracker(m, sel, add, remove); err != nil {
		return fmt.Errorf("follow cgroups for --unit and --container: %w", err)
	}
	go o.scope.Run()

	// Values nothing matches yet: nothing may have started yet, so they stay.
	selected := o.scope.Selected()
	for _, g := range sel.Units {
		if !anySelected(cgroups.Selector{Units: []string{g}}, selected) {
			o.Unmatched = append(o.Unmatched, "--unit "+g)
		}
	}
	for _, p := range sel.Containers {
		if !anySelected(cgroups.Selector{Containers: []string{p}}, selected) {
			o.Unmatched = append(o.Unmatched, "--container "+p)
		}
	}
	return nil
}

func anySelected(sel cgroups.Selector, selected map[uint64]string) bool {
	for _, p := range selected {
		if sel.Selects(p) {
			return true
		}
	}
	return false
}

// ScopeStats are the counters of --unit and --container's cgroup following:
// how many cgroups are chosen, and how many the kernel's map had no room for
// (ScopeStats().Dropped: processes there are not watched).
func (o *Observer) ScopeStats() cgroups.TrackerStats {
	if o.scope == nil {
		return cgroups.TrackerStats{}
	}
	return o.scope.Stats()
}

// UnmatchedNote is the one line saying which scope values match nothing yet.
func (o *Observer) UnmatchedNote() string {
	if len(o.Unmatched) == 0 {
		return ""
	}
	return "nothing matches " + strings.Join(o.Unmatched, ", ") + " yet: watching for it to appear"
}
