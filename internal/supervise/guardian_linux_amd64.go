package supervise

import (
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/rawfork"
)

// startGuardian forks the guardian (see treeGuard) without exec: all it does
// is wait for run's death and kill the cgroup dir, with raw system calls.
func startGuardian(parent int, dir string) (int, error) {
	killPath, err := syscall.BytePtrFromString(dir + "/cgroup.kill")
	if err != nil {
		return 0, err
	}
	dirPath, err := syscall.BytePtrFromString(dir)
	if err != nil {
		return 0, err
	}
	set := uint64(1) << (unix.SIGTERM - 1)
	one := [1]byte{'1'}
	nap := unix.Timespec{Nsec: 10_000_000}
	pid, err := rawfork.Run(func() (uintptr, syscall.Errno) {
		return forkGuardian(uintptr(parent), uintptr(unsafe.Pointer(killPath)), uintptr(unsafe.Pointer(dirPath)),
			uintptr(unsafe.Pointer(&set)), uintptr(unsafe.Pointer(&one)), uintptr(unsafe.Pointer(&nap)))
	})
	runtime.KeepAlive(killPath)
	runtime.KeepAlive(dirPath)
	runtime.KeepAlive(&set)
	runtime.KeepAlive(&one)
	runtime.KeepAlive(&nap)
	return pid, err
}

//go:nosplit
//go:norace
func forkGuardian(parent, killPath, dirPath, setPtr, onePtr, napPtr uintptr) (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if errno != 0 || pid != 0 {
		return pid, errno // run, or a failed fork
	}
	// The guardian: out of run's session and process group (signals meant for
	// those are not for it), holding none of run's files, every signal blocked
	// (rawfork), SIGTERM asked for when run dies.
	syscall.RawSyscall(syscall.SYS_SETSID, 0, 0, 0)
	syscall.RawSyscall(unix.SYS_CLOSE_RANGE, 0, 0xffffffff, 0)
	syscall.RawSyscall6(syscall.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0, 0)
	// If run died before that took effect, the signal never comes: look.
	if ppid, _, _ := syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0); ppid == parent {
		for {
			sig, _, _ := syscall.RawSyscall6(syscall.SYS_RT_SIGTIMEDWAIT, setPtr, 0, 0, 8, 0, 0)
			if sig == uintptr(syscall.SIGTERM) {
				break
			}
		}
	}
	fd, _, errno := syscall.RawSyscall(syscall.SYS_OPEN, killPath, uintptr(syscall.O_WRONLY|syscall.O_CLOEXEC), 0)
	if errno == 0 {
		syscall.RawSyscall(syscall.SYS_WRITE, fd, onePtr, 1)
		syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
	}
	// The cgroup can be removed once its last process has been reaped.
	for i := 0; i < 1000; i++ {
		_, _, errno = syscall.RawSyscall(syscall.SYS_RMDIR, dirPath, 0, 0)
		if errno != syscall.EBUSY {
			break
		}
		syscall.RawSyscall(syscall.SYS_NANOSLEEP, napPtr, 0, 0)
	}
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	return 0, 0
}
