package cgroups

import (
	"errors"
	"strings"
	"testing"
)

const hybridMountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const pureMountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
26 21 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Mount
		err  error
	}{
		{"hybrid", hybridMountinfo, Mount{Dir: "/sys/fs/cgroup/unified", Root: "/", Hybrid: true}, nil},
		{"pure v2 with optional fields", pureMountinfo, Mount{Dir: "/sys/fs/cgroup", Root: "/"}, nil},
		{"v1 only", "31 23 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", Mount{}, ErrNoV2},
		{"nothing", "", Mount{}, ErrNoV2},
		{"prefer /sys/fs/cgroup over another mount",
			"50 1 0:40 / /mnt/cg rw - cgroup2 cgroup2 rw\n" + pureMountinfo, Mount{Dir: "/sys/fs/cgroup", Root: "/"}, nil},
		{"cgroup namespace root, escaped mount point",
			`50 1 0:40 /kubepods/x /mnt/my\040cg rw - cgroup2 cgroup2 rw` + "\n",
			Mount{Dir: "/mnt/my cg", Root: "/kubepods/x"}, nil},
		{"garbage lines", "x\n- - -\n1 2 3 4 5 6 - cgroup2\n", Mount{Dir: "5", Root: "4"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMountinfo(strings.NewReader(tt.in))
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("got %+v, %v; want %+v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestMountPaths(t *testing.T) {
	m := Mount{Dir: "/sys/fs/cgroup/unified", Root: "/"}
	for _, c := range []struct{ cg, dir string }{
		{"/", "/sys/fs/cgroup/unified"},
		{"/system.slice/cron.service", "/sys/fs/cgroup/unified/system.slice/cron.service"},
	} {
		if d, ok := m.HostPath(c.cg); !ok || d != c.dir {
			t.Errorf("HostPath(%q) = %q, %v; want %q", c.cg, d, ok, c.dir)
		}
		if p, ok := m.CgroupPath(c.dir); !ok || p != c.cg {
			t.Errorf("CgroupPath(%q) = %q, %v; want %q", c.dir, p, ok, c.cg)
		}
	}
	if _, ok := m.CgroupPath("/sys/fs/cgroup/unifiedx/a"); ok {
		t.Error("CgroupPath accepted a sibling of the mount")
	}
	ns := Mount{Dir: "/sys/fs/cgroup", Root: "/kubepods/x"}
	if d, ok := ns.HostPath("/kubepods/x/a"); !ok || d != "/sys/fs/cgroup/a" {
		t.Errorf("namespaced HostPath = %q, %v", d, ok)
	}
	if _, ok := ns.HostPath("/system.slice"); ok {
		t.Error("namespaced HostPath accepted a path outside its root")
	}
	if p, ok := ns.CgroupPath("/sys/fs/cgroup/a"); !ok || p != "/kubepods/x/a" {
		t.Errorf("namespaced CgroupPath = %q, %v", p, ok)
	}
}

// TestFindMountHere reads this machine's mountinfo: a v2 hierarchy must be
// found where the kernel has one.
func TestFindMountHere(t *testing.T) {
	m, err := FindMount()
	if errors.Is(err, ErrNoV2) {
		t.Skip("this machine mounts no cgroup v2 hierarchy")
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ID(m.Dir + "/cgroup.procs"); err != nil {
		t.Errorf("mount %+v has no cgroup.procs: %v", m, err)
	}
}
