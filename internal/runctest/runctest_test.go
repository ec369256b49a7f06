package runctest

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/pidns"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// TestContainers runs a real container with docker- and kubepods-style
// cgroup paths and checks, from the host, that it is where cgroupsPath says,
// in its own pid namespace, and described as the runtime that layout means.
func TestContainers(t *testing.T) {
	Require(t)
	m, err := cgroups.FindMount()
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy: %v", err)
	}
	id, pod := HexID(), PodUID()
	tests := []struct {
		name string
		path string
		want cgroups.Container
	}{
		{"docker", "/docker/" + id, cgroups.Container{Runtime: cgroups.RuntimeDocker, ID: id}},
		{"kubepods", "/kubepods/burstable/pod" + pod + "/" + id,
			cgroups.Container{Runtime: cgroups.RuntimeUnknown, ID: id, PodUID: pod, QoS: cgroups.QoSBurstable}},
		{"plain", "/adoptwatch-runctest/" + id, cgroups.Container{Runtime: cgroups.RuntimeUnknown, ID: id}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Start(t, Options{
				Args:        []string{"/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait"},
				CgroupsPath: tt.path,
			})
			// The cgroup path, read live.
			got, err := procfs.Cgroup(c.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.path {
				t.Errorf("/proc/%d/cgroup says %q, cgroupsPath was %q", c.Pid, got, tt.path)
			}
			dir, ok := m.HostPath(got)
			if _, err := os.Stat(dir + "/cgroup.procs"); !ok || err != nil {
				t.Errorf("no cgroup directory %q under the v2 mount %s: %v", dir, m.Dir, err)
			}
			if d := cgroups.Describe(got); d.Container != tt.want {
				t.Errorf("Describe(%q).Container = %+v, want %+v", got, d.Container, tt.want)
			}

			// The pid namespace: PID 1 inside, and what ps prints inside.
			if ns, err := procfs.NSpids(c.Pid); err != nil || !slices.Equal(ns, []uint32{uint32(c.Pid), 1}) {
				t.Errorf("NSpids(%d) = %v, %v; want [%d 1]", c.Pid, ns, err, c.Pid)
			}
			if k, err := pidns.Reaper(c.Pid); err != nil || k != pidns.ReaperShell {
				t.Errorf("Reaper = %q, %v; want shell", k, err)
			}
			out, err := c.Exec("ps", "-o", "pid,comm")
			if err != nil {
				t.Fatal(err)
			}
			inside := psPids(out)
			if !slices.Contains(inside, 1) {
				t.Errorf("ps inside shows no pid 1:\n%s", out)
			}
			// Each host process in the container's cgroup maps to a pid ps printed.
			procs, _ := os.ReadFile(dir + "/cgroup.procs")
			n := 0
			for _, f := range strings.Fields(string(procs)) {
				hp, _ := strconv.Atoi(f)
				ns, err := procfs.NSpids(hp)
				if err != nil {
					continue // the exec'd ps, exited
				}
				if len(ns) != 2 || !slices.Contains(inside, int(ns[1])) {
					t.Errorf("host pid %d has NSpid %v, not among ps's pids %v", hp, ns, inside)
				}
				n++
			}
			if n < 3 {
				t.Errorf("%d processes in %s, want sh and two sleeps", n, dir)
			}
		})
	}
}

// psPids returns the pid column of busybox ps output.
func psPids(out string) []int {
	var pids []int
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if p, err := strconv.Atoi(f[0]); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// TestCleanup checks that a deleted container leaves neither its process nor
// the cgroup directories runc created.
func TestCleanup(t *testing.T) {
	Require(t)
	m, err := cgroups.FindMount()
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy: %v", err)
	}
	top := "/adoptwatch-runctest-cleanup-" + strconv.Itoa(os.Getpid())
	var pid int
	t.Run("run", func(t *testing.T) {
		c := Start(t, Options{Args: []string{"sleep", "1000"}, CgroupsPath: top + "/" + HexID()})
		pid = c.Pid
	})
	if Running(pid) {
		t.Errorf("container pid %d still running after cleanup", pid)
	}
	if _, err := os.Stat(m.Dir + top); err == nil {
		t.Errorf("%s%s left behind", m.Dir, top)
	}
}
