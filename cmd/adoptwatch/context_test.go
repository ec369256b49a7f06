package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/runctest"
	"github.com/adoptwatch/adoptwatch/internal/subscribe"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

// containerScript is the container's PID 1. Each time the test creates
// /goN, a launcher daemonises the classic way: it forks a middle and exits;
// the middle calls setsid, forks the daemon and exits. The daemon is adopted
// by this shell, the namespace's reaper; its pid as the namespace sees it
// goes to /daemonN.pid. PID 1 stays.
const containerScript = `#!/bin/sh
for n in 1 2; do
	while [ ! -e /go$n ]; do sleep 0.05; done
	sh -c 'setsid sh -c "sleep 1000 & echo \$! > /d.tmp; mv /d.tmp /daemon'$n'.pid; exit 0" & exit 0'
done
while :; do sleep 1; done
`

// container is a running test container and where its cgroup is.
type container struct {
	*runctest.Container
	dir string // its cgroup directory under the v2 mount
}

func startContainer(t *testing.T, cgroupsPath string) container {
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
	return container{c, dir}
}

// daemonise makes the container start its nth daemon and returns the
// daemon's pid inside the container and on the host.
func (c container) daemonise(t *testing.T, n int) (nsPid, hostPid int) {
	t.Helper()
	rootfs := filepath.Join(c.Bundle, "rootfs")
	if err := os.WriteFile(filepath.Join(rootfs, fmt.Sprintf("go%d", n)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(rootfs, fmt.Sprintf("daemon%d.pid", n))
	for deadline := time.Now().Add(15 * time.Second); nsPid == 0; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil {
			nsPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container's daemon %d never started; output:\n%s", n, c.Output())
		}
	}
	b, err := os.ReadFile(filepath.Join(c.dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if ns, err := procfs.NSpids(pid); err == nil && len(ns) > 1 && ns[len(ns)-1] == uint32(nsPid) {
			return nsPid, pid
		}
	}
	t.Fatalf("no process in %s has pid %d in its namespace", c.dir, nsPid)
	return 0, 0
}

// adoptionOf waits for the JSON adoption of pid.
func adoptionOf(t *testing.T, cli *cli, pid int) output.AdoptionJSON {
	t.Helper()
	got := cli.stdout.JSON(1, 15*time.Second, func(m map[string]any) bool {
		return m["event"] == "adopt" && testsupport.Num(m, "pid") == pid
	})
	if len(got) == 0 {
		t.Fatalf("no adoption of %d; stdout:\n%s\nstderr:\n%s", pid, cli.stdout.Text(), cli.stderr.Text())
	}
	var a output.AdoptionJSON
	if err := testsupport.Decode(got[0], &a); err != nil {
		t.Fatal(err)
	}
	return a
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
// and is adopted by the container's PID 1, its pid namespace's reaper. The
// adoption names the reaper's kind and the container, with the namespace
// pids ps prints inside and the host pids; the same container started with
// docker-, kubepods- and plain cgroupsPath values is recognised for each.
func TestContainerAdoption(t *testing.T) {
	id, pod := runctest.HexID(), runctest.PodUID()
	layouts := []struct {
		name, path string
		want       output.ContainerJSON
	}{
		{"docker", "/docker/" + id, output.ContainerJSON{Runtime: "docker", ID: id}},
		{"kubepods", "/kubepods/burstable/pod" + pod + "/" + id,
			output.ContainerJSON{Runtime: "unknown", ID: id, PodUID: pod, QoS: "burstable"}},
	}
	eachHook(t, func(t *testing.T, hook string) {
		for _, l := range layouts {
			t.Run(l.name, func(t *testing.T) {
				c := startContainer(t, l.path)
				cli := startCLI(t, "--json", "--hook="+hook, "--cgroup", c.dir)
				cli.waitReady(t)
				nsPid, daemon := c.daemonise(t, 1)
				a := adoptionOf(t, cli, daemon)

				if a.Reaper != "ns-reaper" || a.NewParent.PID != uint32(c.Pid) || a.ReaperKind != "shell" {
					t.Errorf("reaper %s (%s) %d, want ns-reaper (shell) %d, the container's PID 1", a.Reaper, a.ReaperKind, a.NewParent.PID, c.Pid)
				}
				for what, got := range map[string]*output.ContainerJSON{"adopted": a.Container, "new parent": a.NewParent.Container} {
					if got == nil || *got != l.want {
						t.Errorf("%s process's container %+v, want %+v", what, got, l.want)
					}
				}
				if a.Cgroup != l.path {
					t.Errorf("cgroup %q, want %q", a.Cgroup, l.path)
				}
				// Namespace pids: as ps prints them inside, and the namespace itself.
				out, err := c.Exec("ps", "-o", "pid,comm")
				if err != nil {
					t.Fatal(err)
				}
				inside := psPids(out)
				if a.NSPid != uint32(nsPid) || a.ReaperNSPid != uint32(nsPid) || !slices.Contains(inside, nsPid) {
					t.Errorf("ns_pid %d, reaper_ns_pid %d; want %d, which ps inside lists:\n%s", a.NSPid, a.ReaperNSPid, nsPid, out)
				}
				if a.NewParent.NSPid != 1 {
					t.Errorf("new parent's ns_pid %d, want 1", a.NewParent.NSPid)
				}
				if prev := a.PrevParent; prev.PID == 0 || prev.ReaperNSPid == 0 || prev.ReaperNSPid == prev.PID {
					t.Errorf("previous parent %+v: want a host pid and a namespace pid", prev)
				}
				ns, _ := procfs.PidNS(c.Pid)
				if a.PidNS != uint32(ns) || a.NewParent.PidNS != uint32(ns) {
					t.Errorf("pidns %d, new parent's %d; want %d (/proc/%d/ns/pid)", a.PidNS, a.NewParent.PidNS, ns, c.Pid)
				}
				// The launcher and middle ran in the container too.
				n := len(a.Lineage)
				for _, s := range a.Lineage[n-3:] {
					if s.Container == nil || s.Container.ID != id {
						t.Errorf("lineage step %d %s: container %+v, want %s", s.PID, s.Comm, s.Container, id)
					}
				}
			})
		}
	})
}

// TestContainerText: the text line names the container and shows pids as
// HOST/NS.
func TestContainerText(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		id := runctest.HexID()
		c := startContainer(t, "/docker/"+id)
		cli := startCLI(t, "--hook="+hook, "--cgroup", c.dir)
		cli.waitReady(t)
		nsPid, daemon := c.daemonise(t, 1)
		// The daemon's name is what it had when it was adopted: sleep, or
		// still busybox's name for itself if the exec had not happened yet.
		want := fmt.Sprintf(" adopt %d/%d ", daemon, nsPid)
		tail := fmt.Sprintf(" to %d/1 sh (ns-reaper: shell) in container docker:%s double-fork: ", c.Pid, id[:12])
		if _, ok := cli.stdout.WaitFor(15*time.Second, func(s string) bool { return contains(s, want, tail) }); !ok {
			t.Errorf("no line with %q and %q:\n%s", want, tail, cli.stdout.Text())
		}
	})
}

// TestContainerScope: --container PREFIX given before the container exists
// says so once, then follows the container as it appears, and keeps
// adoptions elsewhere out.
func TestContainerScope(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		runctest.Require(t)
		id := runctest.HexID()
		cli := startCLI(t, "--json", "--hook="+hook, "--container", id[:10])
		cli.waitReady(t)
		if note := cli.stderr.Text(); strings.Count(note, "nothing matches") != 1 || !strings.Contains(note, "--container "+id[:10]) {
			t.Errorf("want one note that --container %s matches nothing yet; stderr:\n%s", id[:10], note)
		}
		c := startContainer(t, "/docker/"+id)
		_, daemon := c.daemonise(t, 1)
		if a := adoptionOf(t, cli, daemon); a.Container == nil || a.Container.ID != id {
			t.Errorf("adoption in the container: %+v", a)
		}
		// An adoption outside, then one more inside: only the inside one shows.
		tree := testsupport.StartTree(t, "doublefork")
		_, _, outside := testsupport.DoubleFork(t, tree)
		_, daemon2 := c.daemonise(t, 2)
		adoptionOf(t, cli, daemon2)
		if strings.Contains(cli.stdout.Text(), fmt.Sprintf(`"pid":%d,`, outside)) {
			t.Errorf("adoption of %d outside the container reported:\n%s", outside, cli.stdout.Text())
		}
	})
}

// unitCgroup creates adoptwatch-test.slice/forker-PID.service under the v2
// mount (named per test process, so concurrent runs do not share it) and
// removes it at the end.
func unitCgroup(t *testing.T) (m cgroups.Mount, dir, unit string) {
	t.Helper()
	m, err := cgroups.FindMount()
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy: %v", err)
	}
	slice := filepath.Join(m.Dir, "adoptwatch-test.slice")
	dir = filepath.Join(slice, fmt.Sprintf("forker-%d.service", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() {
		os.Remove(dir)
		os.Remove(slice) // only if no other test uses it
	})
	return m, dir, filepath.Base(dir)
}

// treeIn starts an idle fixture tree whose reaper is moved into the cgroup
// dir, so that what it forks from now on starts there.
func treeIn(t *testing.T, m cgroups.Mount, dir string) *fixture.Tree {
	t.Helper()
	tree := testsupport.StartTree(t, "idle")
	testsupport.Next(t, tree, "started")
	t.Cleanup(func() { moveTo(filepath.Join(m.Dir, "cgroup.procs"), tree) })
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(tree.Reaper)), 0); err != nil {
		t.Fatal(err)
	}
	return tree
}

// TestUnitAdoption: a launcher in a unit-shaped cgroup the test creates
// daemonises and exits; the adoption names the unit for the launcher's
// lineage step, although the launcher is gone, and --unit scopes the watch
// to it.
func TestUnitAdoption(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		m, dir, unit := unitCgroup(t)
		cli := startCLI(t, "--json", "--hook="+hook, "--unit", "forker-*.service")
		cli.waitReady(t)
		tree := treeIn(t, m, dir)
		if err := tree.Run("doublefork"); err != nil {
			t.Fatal(err)
		}
		launcher, middle, daemon := testsupport.DoubleFork(t, tree)
		a := adoptionOf(t, cli, daemon)
		var got *output.StepJSON
		for i := range a.Lineage {
			if a.Lineage[i].PID == uint32(launcher) {
				got = &a.Lineage[i]
			}
		}
		if got == nil {
			t.Fatalf("launcher %d not in the lineage %+v", launcher, a.Lineage)
		}
		path, _ := m.CgroupPath(dir)
		if got.Unit != unit || got.Cgroup != path {
			t.Errorf("launcher's step: unit %q, cgroup %q; want %s, %s", got.Unit, got.Cgroup, unit, path)
		}
		if st, err := procfs.ReadStat(launcher); err == nil && st.State != "Z" && st.Comm == "aw-launcher" {
			t.Errorf("the launcher %d should have exited", launcher)
		}
		if a.Unit != unit || a.Slice != "adoptwatch-test.slice" || a.PrevParent.PID != uint32(middle) {
			t.Errorf("adopted process: unit %q slice %q prev parent %d", a.Unit, a.Slice, a.PrevParent.PID)
		}
		// Outside the unit: not reported.
		other := testsupport.StartTree(t, "doublefork")
		_, _, outside := testsupport.DoubleFork(t, other)
		if err := tree.Run("doublefork"); err != nil {
			t.Fatal(err)
		}
		_, _, daemon2 := testsupport.DoubleFork(t, tree)
		adoptionOf(t, cli, daemon2)
		if strings.Contains(cli.stdout.Text(), fmt.Sprintf(`"pid":%d,`, outside)) {
			t.Errorf("adoption of %d outside the unit reported", outside)
		}
	})
}

// TestSocketContextFilters: the subscriber socket's "unit GLOB" and
// "container PREFIX" filter lines keep only the adoptions from there.
func TestSocketContextFilters(t *testing.T) {
	testsupport.RequireBPF(t)
	runctest.Require(t)
	m, dir, unit := unitCgroup(t)
	id := runctest.HexID()
	c := startContainer(t, "/docker/"+id)
	path := filepath.Join(t.TempDir(), "aw.sock")
	startWatching(t, "--socket", path, "--unit", "forker-*.service", "--container", id[:12])
	byUnit := dial(t, path, "unit "+unit)
	byContainer := dial(t, path, "container "+id[:12])

	tree := treeIn(t, m, dir)
	if err := tree.Run("doublefork"); err != nil {
		t.Fatal(err)
	}
	_, _, inUnit := testsupport.DoubleFork(t, tree)
	_, inContainer := c.daemonise(t, 1)
	for _, tc := range []struct {
		c          *subscribe.Client
		want, not  int
		field, val string
	}{{byUnit, inUnit, inContainer, "unit", unit}, {byContainer, inContainer, inUnit, "cgroup", "/docker/" + id}} {
		recs := adoptionsFrom(t, tc.c, tc.want)
		if r := recs[tc.want]; r.Fields[tc.field] != tc.val {
			t.Errorf("adoption of %d: %s %v, want %s", tc.want, tc.field, r.Fields[tc.field], tc.val)
		}
		// Nothing of the other one may follow.
		tc.c.Conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			rec, err := tc.c.Next()
			if err != nil {
				break
			}
			if rec.Pidfd >= 0 {
				unix.Close(rec.Pidfd)
			}
			if testsupport.Num(rec.Fields, "pid") == tc.not {
				t.Errorf("filter %s %s passed the adoption of %d: %s", tc.field, tc.val, tc.not, rec.Line)
			}
		}
	}
}

// moveTo moves what is left of a fixture tree back, so its cgroup can go.
func moveTo(procs string, tree *fixture.Tree) {
	os.WriteFile(procs, []byte(strconv.Itoa(tree.Reaper)), 0)
}
