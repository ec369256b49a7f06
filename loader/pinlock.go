package loader

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A watcher that pins its maps holds an exclusive flock on the pin directory
// (bpffs directories take flocks; files other than BPF objects cannot be made
// there) for as long as it runs. The kernel drops the lock when the holder
// exits, however it exits, so pins with no lock on their directory are stale:
// their watcher is gone.

// ErrPinsLive: another running watcher owns the pins.
var ErrPinsLive = errors.New("another adoptwatch is running with its maps pinned there")

// ErrStalePins: pins whose watcher is gone.
var ErrStalePins = errors.New("stale pins: the adoptwatch that pinned these maps is no longer running")

// ErrPin marks every error of pinning the maps (Options.PinDir), for callers
// that say so rather than "cannot attach".
var ErrPin = errors.New("cannot pin the maps")

type pinError struct{ error }

func (e pinError) Is(target error) bool { return target == ErrPin }
func (e pinError) Unwrap() error        { return e.error }

// lockPinDir takes the pin directory's lock, or fails with ErrPinsLive.
func lockPinDir(dir string) (*os.File, error) {
	var lastErr error
	for try := 0; try < 5; try++ {
		f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open pin directory: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			// Perhaps `adoptwatch unwatch` checking for a moment: try again shortly.
			f.Close()
			lastErr = pinsLive(dir)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock pin directory %s: %w", dir, err)
		}
		// The lock must be on what the path names now, not on a directory
		// removed and made again meanwhile.
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(dir, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return f, nil
		}
		f.Close()
		lastErr = fmt.Errorf("pin directory %s was replaced while being locked", dir)
	}
	return nil, lastErr
}

func pinsLive(dir string) error {
	if pid := pinOwner(dir); pid > 0 {
		return fmt.Errorf("%s: %w (pid %d): stop it first, or pin elsewhere with --pin-dir", dir, ErrPinsLive, pid)
	}
	return fmt.Errorf("%s: %w: stop it first, or pin elsewhere with --pin-dir", dir, ErrPinsLive)
}

// pinOwner is the pid holding the pin directory's lock, from /proc/locks, or 0.
func pinOwner(dir string) int {
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return 0
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	// "1: FLOCK  ADVISORY  WRITE 1234 00:28:371407 0 EOF": pid, then major:minor:inode in hex.
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "FLOCK" && f[3] == "WRITE" && f[5] == want {
			pid, _ := strconv.Atoi(f[4])
			return pid
		}
	}
	return 0
}

// PinOwner says whether a running watcher holds the pins under dir and, if
// /proc/locks tells, its pid. Pins with no holder are stale (ErrStalePins).
func PinOwner(dir string) (pid int, err error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	switch {
	case errors.Is(err, unix.EWOULDBLOCK):
		return pinOwner(dir), nil
	case err != nil:
		return 0, fmt.Errorf("check pin directory %s: %w", dir, err)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return 0, fmt.Errorf("%s: %w (it exited without removing them): remove them (rm -r %s), or start adoptwatch --pin again", dir, ErrStalePins, dir)
}
