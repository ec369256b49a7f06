package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/runctest"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

// containerScript is the container's PID 1: it waits until the test's
// watcher is ready (the file /go appears), then a launcher daemonises the
// classic way: it forks a middle and exits; the middle calls setsid, forks
// the daemon and exits. The daemon is adopted by this shell, the namespace's
// reaper. Its pid as the namespace sees it goes to /daemon.pid; PID 1 stays.
const containerScript = `#!/bin/sh
while [ ! -e /go ]; do sleep 0.05; done
sh -c 'setsid sh -c "sleep 1000 & echo \$! > /daemon.tmp; mv /daemon.tmp /daemon.pid; exit 0" & exit 0'
while :; do sleep 1; done
`

// containerAdoption runs a container with cgroupsPath, watches it with
// adoptwatch --json --cgroup, and returns the adoption of the daemon started
// inside, with the container and the daemon's host pid.
func containerAdoption(t *testing.T, hook, cgroupsPath string) (map[string]any, *runctest.Container, int) {
	t.Helper()
	runctest.Require(t)
	m, err := cgroups.FindMount()
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy: %v", err)
	}
	c := runctest.Start(t, runctest.Options{
		Args:        []string{"/bin/sh", "/start"},
		CgroupsPath: cgroupsPath,
		Files:       map[string]string{"start": containerScript},
	})
	dir, _ := m.HostPath(cgroupsPath)
	cli := startCLI(t, "--json", "--hook="+hook, "--cgroup", dir)
	cli.waitReady(t)
	rootfs := filepath.Join(c.Bundle, "rootfs")
	if err := os.WriteFile(filepath.Join(rootfs, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var nsPid int
	for deadline := time.Now().Add(15 * time.Second); nsPid == 0; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(rootfs, "daemon.pid")); err == nil {
			nsPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container's daemon never started; output:\n%s", c.Output())
		}
	}
	hostPid := hostPidOf(t, dir, nsPid)
	got := cli.stdout.JSON(1, 15*time.Second, func(m map[string]any) bool {
		return m["event"] == "adopt" && testsupport.Num(m, "pid") == hostPid
	})
	if len(got) == 0 {
		t.Fatalf("no adoption of %d (pid %d in the container); stdout:\n%s\nstderr:\n%s",
			hostPid, nsPid, cli.stdout.Text(), cli.stderr.Text())
	}
	return got[0], c, hostPid
}

// hostPidOf finds the host pid of the process in cgroup dir whose pid in
// its own namespace is nsPid.
func hostPidOf(t *testing.T, dir string, nsPid int) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if ns, err := procfs.NSpids(pid); err == nil && len(ns) > 1 && ns[len(ns)-1] == uint32(nsPid) {
			return pid
		}
	}
	t.Fatalf("no process in %s has pid %d in its namespace", dir, nsPid)
	return 0
}

// psPids returns the pid column of busybox ps output.
func psPids(out string) []int {
	var pids []int
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			if p, err := strconv.Atoi(f[0]); err == nil {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// TestContainerAdoption: a daemon double-forks inside a real runc container
// and is adopted by the container's PID 1, its pid namespace's reaper.
func TestContainerAdoption(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		id := runctest.HexID()
		a, c, daemon := containerAdoption(t, hook, "/docker/"+id)
		if a["reaper"] != "ns-reaper" || testsupport.PartyPID(a, "new_parent") != c.Pid {
			t.Errorf("adoption %v: want reaper ns-reaper, new parent %d (the container's PID 1)", a, c.Pid)
		}
		out, err := c.Exec("ps", "-o", "pid,comm")
		if err != nil {
			t.Fatal(err)
		}
		ns, _ := procfs.NSpids(daemon)
		if len(ns) != 2 || !slices.Contains(psPids(out), int(ns[1])) {
			t.Errorf("daemon %d has NSpid %v; ps inside:\n%s", daemon, ns, out)
		}
	})
}
