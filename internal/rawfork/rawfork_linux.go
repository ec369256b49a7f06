// Package rawfork runs fork() from Go the way C programs do (fork without
// exec), for the tests' fixtures and the benchmark's workloads.
//
// After fork only the calling thread exists in the child and the Go runtime
// must not run there: the child half is the caller's nosplit function making
// raw system calls only (as the syscall package's own fork-and-exec does).
// Run calls it on a locked thread with every signal blocked, so that no Go
// signal handler ever runs in a child.
package rawfork

import (
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Run calls fork, a nosplit function that forks and returns the child's pid in
// the parent, and returns that pid.
func Run(fork func() (uintptr, syscall.Errno)) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, &old); err != nil {
		return 0, err
	}
	defer unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	pid, errno := fork()
	if errno != 0 {
		return 0, errno
	}
	return int(pid), nil
}
