package notify

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A reaper reads its notifications with sigwaitinfo(2) or signalfd(2), and
// both need the signal blocked in every thread, or the kernel delivers it to
// an unblocking thread's handler instead. A Go program cannot block a signal
// in threads its runtime has already started, but it keeps the mask it was
// exec'd with (for signals the runtime does not itself need): ExecBlocked
// re-executes the program with the signals blocked from the start.

// Sigset returns the kernel signal set of sigs.
func Sigset(sigs ...int) unix.Sigset_t {
	var set unix.Sigset_t
	for _, s := range sigs {
		set.Val[(s-1)/64] |= 1 << (uint(s-1) % 64)
	}
	return set
}

// ExecBlocked blocks sigs on this thread and re-executes the running program
// (same pid, same argv) with env; it returns only on error. Pending signals
// survive execve, so none sent in between is lost.
func ExecBlocked(env []string, sigs ...int) error {
	path := os.Args[0]
	if !strings.Contains(path, "/") {
		var err error
		if path, err = os.Executable(); err != nil {
			return err
		}
	}
	runtime.LockOSThread() // the mask is per thread; execve keeps the caller's
	set := Sigset(sigs...)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
		return fmt.Errorf("block signals: %w", err)
	}
	return syscall.Exec(path, os.Args, env)
}

// Blocked reports whether sig is blocked in the calling thread, from
// /proc/thread-self/status (SigBlk).
func Blocked(sig int) (bool, error) {
	data, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if hex, ok := strings.CutPrefix(line, "SigBlk:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				return false, err
			}
			return mask&(1<<uint(sig-1)) != 0, nil
		}
	}
	return false, errors.New("no SigBlk in /proc/thread-self/status")
}

// kernelSigsetSize is _NSIG/8: the kernel rejects the C library's larger sigset_t.
const kernelSigsetSize = 8

// ErrTimeout is returned by WaitInfo when no signal came in time.
var ErrTimeout = errors.New("no signal within the timeout")

// WaitInfo is sigtimedwait(2): it dequeues one of sigs (which must be blocked
// in every thread) and decodes the raw siginfo_t, as a C reaper would read it.
func WaitInfo(timeout time.Duration, sigs ...int) (Info, error) {
	set := Sigset(sigs...)
	var raw [SiginfoSize]byte
	ts := unix.NsecToTimespec(timeout.Nanoseconds())
	for {
		_, _, errno := unix.Syscall6(unix.SYS_RT_SIGTIMEDWAIT, uintptr(unsafe.Pointer(&set)),
			uintptr(unsafe.Pointer(&raw)), uintptr(unsafe.Pointer(&ts)), kernelSigsetSize, 0, 0)
		switch errno {
		case 0:
			return DecodeSiginfo(&raw), nil
		case unix.EINTR:
			continue // the Go runtime's own signals interrupt waits
		case unix.EAGAIN:
			return Info{}, ErrTimeout
		default:
			return Info{}, errno
		}
	}
}

// Signalfd is a signalfd(2) for sigs (which must be blocked in every thread).
type Signalfd struct{ f *os.File }

// OpenSignalfd opens a non-blocking signalfd, so reads honour deadlines.
func OpenSignalfd(sigs ...int) (*Signalfd, error) {
	set := Sigset(sigs...)
	fd, err := unix.Signalfd(-1, &set, unix.SFD_CLOEXEC|unix.SFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("signalfd: %w", err)
	}
	return &Signalfd{f: os.NewFile(uintptr(fd), "signalfd")}, nil
}

// Read returns the next notification, waiting up to timeout.
func (s *Signalfd) Read(timeout time.Duration) (Info, error) {
	s.f.SetReadDeadline(time.Now().Add(timeout))
	var si unix.SignalfdSiginfo
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&si)), unsafe.Sizeof(si))
	n, err := s.f.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return Info{}, ErrTimeout
	}
	if err != nil {
		return Info{}, err
	}
	if n != len(buf) {
		return Info{}, fmt.Errorf("short signalfd read: %d bytes", n)
	}
	return FromSignalfd(&si), nil
}

// Close closes the signalfd.
func (s *Signalfd) Close() error { return s.f.Close() }
