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

	// last is the previous adoption's context with the ids it was built
	// from: a service's daemons come one after another from the same
	// cgroups, and each then shares it (issue 12: building a Context per
	// adoption was the largest allocation on the record path).
	last      *Context
	lastIDs   []uint64 // child, previous parent, new parent, then each step
	lastEvict uint64   // the resolver's evictions when last was built
}

// cgroup resolves one id (0: the kernel could not read it).
func (c *Contexts) cgroup(id uint64) cgroups.Info {
	if id == 0 || c.Cgroups == nil {
		return cgroups.Info{ID: id, State: cgroups.Unresolved}
	}
	return c.Cgroups.Lookup(id)
}

// resolve sets a.Context. A Context is never changed once set: adoptions
// may share one.
func (c *Contexts) resolve(a *Adoption) {
	var kind string
	if a.Reaper == ReaperNS && c.Reapers != nil {
		kind = c.Reapers.Kind(a.NewParent.ID, a.NewParent.Comm)
	}
	if c.sameAsLast(a, kind) {
		a.Context = c.last
		return
	}
	ctx := &Context{
		Child:      c.cgroup(a.Child.CgroupID),
		PrevParent: c.cgroup(a.PrevParent.CgroupID),
		NewParent:  c.cgroup(a.NewParent.CgroupID),
		Lineage:    make([]cgroups.Info, len(a.Lineage)),
		ReaperKind: kind,
	}
	for i, s := range a.Lineage {
		ctx.Lineage[i] = c.cgroup(s.CgroupID)
	}
	a.Context = ctx
	c.remember(a, ctx)
}

// sameAsLast says whether a's context is the last one built: the same ids
// and reaper kind, and the resolver would answer as it did then. Its
// Resolved and Gone answers stand until evicted (cgroup ids are never
// reused); an Unresolved one may resolve on a later try, so a context with
// one is not reused (remember).
func (c *Contexts) sameAsLast(a *Adoption, kind string) bool {
	if c.last == nil || c.last.ReaperKind != kind || len(c.lastIDs) != 3+len(a.Lineage) ||
		c.lastIDs[0] != a.Child.CgroupID || c.lastIDs[1] != a.PrevParent.CgroupID || c.lastIDs[2] != a.NewParent.CgroupID {
		return false
	}
	for i, s := range a.Lineage {
		if c.lastIDs[3+i] != s.CgroupID {
			return false
		}
	}
	return c.Cgroups.Stats().Evictions == c.lastEvict
}

// retryable says a later lookup of info's id may answer otherwise: it was
// not resolved, although the kernel gave an id (0: it could not read one).
func retryable(info cgroups.Info) bool {
	return info.State == cgroups.Unresolved && info.ID != 0
}

// remember keeps ctx for the next adoption, if it may be reused.
func (c *Contexts) remember(a *Adoption, ctx *Context) {
	c.last = nil
	if c.Cgroups == nil || retryable(ctx.Child) || retryable(ctx.PrevParent) || retryable(ctx.NewParent) {
		return
	}
	for _, info := range ctx.Lineage {
		if retryable(info) {
			return
		}
	}
	c.lastIDs = append(c.lastIDs[:0], a.Child.CgroupID, a.PrevParent.CgroupID, a.NewParent.CgroupID)
	for _, s := range a.Lineage {
		c.lastIDs = append(c.lastIDs, s.CgroupID)
	}
	c.lastEvict = c.Cgroups.Stats().Evictions
	c.last = ctx
}
