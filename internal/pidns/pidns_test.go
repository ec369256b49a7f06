package pidns

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
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

func TestParseNSpid(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []uint32
		bad  bool
	}{
		{"\t4242", []uint32{4242}, false},
		{"\t4242\t7\t1", []uint32{4242, 7, 1}, false},
		{"", nil, true},
		{"\t12\tx", nil, true},
		{"\t0", nil, true},
		{"\t99999999999", nil, true},
	} {
		got, err := ParseNSpid(tt.in)
		if (err != nil) != tt.bad || !slices.Equal(got, tt.want) {
			t.Errorf("ParseNSpid(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestSelf(t *testing.T) {
	ino, err := Inode(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	link, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("pid:[%d]", ino); link != want {
		t.Errorf("ns/pid links to %q, inode %d", link, ino)
	}
	pids, err := NSpids(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) == 0 || pids[0] != uint32(os.Getpid()) {
		t.Errorf("NSpids(self) = %v, want our pid %d first", pids, os.Getpid())
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
			// Start returns once the child has exec'd.
			pids, err := NSpids(pid)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pids, []uint32{uint32(pid), 1}) {
				t.Errorf("NSpids = %v, want [%d 1]", pids, pid)
			}
			ours, _ := Inode(os.Getpid())
			theirs, err := Inode(pid)
			if err != nil || theirs == ours {
				t.Errorf("child's namespace inode %d (%v), ours %d: want a different namespace", theirs, err, ours)
			}
			if got, err := Reaper(pid); err != nil || got != tt.want {
				exe, _ := Exe(pid)
				comm, _ := Comm(pid)
				t.Errorf("Reaper = %q, %v (comm %q, exe %q); want %q", got, err, comm, exe, tt.want)
			}
		})
	}
}
