// Package cgroups says what a cgroup v2 is for adoptwatch: where the v2
// hierarchy is mounted (pure v2 or "hybrid"), which directory a cgroup id
// names (a bounded cache, filled on a miss, never per record on a hot path),
// and what a cgroup path means: its systemd unit and slice, and the container
// (runtime, id, Kubernetes pod and QoS class) it belongs to.
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrNoV2 says that no cgroup v2 hierarchy is mounted (a pure cgroup v1 host,
// or a container without /sys/fs/cgroup): there are no cgroup ids to resolve.
var ErrNoV2 = errors.New("no cgroup v2 hierarchy mounted (need a cgroup2 mount, pure or hybrid)")

// Mount is where the cgroup v2 hierarchy is visible.
type Mount struct {
	// Dir is the mount point, e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified.
	Dir string
	// Root is the directory of the hierarchy mounted there, as mountinfo's
	// fourth field says: "/" unless a cgroup namespace or a bind mount shows
	// only part of the tree.
	Root string
	// Hybrid is true when cgroup v1 controllers are mounted beside it.
	Hybrid bool
}

// FindMount reads /proc/self/mountinfo.
func FindMount() (Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Mount{}, err
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// ParseMountinfo finds the cgroup v2 mount in a mountinfo listing. With
// several cgroup2 mounts it prefers the conventional places (/sys/fs/cgroup,
// then /sys/fs/cgroup/unified), then one showing the whole hierarchy, then
// the first listed.
func ParseMountinfo(r io.Reader) (Mount, error) {
	var v2 []Mount
	v1 := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) {
			continue
		}
		switch fields[sep+1] {
		case "cgroup2":
			v2 = append(v2, Mount{Dir: unescapeMountinfo(fields[4]), Root: unescapeMountinfo(fields[3])})
		case "cgroup":
			v1 = true
		}
	}
	if err := sc.Err(); err != nil {
		return Mount{}, fmt.Errorf("reading mountinfo: %w", err)
	}
	if len(v2) == 0 {
		return Mount{}, ErrNoV2
	}
	best := v2[0]
	rank := func(m Mount) int {
		switch {
		case m.Dir == "/sys/fs/cgroup":
			return 3
		case m.Dir == "/sys/fs/cgroup/unified":
			return 2
		case m.Root == "/":
			return 1
		}
		return 0
	}
	for _, m := range v2[1:] {
		if rank(m) > rank(best) {
			best = m
		}
	}
	best.Hybrid = v1
	return best, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space, \011,
// \012, \134) in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// HostPath is the directory, under the mount, of a cgroup path as the
// hierarchy (and /proc/PID/cgroup, in our cgroup namespace) names it. ok is
// false when the path lies outside the part of the tree this mount shows.
func (m Mount) HostPath(cgroupPath string) (dir string, ok bool) {
	rel, ok := trimRoot(m.Root, cgroupPath)
	if !ok {
		return "", false
	}
	if rel == "/" {
		return m.Dir, true
	}
	return m.Dir + rel, true
}

// CgroupPath is the inverse of HostPath: the hierarchy path of a directory
// under the mount.
func (m Mount) CgroupPath(dir string) (string, bool) {
	rel, ok := trimRoot(m.Dir, dir)
	if !ok {
		return "", false
	}
	if m.Root == "/" {
		return rel, true
	}
	if rel == "/" {
		return m.Root, true
	}
	return m.Root + rel, true
}

// trimRoot returns p below root as an absolute path ("/" for root itself).
func trimRoot(root, p string) (string, bool) {
	root = strings.TrimSuffix(root, "/")
	if p == root || (root == "" && p == "/") {
		return "/", true
	}
	if !strings.HasPrefix(p, root+"/") {
		return "", false
	}
	return p[len(root):], true
}
