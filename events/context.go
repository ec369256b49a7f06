package events

import (
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/pidns"
)

// Context is what an adoption's kernel ids mean, resolved in user space:
// the cgroup (path, systemd unit, container) of each process and lineage
// step, and what the new parent is when it is a pid namespace's reaper.
type Context struct {
	Child, PrevParent, NewParent cgroups.Info
	Lineage                      []cgroups.Info // one per Adoption.Lineage step
	// ReaperKind names a namespace reaper (pidns.ReaperTini, ...): set when
	// the adoption's reaper is ReaperNS.
	ReaperKind string
}

// Contexts resolves adoptions' contexts through bounded caches, once per
// cgroup and once per reaper, never with a /proc or cgroupfs read per record
// in the common case.
type Contexts struct {
	// Cgroups resolves cgroup ids; nil where there is no cgroup v2
	// hierarchy (every cgroup is then "unresolved").
	Cgroups *cgroups.Resolver
	Reapers *pidns.Kinds
}

// cgroup resolves one id (0: the kernel could not read it).
func (c *Contexts) cgroup(id uint64) cgroups.Info {
	if id == 0 || c.Cgroups == nil {
		return cgroups.Info{ID: id, State: cgroups.Unresolved}
	}
	return c.Cgroups.Lookup(id)
}

// resolve sets a.Context.
func (c *Contexts) resolve(a *Adoption) {
	ctx := &Context{
		Child:      c.cgroup(a.Child.CgroupID),
		PrevParent: c.cgroup(a.PrevParent.CgroupID),
		NewParent:  c.cgroup(a.NewParent.CgroupID),
		Lineage:    make([]cgroups.Info, len(a.Lineage)),
	}
	for i, s := range a.Lineage {
		ctx.Lineage[i] = c.cgroup(s.CgroupID)
	}
	if a.Reaper == ReaperNS && c.Reapers != nil {
		ctx.ReaperKind = c.Reapers.Kind(a.NewParent.ID, a.NewParent.Comm)
	}
	a.Context = ctx
}
