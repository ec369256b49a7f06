//go:build linux

// Command vminit is /init, PID 1, of the test VMs: it mounts the kernel
// filesystems the tests need, runs every /tests/*.test binary in turn with its
// output on the serial console between guestlog markers, reaps the orphans
// that PID 1 inherits, and powers the VM off. It must never hang: each binary
// has a hard deadline, and everything left running is killed between binaries.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/vmtests/internal/guestlog"
)

func say(s string) { fmt.Fprintln(os.Stdout, s) }

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "vminit: must run as PID 1 inside a test VM")
		os.Exit(2)
	}
	if os.Getenv(envStage) == "" {
		execWithSignalBlocked() // returns only on failure
	}
	setup()
	startAdoptionSignals()

	var uts unix.Utsname
	_ = unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	say(guestlog.KernelLine(release))

	summary := guestlog.Summary{Kernel: release}
	timeout := envDuration("VMTEST_TIMEOUT", 180*time.Second)
	bins, _ := filepath.Glob("/tests/*.test")
	sort.Strings(bins)
	if len(bins) == 0 {
		say(guestlog.NoteLine("no test binaries in /tests"))
	}
	for _, bin := range bins {
		res, orphans := runOne(bin, timeout)
		summary.Binaries = append(summary.Binaries, res)
		summary.Orphans += orphans
	}
	say(guestlog.SummaryLine(summary))
	powerOff()
}

// PID 1 takes adoption signals the way the seed ABI proposes: a queued
// real-time signal per adoption, si_pid = the adopted process, si_status = its
// previous parent. Tests that send them (adoptwatch --notify-pid 1) find the
// signal's name and the file where /init writes each one it got, as
// "SIGNO CODE PID UID STATUS" lines, in these variables.
const (
	envStage      = "VMTEST_INIT_STAGE"
	envSignal     = "ADOPTWATCH_INIT_SIGNAL"
	envSignalFile = "ADOPTWATCH_INIT_SIGNALS"
	initSignal    = 64 // RTMAX: the least likely to be one a test uses itself
	initSignalStr = "RTMAX"
	signalFile    = "/run/init-signals"
)

// execWithSignalBlocked re-executes /init with the adoption signal blocked.
// signalfd needs the signal blocked in every thread, and a Go program only
// gets that by starting with it blocked; a queued signal that PID 1 neither
// blocks nor handles is dropped by the kernel.
func execWithSignalBlocked() {
	runtime.LockOSThread() // the mask is per thread; execve keeps the caller's
	set := sigset(initSignal)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
		say(guestlog.NoteLine("block the adoption signal: " + err.Error()))
		return
	}
	err := syscall.Exec("/init", []string{"/init"}, append(os.Environ(), envStage+"=2"))
	say(guestlog.NoteLine("re-exec /init: " + err.Error()))
}

func sigset(sig int) unix.Sigset_t {
	var set unix.Sigset_t
	set.Val[(sig-1)/64] |= 1 << (uint(sig-1) % 64)
	return set
}

// startAdoptionSignals appends every adoption signal to signalFile, and
// tells the tests (through the environment they inherit) where to look.
// Test binaries inherit the blocked signal, as children of a Go program do.
func startAdoptionSignals() {
	set := sigset(initSignal)
	fd, err := unix.Signalfd(-1, &set, unix.SFD_CLOEXEC)
	if err != nil {
		say(guestlog.NoteLine("signalfd: " + err.Error() + ": no adoption signals for tests"))
		return
	}
	out, err := os.OpenFile(signalFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		say(guestlog.NoteLine(err.Error()))
		return
	}
	os.Setenv(envSignal, initSignalStr)
	os.Setenv(envSignalFile, signalFile)
	go readSignals(fd, out)
}

func readSignals(fd int, out *os.File) {
	var si unix.SignalfdSiginfo
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&si)), unsafe.Sizeof(si))
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n != len(buf) {
			say(guestlog.NoteLine(fmt.Sprintf("signalfd read: %d bytes, %v", n, err)))
			return
		}
		fmt.Fprintf(out, "%d %d %d %d %d\n", si.Signo, si.Code, si.Pid, si.Uid, si.Int)
	}
}

// setup mounts what tests expect of a normal system and lifts the memlock
// limit (5.10 charges BPF maps to RLIMIT_MEMLOCK).
func setup() {
	must := []struct{ src, dir, fstype, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
		{"tmpfs", "/run", "tmpfs", "mode=755"},
	}
	for _, m := range must {
		_ = os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fstype, 0, m.data); err != nil {
			say(guestlog.NoteLine(fmt.Sprintf("mount %s on %s: %v", m.fstype, m.dir, err)))
		}
	}
	// These mount points live inside sysfs and exist only when the kernel
	// has the filesystem, so a missing one is noted, not created.
	optional := []struct{ dir, fstype string }{
		{"/sys/fs/bpf", "bpf"},
		{"/sys/kernel/tracing", "tracefs"},
		{"/sys/kernel/debug", "debugfs"},
		{"/sys/fs/cgroup", "cgroup2"},
	}
	for _, m := range optional {
		if _, err := os.Stat(m.dir); err != nil {
			say(guestlog.NoteLine(m.dir + " absent: " + m.fstype + " not mounted"))
			continue
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil {
			say(guestlog.NoteLine(fmt.Sprintf("mount %s on %s: %v", m.fstype, m.dir, err)))
		}
	}
	inf := &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, inf); err != nil {
		say(guestlog.NoteLine("setrlimit memlock: " + err.Error()))
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		say(guestlog.NoteLine("no BTF at /sys/kernel/btf/vmlinux"))
	}
	if err := loopbackUp(); err != nil {
		say(guestlog.NoteLine("loopback: " + err.Error()))
	}
	installBusybox()
	os.Setenv("PATH", "/tests:/usr/sbin:/usr/bin:/sbin:/bin")
	os.Setenv("ADOPTWATCH_IN_VM", "1")
	os.Setenv("HOME", "/tmp")
	os.Setenv("TMPDIR", "/tmp")
}

// loopbackUp brings lo up, as any system's init does: until then 127.0.0.1
// is not an address of the machine, and tests that serve on it (the metrics
// endpoint) could not bind.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

// installBusybox links every busybox applet (sh, sleep, ...) into /bin, so
// tests find the commands any Linux system has.
func installBusybox() {
	const bb = "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		say(guestlog.NoteLine("no busybox: no /bin/sh in this guest"))
		return
	}
	pid, err := syscall.ForkExec(bb, []string{bb, "--install", "-s", "/bin"}, &syscall.ProcAttr{
		Files: []uintptr{0, 1, 2},
	})
	if err != nil {
		say(guestlog.NoteLine("busybox --install: " + err.Error()))
		return
	}
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		say(guestlog.NoteLine(fmt.Sprintf("busybox --install: status %v", ws)))
	}
}

func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil && d > 0 {
		return d
	}
	return def
}

// runOne runs one test binary to completion (or its hard deadline) and
// reaps every process that ends meanwhile; it returns the binary's result
// and how many other processes (orphans adopted by PID 1) it reaped.
func runOne(bin string, timeout time.Duration) (res guestlog.BinaryExit, orphans int) {
	name := filepath.Base(bin)
	res = guestlog.BinaryExit{Name: name, Exit: -1}
	say(guestlog.BeginLine(name))
	start := time.Now()
	defer func() {
		res.Seconds = time.Since(start).Seconds()
		say(guestlog.EndLine(name, res.Exit, res.Seconds))
	}()

	dir, err := os.MkdirTemp("/tmp", strings.TrimSuffix(name, ".test")+"-")
	if err != nil {
		say(guestlog.NoteLine(err.Error()))
		return res, 0
	}
	args := append([]string{bin}, guestlog.TestArgs(timeout.String(), os.Getenv)...)
	devnull, err := os.Open("/dev/null")
	if err != nil {
		say(guestlog.NoteLine(err.Error()))
		return res, 0
	}
	defer devnull.Close()
	// Plain fork+exec, not os/exec: os/exec waits for its own pid, which
	// would race the wait4(-1) loop below that PID 1 needs for orphans.
	pid, err := syscall.ForkExec(bin, args, &syscall.ProcAttr{
		Dir:   dir,
		Env:   os.Environ(),
		Files: []uintptr{devnull.Fd(), os.Stdout.Fd(), os.Stderr.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		say(guestlog.NoteLine("start " + name + ": " + err.Error()))
		return res, 0
	}

	// go test's own -test.timeout panics with a goroutine dump first; this
	// is the backstop for a binary that cannot even do that.
	timedOut := make(chan struct{})
	hard := time.AfterFunc(timeout+15*time.Second, func() {
		close(timedOut)
		unix.Kill(-pid, unix.SIGKILL)
		unix.Kill(pid, unix.SIGKILL)
	})
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			say(guestlog.NoteLine("wait4: " + err.Error()))
			break
		}
		if wpid != pid {
			orphans++
			continue
		}
		switch {
		case ws.Exited():
			res.Exit = ws.ExitStatus()
		case ws.Signaled():
			res.Exit = 128 + int(ws.Signal())
		}
		break
	}
	hard.Stop()
	select {
	case <-timedOut:
		res.TimedOut = true
		say(guestlog.NoteLine(fmt.Sprintf("%s killed after %s", name, timeout+15*time.Second)))
	default:
	}
	orphans += killStragglers()
	return res, orphans
}

// killStragglers kills whatever the test left behind (daemons that escaped
// its process group with setsid) so the next binary starts clean, and reaps
// them. kill(-1) from PID 1 reaches every process but itself.
func killStragglers() int {
	unix.Kill(-1, unix.SIGKILL)
	n := 0
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.ECHILD):
			return n
		case wpid > 0:
			n++
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
	say(guestlog.NoteLine("some processes would not die"))
	return n
}

func powerOff() {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Should not return; if it does, exiting PID 1 panics the kernel, and
	// panic=-1 with qemu -no-reboot ends the VM all the same.
	say(guestlog.NoteLine(fmt.Sprintf("power off failed: %v", err)))
	os.Exit(1)
}
