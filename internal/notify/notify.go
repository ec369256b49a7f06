// Package notify implements the PR_SET_ADOPTSIG signal ABI in user space: when
// a process is adopted by a registered reaper, that reaper is sent a queued
// signal whose siginfo says who was adopted (si_pid), its uid (si_uid) and who
// its previous parent was (si_status, the same word as si_value.sival_int).
package notify

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// Realtime signal numbers as a C program sees them. The kernel's realtime
// range starts at 32, but glibc keeps 32 and 33 for its threads and defines
// SIGRTMIN as 34 (musl keeps 34 too and defines 35): RTMIN+N here means 34+N.
const (
	RTMin       = 34
	RTMax       = 64
	kernelRTMin = 32
)

var names = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8,
	"KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
	"STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
	"URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
	"PWR": 30, "SYS": 31,
}

// ParseSignal accepts a number ("37"), a name with or without SIG ("USR1",
// "SIGUSR1") or a realtime offset ("RTMIN", "RTMIN+3", "SIGRTMAX-2").
func ParseSignal(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > RTMax {
			return 0, fmt.Errorf("signal %d out of range 1-%d", n, RTMax)
		}
		return n, nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	for _, base := range []struct {
		prefix string
		value  int
	}{{"RTMIN", RTMin}, {"RTMAX", RTMax}} {
		rest, ok := strings.CutPrefix(name, base.prefix)
		if !ok {
			continue
		}
		off := 0
		if rest != "" {
			var err error
			if off, err = strconv.Atoi(rest); err != nil || (rest[0] != '+' && rest[0] != '-') {
				return 0, fmt.Errorf("bad signal %q: want %s+N or %s-N", s, base.prefix, base.prefix)
			}
		}
		n := base.value + off
		if n < RTMin || n > RTMax {
			return 0, fmt.Errorf("signal %q is %d, outside the realtime range %d-%d", s, n, RTMin, RTMax)
		}
		return n, nil
	}
	if n, ok := names[name]; ok {
		return n, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// SignalName names a signal the way ParseSignal reads it back.
func SignalName(sig int) string {
	switch {
	case sig >= RTMin && sig <= RTMax:
		if sig-RTMin <= RTMax-sig {
			return fmt.Sprintf("RTMIN+%d", sig-RTMin)
		}
		return fmt.Sprintf("RTMAX-%d", RTMax-sig)
	case sig >= kernelRTMin && sig < RTMin:
		return strconv.Itoa(sig)
	}
	for name, n := range names {
		if n == sig {
			return "SIG" + name
		}
	}
	return strconv.Itoa(sig)
}

// CheckSignal refuses signals that cannot carry the ABI. Only realtime signals
// queue: a second standard signal pending for the same process merges with
// the first and its siginfo is lost, so adoptions would vanish silently.
// force lets a standard signal through anyway (never SIGKILL or SIGSTOP).
func CheckSignal(sig int, force bool) error {
	switch {
	case sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP):
		return fmt.Errorf("%s cannot be caught: it would end or stop the reaper", SignalName(sig))
	case sig >= RTMin && sig <= RTMax:
		return nil
	case force:
		return nil
	case sig >= kernelRTMin:
		return fmt.Errorf("signal %d is reserved by the C library's thread implementation; use RTMIN+N (%d-%d), or --notify-force", sig, RTMin, RTMax)
	default:
		return fmt.Errorf("%s is not a realtime signal: standard signals do not queue (a second one pending for the reaper merges with the first and its siginfo is lost), so adoptions would go unreported; use RTMIN+N (%d-%d), or --notify-force to send it anyway", SignalName(sig), RTMin, RTMax)
	}
}

// Target is a reaper that asked to be told of its adoptions: its identity
// (pid and start time, read from /proc) and its signal.
type Target struct {
	procfs.ID
	Signal int
	pidfd  int // -1 where pidfd_open is missing: then by pid
}

// OpenTarget checks that pid exists and holds a pidfd to it, so that a reaper
// that dies is reported as gone instead of its reused pid being signalled.
func OpenTarget(pid, sig int) (*Target, error) {
	id, err := procfs.Lookup(pid)
	if err != nil {
		return nil, fmt.Errorf("--notify-pid %d: no such process", pid)
	}
	t := &Target{ID: id, Signal: sig, pidfd: -1}
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case err == nil:
		t.pidfd = fd
	case errors.Is(err, unix.ENOSYS):
		// Before Linux 5.3: fall back to rt_sigqueueinfo by pid.
		if err := unix.Kill(pid, 0); err != nil {
			return nil, fmt.Errorf("notify target %d: %w", pid, err)
		}
	default:
		return nil, fmt.Errorf("notify target %d: %w", pid, err)
	}
	return t, nil
}

// Notify queues the target's signal for one adoption. EAGAIN means the
// target's queue of pending signals is full (RLIMIT_SIGPENDING); ESRCH that
// the target is gone.
func (t *Target) Notify(adopted, uid, prevParent uint32) error {
	info := NewQueueInfo(t.Signal, adopted, uid, prevParent)
	if t.pidfd >= 0 {
		err := unix.PidfdSendSignal(t.pidfd, unix.Signal(t.Signal), info.raw(), 0)
		if !errors.Is(err, unix.ENOSYS) {
			return err
		}
	}
	return info.queue(int(t.PID))
}

// Adopted says whether a is an adoption by this target: same pid, same start time.
func (t *Target) Adopted(a *events.Adoption) bool { return a.NewParent.ID.Same(t.ID) }

// Close releases the pidfd.
func (t *Target) Close() error {
	if t.pidfd < 0 {
		return nil
	}
	err := unix.Close(t.pidfd)
	t.pidfd = -1
	return err
}
