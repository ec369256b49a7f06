package loader_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/loader"
)

// TestContext: a daemon double-forks inside its own pid namespace, in a cgroup
// of the test's own, and is adopted by the namespace's init. The record names
// the cgroup v2 of each process and of each lineage step as it was when that
// step forked the next, the pid namespace, and the pids as the namespace sees
// them.
func TestContext(t *testing.T) {
	unsharePath, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare (util-linux or busybox) to make a pid namespace")
	}
	eachHook(t, loader.Options{}, func(t *testing.T, obs *loader.Observer, c *collector) {
		cgroup := testCgroup(t)
		// wrapper: joins the cgroup, then becomes unshare; its child is the
		// namespace's init (ns pid 1), which runs the middle (2) and the
		// daemon (3), then waits to be killed.
		script := fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec %s -p -f sh -c 'sh -c "sleep 1000 & echo \$\$ \$!"; exec sleep 1000'`,
			cgroup.dir, unsharePath)
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wrapper := cmd.Process.Pid
		var nsInit int
		t.Cleanup(func() {
			if nsInit != 0 {
				unix.Kill(nsInit, unix.SIGKILL) // ours: its namespace dies with it
			}
			unix.Kill(wrapper, unix.SIGKILL)
			cmd.Wait()
		})
		line, err := bufio.NewReader(out).ReadString('\n')
		var middleNS, daemonNS int
		if _, serr := fmt.Sscan(line, &middleNS, &daemonNS); serr != nil {
			t.Fatalf("namespace middle said %q (%v)", line, err)
		}
		kids := childrenOf(t, wrapper)
		if len(kids) != 1 {
			t.Fatalf("unshare %d has children %v, want the namespace's init", wrapper, kids)
		}
		for pid := range kids {
			nsInit = pid
		}
		got := c.waitFor(1, 10*time.Second, func(a *events.Adoption) bool { return a.NewParent.PID == uint32(nsInit) })
		if len(got) != 1 {
			t.Fatalf("%d adoptions by the namespace's init %d, want 1", len(got), nsInit)
		}
		a := got[0]
		if a.Reaper != events.ReaperNS {
			t.Errorf("reaper kind %s, want %s", a.Reaper, events.ReaperNS)
		}
		nsInode := pidNSInode(t, nsInit)
		if own := pidNSInode(t, os.Getpid()); own == nsInode {
			t.Fatalf("fixture: the namespace's init is in the test's pid namespace")
		}
		check := func(name string, p events.Process, nsPid uint32) {
			t.Helper()
			if p.PidNSInode != nsInode || p.NSPid != nsPid || p.ReaperNSPid != nsPid {
				t.Errorf("%s %d: pid ns %d, ns pid %d, pid in the reaper's ns %d; want %d, %d, %d",
					name, p.PID, p.PidNSInode, p.NSPid, p.ReaperNSPid, nsInode, nsPid, nsPid)
			}
			if p.CgroupID != cgroup.id {
				t.Errorf("%s %d: cgroup id %d, want %d (%s)", name, p.PID, p.CgroupID, cgroup.id, cgroup.dir)
			}
		}
		t.Logf("adopted %d (ns pid %d) from %d (ns pid %d) by %d (ns pid %d), pid ns %d, cgroup %d; lineage cgroups %v",
			a.Child.PID, a.Child.NSPid, a.PrevParent.PID, a.PrevParent.NSPid, a.NewParent.PID, a.NewParent.NSPid,
			a.Child.PidNSInode, a.Child.CgroupID, lineageCgroups(a))
		check("adopted", a.Child, uint32(daemonNS))
		check("new parent", a.NewParent, 1)
		if p := a.PrevParent; p.NSPid != 0 { // 0 once its parent reaped it, before an exit-walk read
			check("previous parent", p, uint32(middleNS))
		}
		if a.Child.PID == uint32(daemonNS) {
			t.Errorf("host pid %d equals the namespace pid: the namespace is not the host's", a.Child.PID)
		}
		// Lineage: the test forked the wrapper in its own cgroup; everything
		// after, in the test's cgroup.
		steps := a.Lineage
		if len(steps) < 5 {
			t.Fatalf("lineage %v: want at least test, wrapper, init, middle, daemon", describe(steps))
		}
		tail := steps[len(steps)-5:]
		testCg := cgroupIDOf(t, cgroup.mount, os.Getpid())
		wantCg := []uint64{testCg, cgroup.id, cgroup.id, cgroup.id, cgroup.id}
		for i, s := range tail {
			if s.CgroupID != wantCg[i] {
				t.Errorf("lineage step %d (%s %d): cgroup %d, want %d", i, s.Comm, s.PID, s.CgroupID, wantCg[i])
			}
		}
	})
}

func lineageCgroups(a *events.Adoption) []uint64 {
	var out []uint64
	for _, s := range a.Lineage {
		out = append(out, s.CgroupID)
	}
	return out
}

type cgroupDir struct {
	mount, dir string
	id         uint64
}

// testCgroup makes a cgroup v2 of the test's own (under the cgroup2 mount, or
// one the test mounts) and removes it at the end.
func testCgroup(t *testing.T) cgroupDir {
	t.Helper()
	mount := cgroup2Mount()
	if mount == "" {
		dir := t.TempDir()
		if err := unix.Mount("none", dir, "cgroup2", 0, ""); err != nil {
			t.Skipf("no cgroup2 mounted and cannot mount one: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		mount = dir
	}
	dir := filepath.Join(mount, fmt.Sprintf("adoptwatch-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Its processes are gone once killed, a moment later.
		for i := 0; i < 100 && os.Remove(dir) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	return cgroupDir{mount: mount, dir: dir, id: inode(t, dir)}
}

func cgroup2Mount() string {
	b, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	return ""
}

// cgroupIDOf is the id of pid's cgroup v2: its directory's inode number.
func cgroupIDOf(t *testing.T, mount string, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return inode(t, filepath.Join(mount, path))
		}
	}
	t.Fatalf("no cgroup v2 line in /proc/%d/cgroup", pid)
	return 0
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// pidNSInode reads the inode of a process's pid namespace: "pid:[N]".
func pidNSInode(t *testing.T, pid int) uint32 {
	t.Helper()
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "pid:["), "]"), 10, 32)
	if err != nil {
		t.Fatalf("ns link %q: %v", link, err)
	}
	return uint32(n)
}
