package output

import (
	"fmt"
	"strings"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
)

// ContainerJSON is the "container" object.
type ContainerJSON struct {
	// Runtime: "none" outside containers, a runtime name, "unknown" for a
	// clear container (or pod) of a runtime the path does not name, or
	// "gone" / "unresolved" when the cgroup could not be resolved.
	Runtime string `json:"runtime"`
	ID      string `json:"id,omitempty"`
	Role    string `json:"role,omitempty"` // "conmon" (or "monitor") for the runtime's monitor
	PodUID  string `json:"pod_uid,omitempty"`
	QoS     string `json:"qos,omitempty"`
}

// Where is a process's or lineage step's cgroup, flattened into its object.
type Where struct {
	CgroupID uint64 `json:"cgroup_id,omitempty"`
	// Cgroup is the cgroup v2 path, or "gone" / "unresolved".
	Cgroup string `json:"cgroup,omitempty"`
	// Unit is the innermost systemd unit; absent when the cgroup is in none;
	// "gone" / "unresolved" with the cgroup.
	Unit      string         `json:"unit,omitempty"`
	Container *ContainerJSON `json:"container,omitempty"`
}

// Namespace is a process's pid namespace, flattened into its object.
type Namespace struct {
	PidNS uint32 `json:"pidns,omitempty"`  // inode of /proc/PID/ns/pid
	NSPid uint32 `json:"ns_pid,omitempty"` // pid in its own namespace
	// ReaperNSPid is the pid as the new parent's namespace sees it (what ps
	// prints inside the reaper's container); absent where not visible there.
	ReaperNSPid uint32 `json:"reaper_ns_pid,omitempty"`
}

func namespaceOf(p events.Process) Namespace {
	return Namespace{PidNS: p.PidNSInode, NSPid: p.NSPid, ReaperNSPid: p.ReaperNSPid}
}

// whereOf renders a resolved cgroup. withNone: say "none" for a process in
// no container (the adoption's parties); lineage steps leave it out.
func whereOf(info cgroups.Info, withNone bool) Where {
	w := Where{CgroupID: info.ID}
	switch info.State {
	case cgroups.Resolved:
		w.Cgroup, w.Unit = info.Path, info.Context.Unit
		c := info.Context.Container
		if c.Runtime != cgroups.RuntimeNone || withNone {
			w.Container = &ContainerJSON{Runtime: c.Runtime, ID: c.ID, Role: c.Role, PodUID: c.PodUID, QoS: c.QoS}
		}
	default:
		state := string(info.State)
		if state == "" {
			state = string(cgroups.Unresolved)
		}
		w.Cgroup, w.Unit = state, state
		w.Container = &ContainerJSON{Runtime: state}
	}
	return w
}

// addContext fills the context fields of an adoption's JSON object.
func addContext(out *AdoptionJSON, a *events.Adoption) {
	out.Namespace = namespaceOf(a.Child)
	out.PrevParent.Namespace = namespaceOf(a.PrevParent)
	out.NewParent.Namespace = namespaceOf(a.NewParent)
	ctx := a.Context
	if ctx == nil {
		return
	}
	out.Where = whereOf(ctx.Child, true)
	if ctx.Child.State == cgroups.Resolved {
		out.Slice, out.UserManager = ctx.Child.Context.Slice, ctx.Child.Context.UserManager
	}
	out.PrevParent.Where = whereOf(ctx.PrevParent, true)
	out.NewParent.Where = whereOf(ctx.NewParent, true)
	out.ReaperKind = ctx.ReaperKind
	for i := range out.Lineage {
		if i < len(ctx.Lineage) {
			out.Lineage[i].Where = whereOf(ctx.Lineage[i], false)
		}
	}
}

// pidText is a pid for text lines: "HOST/NS" when the process's own pid
// namespace numbers it differently, else just the pid.
func pidText(pid, nsPid uint32) string {
	if nsPid != 0 && nsPid != pid {
		return fmt.Sprintf("%d/%d", pid, nsPid)
	}
	return fmt.Sprint(pid)
}

// ContextText names briefly where a resolved cgroup is: "container
// docker:3f6c1a0e9b7d", "unit cron.service", "cgroup gone", or "" where there
// is nothing to say (no container, no unit, or nothing resolved at all).
func ContextText(info cgroups.Info) string {
	switch info.State {
	case cgroups.Gone:
		return "cgroup gone"
	case cgroups.Resolved:
	default:
		return ""
	}
	c := info.Context.Container
	var parts []string
	if c.Runtime != cgroups.RuntimeNone {
		name := c.Runtime
		if c.ID != "" {
			id := c.ID
			if len(id) == 64 {
				id = id[:12] // as docker ps shortens it
			}
			name += ":" + id
		}
		if c.Role != "" {
			name += " " + c.Role
		}
		if c.PodUID != "" {
			name += " pod " + c.PodUID
		}
		parts = append(parts, "container "+Escape(name))
	}
	if u := info.Context.Unit; u != "" {
		parts = append(parts, "unit "+Escape(u))
	}
	return strings.Join(parts, " ")
}
