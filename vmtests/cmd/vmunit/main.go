//go:build linux

// Command vmunit runs the test binaries of a systemd test VM: it is the
// ExecStart of adoptwatch-vmtest.service, so the tests run as a service of
// Debian's systemd (PID 1) rather than beneath vmtest's own init. It prints
// the same guestlog markers as /init does in the other VMs, runs each
// /tests/*.test with the flags the host put on the kernel command line, and
// exits; the unit's SuccessAction powers the VM off.
//
// Unlike /init it reaps nothing but its own children and kills nothing
// beyond each binary's process group: processes a test leaves behind belong
// to systemd, which stops them with the unit at power-off.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/vmtests/internal/guestlog"
)

func say(s string) { fmt.Fprintln(os.Stdout, s) }

func main() {
	params := kernelParams()
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	say(guestlog.KernelLine(release))

	summary := guestlog.Summary{Kernel: release}
	timeout := 180 * time.Second
	if d, err := time.ParseDuration(params["VMTEST_TIMEOUT"]); err == nil && d > 0 {
		timeout = d
	}
	bins, _ := filepath.Glob("/tests/*.test")
	sort.Strings(bins)
	if len(bins) == 0 {
		say(guestlog.NoteLine("no test binaries in /tests"))
	}
	for _, bin := range bins {
		summary.Binaries = append(summary.Binaries, runOne(bin, timeout, params))
	}
	say(guestlog.SummaryLine(summary))
}

// kernelParams reads the VMTEST_* settings from the kernel command line:
// the kernel hands unknown KEY=VALUE words to PID 1's environment, which
// systemd does not pass on to services.
func kernelParams() map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		say(guestlog.NoteLine("read /proc/cmdline: " + err.Error()))
		return out
	}
	for _, w := range strings.Fields(string(data)) {
		if k, v, ok := strings.Cut(w, "="); ok && strings.HasPrefix(k, "VMTEST_") {
			out[k] = v
		}
	}
	return out
}

// runOne runs one test binary in its own process group and temp dir, with a
// hard deadline beyond go test's own -test.timeout.
func runOne(bin string, timeout time.Duration, params map[string]string) (res guestlog.BinaryExit) {
	name := filepath.Base(bin)
	res = guestlog.BinaryExit{Name: name, Exit: -1}
	say(guestlog.BeginLine(name))
	start := time.Now()
	defer func() {
		res.Seconds = time.Since(start).Seconds()
		say(guestlog.EndLine(name, res.Exit, res.Seconds))
	}()
	dir, err := os.MkdirTemp("", strings.TrimSuffix(name, ".test")+"-")
	if err != nil {
		say(guestlog.NoteLine(err.Error()))
		return res
	}
	args := guestlog.TestArgs(timeout.String(), func(name string) string { return params[name] })
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		say(guestlog.NoteLine("start " + name + ": " + err.Error()))
		return res
	}
	var killed atomic.Bool
	hard := time.AfterFunc(timeout+15*time.Second, func() {
		killed.Store(true)
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	})
	err = cmd.Wait()
	hard.Stop()
	res.TimedOut = killed.Load()
	var ee *exec.ExitError
	switch {
	case err == nil:
		res.Exit = 0
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			res.Exit = 128 + int(ws.Signal())
		} else {
			res.Exit = ws.ExitStatus()
		}
	default:
		say(guestlog.NoteLine("wait " + name + ": " + err.Error()))
	}
	if res.TimedOut {
		say(guestlog.NoteLine(fmt.Sprintf("%s killed after %s", name, timeout+15*time.Second)))
	}
	// What is left of the binary's process group (its own children).
	unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	return res
}
