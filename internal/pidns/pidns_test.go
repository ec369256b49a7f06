package pidns

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

func TestReaperKind(t *testing.T) {
	tests := []struct{ comm, exe, want string }{
		{"tini", "/usr/bin/tini", ReaperTini},
		{"tini-static", "/tini-static", ReaperTini},
		{"x", "/usr/local/bin/tini-static-amd64", ReaperTini},
		{"docker-init", "/sbin/docker-init", ReaperDockerInit},
		{"catatonit", "/usr/libexec/podman/catatonit", ReaperCatatonit},
		{"pause", "/pause", ReaperPause},
		{"dumb-init", "/usr/bin/dumb-init", ReaperDumbInit},
		{"s6-svscan", "/command/s6-svscan", ReaperS6},
		{"systemd", "/usr/lib/systemd/systemd", ReaperSystemd},
		{"init", "/bin/busybox", ReaperInit},
		{"runit", "/sbin/runit", ReaperInit},
		{"sh", "/bin/busybox", ReaperShell},
		{"bash", "/usr/bin/bash", ReaperShell},
		{"-bash", "/usr/bin/bash", ReaperShell},
		{"entrypoint.sh", "/usr/bin/dash", ReaperShell}, // a script as PID 1
		{"nginx", "/usr/sbin/nginx", ReaperApplication},
		{"postgres", "", ReaperApplication},
		{"busybox", "/bin/busybox", ReaperApplication},
		{"", "/usr/bin/tini (deleted)", ReaperTini},
		{"", "", ReaperApplication},
	}
	for _, tt := range tests {
		if got := ReaperKind(tt.comm, tt.exe); got != tt.want {
			t.Errorf("ReaperKind(%q, %q) = %q, want %q", tt.comm, tt.exe, got, tt.want)
		}
	}
}

// TestChildNamespace starts a process as PID 1 of a new pid namespace and
// reads it from outside: its own namespace inode, [host pid, 1], and the
// reaper kind named from the applet it runs.
func TestChildNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for CLONE_NEWPID")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (.ci/install-deps installs busybox-static)")
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"busybox", "sh", "-c", "sleep 30; true"}, ReaperShell},
		{[]string{"sleep", "30"}, ReaperApplication},
	} {
		t.Run(tt.args[0]+"-"+tt.args[1], func(t *testing.T) {
			cmd := &exec.Cmd{Path: bb, Args: tt.args, SysProcAttr: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			pid := cmd.Process.Pid
			waitExec(t, pid)
			pids, err := procfs.NSpids(pid)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pids, []uint32{uint32(pid), 1}) {
				t.Errorf("NSpids = %v, want [%d 1]", pids, pid)
			}
			ours, _ := procfs.PidNS(os.Getpid())
			theirs, err := procfs.PidNS(pid)
			if err != nil || theirs == ours {
				t.Errorf("child's namespace inode %d (%v), ours %d: want a different namespace", theirs, err, ours)
			}
			if got, err := Reaper(pid); err != nil || got != tt.want {
				exe, _ := procfs.Exe(pid)
				comm, _ := procfs.Comm(pid)
				t.Errorf("Reaper = %q, %v (comm %q, exe %q); want %q", got, err, comm, exe, tt.want)
			}
		})
	}
}

// TestKinds names a live reaper through /proc once, then from the cache, and
// stays within its bound.
func TestKinds(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (.ci/install-deps installs busybox-static)")
	}
	cmd := exec.Command(bb, "sh", "-c", "sleep 30; true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitExec(t, cmd.Process.Pid)
	id, err := procfs.Lookup(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	k := NewKinds(1)
	if got := k.Kind(id, "busybox"); got != ReaperShell {
		comm, _ := procfs.Comm(cmd.Process.Pid)
		args, _ := procfs.Cmdline(cmd.Process.Pid)
		t.Errorf("Kind(busybox sh) = %q, want shell (from its argv; comm %q, argv %q)", got, comm, args)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if got := k.Kind(id, "busybox"); got != ReaperShell {
		t.Errorf("cached Kind after exit = %q, want shell", got)
	}
	if got := k.Kind(procfs.ID{PID: id.PID, Start: id.Start + time.Hour}, "busybox"); got != ReaperApplication {
		t.Errorf("Kind of another process with the same pid = %q, want application (comm alone)", got)
	}
	if k.Evicted() != 1 {
		t.Errorf("evicted %d, want 1 (size 1, two reapers)", k.Evicted())
	}
	if got := k.Kind(procfs.ID{PID: 1 << 30}, "tini"); got != ReaperTini {
		t.Errorf("Kind by comm = %q", got)
	}
}

// waitExec waits until pid runs the program it was started with: its comm
// is no longer this test binary's and its argv is readable. Start can return
// before the child's exec is complete: seen in the 6.12 VMs, where busybox
// sh, started in a new pid namespace, still had this binary's comm and exe
// when read; and the kernel sets the new argv up after the point where Start
// learns that exec succeeded (/proc/PID/cmdline reads empty for a moment).
func waitExec(t *testing.T, pid int) {
	t.Helper()
	self, err := procfs.Comm(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		comm, err := procfs.Comm(pid)
		args, _ := procfs.Cmdline(pid)
		if err == nil && comm != self && len(args) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: still comm %q (this binary: %q), argv %q after 5s", pid, comm, self, args)
		}
	}
}
