package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"github.com/adoptwatch/adoptwatch/loader"
)

// waitGone waits until pid no longer exists (not even as a zombie).
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p
		}
	}
	return ""
}

// TestRunKillTreeOnExit: SIGKILL of `adoptwatch run` leaves its daemon running
// unsupervised (the documented fate), unless --kill-tree-on-exit: then the
// daemon and its workers die with run, and their cgroup is removed.
func TestRunKillTreeOnExit(t *testing.T) {
	testsupport.RequireBPF(t)
	t.Run("default", func(t *testing.T) {
		// run is the test's own child: no reaper above it would clean up.
		r := startRun(t, false, nil, "--", "{dir}/aw-sd-launch", "daemon")
		daemon := r.identified(t)
		r.kill(r.run, unix.SIGKILL)
		r.exitCode(t)
		time.Sleep(500 * time.Millisecond)
		if !alive(daemon) {
			t.Fatalf("the daemon %d died with run without --kill-tree-on-exit", daemon)
		}
		r.kill(daemon, unix.SIGKILL) // ours; init reaps it
		if !waitGone(daemon, 10*time.Second) {
			t.Errorf("daemon %d survived SIGKILL", daemon)
		}
	})
	t.Run("kill-tree-on-exit", func(t *testing.T) {
		r := startRun(t, false, []string{fixture.EnvSDWorkers + "=2"}, "--kill-tree-on-exit", "--", "{dir}/aw-sd-launch", "daemon")
		if !kernelAtLeast(t, 5, 14) {
			// No cgroup.kill: run refuses, with one line and exit 1, before
			// it starts CMD (the documented behaviour).
			const want = "adoptwatch run: --kill-tree-on-exit needs cgroup.kill (Linux 5.14 or later)"
			if code := r.exitCode(t); code != 1 {
				t.Errorf("run exited %d on a kernel without cgroup.kill, want 1", code)
			}
			r.stderr.WaitEOF(wait) // nothing else holds the pipe: it ends with run
			if got := r.stderr.Text(); got != want {
				t.Errorf("run's stderr on a kernel without cgroup.kill:\n%q\nwant the one line\n%q", got, want)
			}
			if left := r.marked(); len(left) > 0 {
				t.Errorf("run started processes %v although it refused", left)
			}
			return
		}
		daemon := r.identified(t)
		r.next(t, "worker")
		r.next(t, "worker")
		cg := cgroupOf(t, daemon)
		want := fmt.Sprintf("/adoptwatch-run-%d", r.run)
		if !strings.HasSuffix(cg, want) {
			t.Fatalf("daemon %d is in cgroup %q, want one ending in %q", daemon, cg, want)
		}
		dir := loader.CgroupV2Mounts()[0] + cg
		var members []int // the daemon and its workers
		data, _ := os.ReadFile(dir + "/cgroup.procs")
		for _, f := range strings.Fields(string(data)) {
			var pid int
			fmt.Sscan(f, &pid)
			members = append(members, pid)
		}
		if !slices.Contains(members, daemon) {
			t.Errorf("cgroup %s holds %v, not the daemon %d", dir, members, daemon)
		}
		if len(members) < 3 {
			t.Errorf("cgroup %s holds %v: want the daemon and its 2 workers at least", dir, members)
		}
		r.kill(r.run, unix.SIGKILL)
		r.exitCode(t)
		for _, pid := range members {
			if !waitGone(pid, 10*time.Second) {
				t.Errorf("pid %d of the tree still runs after run was killed", pid)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for dir != "" && time.Now().Before(deadline) {
			if _, err := os.Stat(dir); err != nil {
				dir = ""
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if dir != "" {
			t.Errorf("cgroup %s left behind", dir)
		}
	})
}

// kernelAtLeast: the running kernel's release is major.minor or later.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var ma, mi int
	if _, err := fmt.Sscanf(rel, "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("kernel release %q: %v", rel, err)
	}
	return ma > major || ma == major && mi >= minor
}
