package cgroups

import (
	"strings"
)

// Context is what a cgroup path says about the processes in it. It is parsed
// from the path alone (Describe), once per cgroup.
type Context struct {
	// Unit is the innermost systemd unit that is not a slice
	// ("cron.service", "session-3.scope", "docker-<id>.scope"); empty when
	// the cgroup is not in one.
	Unit string
	// Slice is the innermost slice containing Unit (or the cgroup itself).
	Slice string
	// UserManager is the user's service manager ("user@1000.service") when
	// Unit runs under it: a user unit.
	UserManager string
	Container   Container
}

// Container runtimes Describe recognises.
const (
	RuntimeNone       = "none"       // not in a container
	RuntimeUnknown    = "unknown"    // clearly a container (64-hex id, or a Kubernetes pod), runtime not named by the path
	RuntimeDocker     = "docker"     // /docker/<id>, docker-<id>.scope
	RuntimeContainerd = "containerd" // cri-containerd-<id>.scope, nerdctl-<id>.scope
	RuntimeCRIO       = "cri-o"      // crio-<id>[.scope], crio-conmon-<id>[.scope]
	RuntimePodman     = "podman"     // libpod-<id>[.scope], libpod-conmon-<id>.scope, libpod_parent/.../conmon
	RuntimeLXC        = "lxc"        // lxc.payload.<name>, lxc/<name>
)

// Kubernetes QoS classes.
const (
	QoSGuaranteed = "guaranteed"
	QoSBurstable  = "burstable"
	QoSBestEffort = "besteffort"
)

// Container is the container a cgroup belongs to.
type Container struct {
	Runtime string // one of the Runtime constants; RuntimeNone outside containers
	ID      string // the runtime's container id; empty when the path does not say
	// Role is "" for the container's own processes and "conmon" (or
	// "monitor" for lxc) for the runtime's monitor process beside it.
	Role string
	// Kubernetes pod, when the cgroup is under kubepods.
	PodUID string // with the systemd driver's "_" turned back into "-"
	QoS    string // QoSGuaranteed, QoSBurstable or QoSBestEffort
}

// Describe parses a cgroup v2 path ("/system.slice/cron.service") into its
// systemd unit and container. Unknown shapes give an empty unit and
// RuntimeNone: it names only what the path clearly says.
func Describe(path string) Context {
	parts := splitPath(path)
	ctx := Context{Container: Container{Runtime: RuntimeNone}}
	describeUnit(parts, &ctx)
	describeContainer(parts, &ctx.Container)
	describePod(parts, &ctx.Container)
	return ctx
}

func splitPath(path string) []string {
	var parts []string
	for _, p := range strings.Split(path, "/") {
		if p != "" && p != "." {
			parts = append(parts, p)
		}
	}
	return parts
}

// unitSuffixes are the unit types that own cgroups.
var unitSuffixes = []string{".service", ".scope", ".slice", ".socket", ".mount", ".swap"}

// unitType returns the suffix of a valid unit name, or "".
func unitType(s string) string {
	if len(s) > 255 {
		return ""
	}
	for _, suf := range unitSuffixes {
		if len(s) > len(suf) && strings.HasSuffix(s, suf) {
			name := s[:len(s)-len(suf)]
			for i := 0; i < len(name); i++ {
				c := name[i]
				if !(isAlnum(c) || c == ':' || c == '_' || c == '.' || c == '-' || c == '\\' || c == '@') {
					return ""
				}
			}
			return suf
		}
	}
	return ""
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// isUserManager reports whether s is "user@UID.service".
func isUserManager(s string) bool {
	uid, ok := strings.CutPrefix(s, "user@")
	if !ok {
		return false
	}
	uid, ok = strings.CutSuffix(uid, ".service")
	return ok && uid != "" && allDigits(uid)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// describeUnit walks the path from the root: each unit replaces the last one;
// a unit or slice found beneath a unit means that unit runs a service manager
// (user@UID.service, or systemd inside a container), whose units are the
// inner ones. Components that are not unit names (a delegated sub-tree) leave
// the unit as it was.
func describeUnit(parts []string, ctx *Context) {
	for _, p := range parts {
		t := unitType(p)
		if t == "" {
			continue
		}
		if ctx.Unit != "" {
			// p lies inside the unit's own sub-tree: that unit is a manager.
			if isUserManager(ctx.Unit) {
				ctx.UserManager = ctx.Unit
			}
			ctx.Unit = ""
		}
		if t == ".slice" {
			ctx.Slice = p
		} else {
			ctx.Unit = p
		}
	}
}

// isHexID reports a 64-character lower-case hex string: the container id
// shape of docker, containerd, cri-o and podman.
func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// scopeID returns the id in "<prefix><64hex>" or "<prefix><64hex>.scope".
func scopeID(s, prefix string, scopeOptional bool) (string, bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return "", false
	}
	if id, ok := strings.CutSuffix(rest, ".scope"); ok {
		rest = id
	} else if !scopeOptional {
		return "", false
	}
	return rest, isHexID(rest)
}

// describeContainer takes the innermost component that names a container, so
// a container nested in another (docker in docker) is the inner one.
func describeContainer(parts []string, c *Container) {
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		parent := ""
		if i > 0 {
			parent = parts[i-1]
		}
		if rt, id, role, ok := containerOf(p, parent, parts[:i]); ok {
			c.Runtime, c.ID, c.Role = rt, id, role
			return
		}
	}
}

func containerOf(p, parent string, above []string) (runtime, id, role string, ok bool) {
	switch {
	case strings.HasPrefix(p, "docker-"):
		if id, ok := scopeID(p, "docker-", false); ok {
			return RuntimeDocker, id, "", true
		}
	case strings.HasPrefix(p, "cri-containerd-"):
		if id, ok := scopeID(p, "cri-containerd-", false); ok {
			return RuntimeContainerd, id, "", true
		}
	case strings.HasPrefix(p, "nerdctl-"):
		if id, ok := scopeID(p, "nerdctl-", false); ok {
			return RuntimeContainerd, id, "", true
		}
	case strings.HasPrefix(p, "crio-conmon-"):
		if id, ok := scopeID(p, "crio-conmon-", true); ok {
			return RuntimeCRIO, id, "conmon", true
		}
	case strings.HasPrefix(p, "crio-"):
		if id, ok := scopeID(p, "crio-", true); ok {
			return RuntimeCRIO, id, "", true
		}
	case strings.HasPrefix(p, "libpod-conmon-"):
		if id, ok := scopeID(p, "libpod-conmon-", true); ok {
			return RuntimePodman, id, "conmon", true
		}
	case strings.HasPrefix(p, "libpod-"):
		if id, ok := scopeID(p, "libpod-", true); ok {
			return RuntimePodman, id, "", true
		}
	case p == "conmon":
		// podman's cgroupfs driver: <cgroup parent>/conmon, the parent being
		// libpod_parent or a pod's directory beneath it.
		for _, a := range above {
			if a == "libpod_parent" {
				return RuntimePodman, "", "conmon", true
			}
		}
	case strings.HasPrefix(p, "lxc.payload."):
		if name := p[len("lxc.payload."):]; name != "" {
			return RuntimeLXC, name, "", true
		}
	case strings.HasPrefix(p, "lxc.monitor."):
		if name := p[len("lxc.monitor."):]; name != "" {
			return RuntimeLXC, name, "monitor", true
		}
	}
	if isHexID(p) {
		if parent == "docker" {
			return RuntimeDocker, p, "", true
		}
		return RuntimeUnknown, p, "", true
	}
	return "", "", "", false
}

// describePod finds a Kubernetes pod: kubelet's cgroupfs driver names it
// .../kubepods[/burstable|/besteffort]/pod<uid>, its systemd driver
// .../kubepods[-burstable|-besteffort]-pod<uid with _ for ->.slice (with any
// prefix kubelet's cgroup root adds, e.g. kubelet-kubepods-...).
func describePod(parts []string, c *Container) {
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		if uid, qos, ok := systemdPod(p); ok {
			c.PodUID, c.QoS = uid, qos
		} else if uid, qos, ok := cgroupfsPod(p, parts[:i]); ok {
			c.PodUID, c.QoS = uid, qos
		} else {
			continue
		}
		if c.Runtime == RuntimeNone {
			c.Runtime = RuntimeUnknown // in the pod, outside its containers
		}
		return
	}
}

func systemdPod(p string) (uid, qos string, ok bool) {
	name, ok := strings.CutSuffix(p, ".slice")
	if !ok {
		return "", "", false
	}
	k := strings.LastIndex(name, "kubepods-")
	if k < 0 || (k > 0 && name[k-1] != '-') {
		return "", "", false
	}
	rest := name[k+len("kubepods-"):]
	qos = QoSGuaranteed
	if r, ok := strings.CutPrefix(rest, "burstable-"); ok {
		rest, qos = r, QoSBurstable
	} else if r, ok := strings.CutPrefix(rest, "besteffort-"); ok {
		rest, qos = r, QoSBestEffort
	}
	mangled, ok := strings.CutPrefix(rest, "pod")
	if !ok || !isPodUID(mangled, '_') {
		return "", "", false
	}
	return strings.ReplaceAll(mangled, "_", "-"), qos, true
}

func cgroupfsPod(p string, above []string) (uid, qos string, ok bool) {
	uid, ok = strings.CutPrefix(p, "pod")
	if !ok || !isPodUID(uid, '-') || len(above) == 0 {
		return "", "", false
	}
	switch parent := above[len(above)-1]; {
	case parent == "kubepods":
		return uid, QoSGuaranteed, true
	case (parent == "burstable" || parent == "besteffort") && len(above) >= 2 && above[len(above)-2] == "kubepods":
		if parent == "burstable" {
			return uid, QoSBurstable, true
		}
		return uid, QoSBestEffort, true
	}
	return "", "", false
}

// isPodUID accepts a UUID (or a static pod's 32-hex hash) with sep as the
// group separator.
func isPodUID(s string, sep byte) bool {
	if len(s) < 32 || len(s) > 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == sep) {
			return false
		}
	}
	return true
}
