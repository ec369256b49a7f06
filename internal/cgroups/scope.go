package cgroups

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Selector chooses cgroups by systemd unit name (globs) and container id
// (prefixes), as --unit and --container do. A selected cgroup counts with all
// it contains: the kernel side checks a task's cgroup and its ancestors.
type Selector struct {
	Units      []string // path.Match globs on unit names ("cron.service", "docker-*.scope", "system.slice")
	Containers []string // container id prefixes
}

// ValidUnitGlob checks a --unit value: a glob over unit names (no "/").
func ValidUnitGlob(g string) error {
	if g == "" {
		return errors.New("empty unit pattern")
	}
	if strings.ContainsAny(g, "/\x00\n") {
		return fmt.Errorf("unit pattern %q: unit names have no '/'", g)
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("unit pattern %q: %w", g, err)
	}
	return nil
}

// ValidContainerPrefix checks a --container value: the start of a container
// id (hex for docker, containerd, cri-o and podman; a name for lxc).
func ValidContainerPrefix(p string) error {
	if p == "" {
		return errors.New("empty container id prefix")
	}
	if len(p) > 64 {
		return fmt.Errorf("container id prefix %q: longer than an id (64)", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(isAlnum(c) || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("container id prefix %q: %q is not an id character", p, c)
		}
	}
	return nil
}

// Empty reports whether nothing was asked for.
func (s Selector) Empty() bool { return len(s.Units) == 0 && len(s.Containers) == 0 }

// Selects reports whether the cgroup at path is chosen in its own right:
// its own name is a unit matching a glob, or it is the outermost cgroup of a
// container whose id has a chosen prefix. (Cgroups beneath a chosen one are
// covered through it, so they need not be chosen themselves.)
func (s Selector) Selects(p string) bool {
	parts := splitPath(p)
	if len(parts) == 0 {
		return false
	}
	last := parts[len(parts)-1]
	if unitType(last) != "" {
		for _, g := range s.Units {
			if ok, _ := path.Match(g, last); ok {
				return true
			}
		}
	}
	if len(s.Containers) == 0 {
		return false
	}
	c := Describe(p).Container
	if c.ID == "" {
		return false
	}
	for _, pre := range s.Containers {
		if strings.HasPrefix(c.ID, pre) {
			parent := Describe("/" + strings.Join(parts[:len(parts)-1], "/")).Container
			return parent.ID != c.ID || parent.Runtime != c.Runtime || parent.Role != c.Role
		}
	}
	return false
}

// MatchesContext reports whether a resolved cgroup is chosen, itself or
// through an ancestor (any unit name on its path, or its container's id):
// the user-space counterpart of Selects plus the kernel's ancestor walk, for
// filtering records.
func (s Selector) MatchesContext(cgPath string, ctx Context) bool {
	for _, g := range s.Units {
		for _, part := range splitPath(cgPath) {
			if unitType(part) == "" {
				continue
			}
			if ok, _ := path.Match(g, part); ok {
				return true
			}
		}
	}
	for _, pre := range s.Containers {
		if ctx.Container.ID != "" && strings.HasPrefix(ctx.Container.ID, pre) {
			return true
		}
	}
	return false
}
