package subscribe

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// What a record's "pidfd" field says.
const (
	PidfdPassed      = "passed"      // a pidfd of the adopted process comes with the line
	PidfdUnsupported = "unsupported" // no pidfd_open here (Linux before 5.3)
	PidfdGone        = "gone"        // the process was reaped before it could be opened
	PidfdMismatch    = "mismatch"    // the pid now names another process (pid reused)
)

// OpenPidfd opens a pidfd of the process (pid, start) and checks that it is
// that process, not a later one that reuses the pid. It returns the fd (or -1)
// and the status for the record; statuses other than PidfdPassed come with -1.
func OpenPidfd(id procfs.ID) (int, string) {
	fd, err := unix.PidfdOpen(int(id.PID), 0)
	switch {
	case errors.Is(err, unix.ENOSYS):
		return -1, PidfdUnsupported
	case errors.Is(err, unix.ESRCH):
		return -1, PidfdGone
	case err != nil:
		return -1, "error: pidfd_open: " + err.Error()
	}
	// Read the start time of whatever pid names now, then check that the
	// pidfd's process has not been reaped meanwhile: if it has not, the pid
	// still names it, so the start time read is its own.
	now, statErr := procfs.Lookup(int(id.PID))
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ESRCH) {
			return -1, PidfdGone
		}
		return -1, "error: pidfd_send_signal: " + err.Error()
	}
	if statErr != nil {
		unix.Close(fd)
		return -1, "error: " + statErr.Error()
	}
	if !now.Same(id) {
		unix.Close(fd)
		return -1, PidfdMismatch
	}
	return fd, PidfdPassed
}
