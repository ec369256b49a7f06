package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// runPtracer follows a workload with ptrace, as Upstart's `expect daemon` did:
// it starts the workload traced, follows every fork, vfork, clone and exec, and
// resumes each stop. The workload talks to the orchestrator through the
// inherited stdin/stdout; the tracer's own CPU time goes to fd 3 as JSON.
func runPtracer(args []string) error {
	runtime.LockOSThread() // ptrace requests must come from the tracing thread
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil { // the exec stop
		return err
	}
	opts := unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_TRACEVFORK | unix.PTRACE_O_TRACECLONE |
		unix.PTRACE_O_TRACEEXEC | unix.PTRACE_O_EXITKILL
	if err := unix.PtraceSetOptions(pid, opts); err != nil {
		return err
	}
	unix.PtraceCont(pid, 0)
	for {
		wpid, err := unix.Wait4(-1, &ws, unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			break // ECHILD: nothing left
		}
		if wpid == pid && (ws.Exited() || ws.Signaled()) {
			break
		}
		if !ws.Stopped() {
			continue
		}
		sig := ws.StopSignal()
		if ws.TrapCause() > 0 || sig == unix.SIGTRAP || sig == unix.SIGSTOP {
			sig = 0 // an event stop, or a new tracee's initial stop
		}
		unix.PtraceCont(wpid, int(sig))
	}
	f := os.NewFile(3, "report")
	return json.NewEncoder(f).Encode(map[string]int64{"cpu_ns": rusageCPU(unix.RUSAGE_SELF)})
}
