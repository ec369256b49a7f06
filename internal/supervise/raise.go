package supervise

import (
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reraisable reports whether run ends by sig itself when the daemon was killed
// by it, so that its supervisor sees the signal and not 128+N (systemd counts
// SIGTERM, SIGINT, SIGHUP and SIGPIPE deaths as clean, exit code 143 as a
// failure). Only signals whose default action ends the process without a core
// dump: for SIGQUIT, SIGSEGV and the other core signals run would dump a core
// of its own (not the daemon's, and into systemd-coredump), so it exits
// 128+N. Nor SIGKILL: a supervisor reads "killed by SIGKILL" as run itself
// killed (systemd's stop timeout, the OOM killer), which run was not.
func Reraisable(sig unix.Signal) bool {
	switch sig {
	case unix.SIGHUP, unix.SIGINT, unix.SIGPIPE, unix.SIGALRM, unix.SIGTERM,
		unix.SIGUSR1, unix.SIGUSR2, unix.SIGIO, unix.SIGPROF, unix.SIGVTALRM,
		unix.SIGSTKFLT, unix.SIGPWR:
		return true
	}
	return sig >= 32 && sig <= 64 // real-time signals: default action terminate
}

// kernelSigaction is the kernel's struct sigaction (rt_sigaction(2)); all
// zero it is SIG_DFL with no flags and an empty mask.
type kernelSigaction struct {
	handler  uintptr // 0: SIG_DFL
	flags    uint64
	restorer uintptr
	mask     uint64
}

// DieBy ends the process by sig with the signal's default action, as the
// daemon ended. The Go runtime handles every signal itself (and ignores
// SIGUSR1 and others it is not asked to notify), so the disposition is reset
// with rt_sigaction directly, the signal unblocked and sent to this thread.
// It returns only if the process survived, for the caller to exit 128+N.
func DieBy(sig unix.Signal) {
	if !Reraisable(sig) {
		return
	}
	runtime.LockOSThread()
	var dfl kernelSigaction
	if _, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0); errno != 0 {
		return
	}
	var set unix.Sigset_t
	set.Val[(sig-1)/64] = 1 << ((uint(sig) - 1) % 64)
	unix.PthreadSigmask(unix.SIG_UNBLOCK, &set, nil)
	unix.Tgkill(unix.Getpid(), unix.Gettid(), sig)
	time.Sleep(100 * time.Millisecond) // delivery is at once; this is a guard, not a wait
}
