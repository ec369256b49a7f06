package events

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts the kernel's CLOCK_BOOTTIME timestamps to wall-clock time.
type Clock struct {
	bootEpoch time.Time // wall-clock time at boot
}

// NewClock reads both clocks now. The offset drifts only if the wall clock is set.
func NewClock() Clock {
	var boot, real unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &real)
	return Clock{bootEpoch: time.Unix(real.Unix()).Add(-time.Duration(boot.Nano()))}
}

// Wall returns the wall-clock time of a CLOCK_BOOTTIME timestamp.
func (c Clock) Wall(bootNs uint64) time.Time {
	return c.bootEpoch.Add(time.Duration(bootNs))
}

// SinceBoot returns the CLOCK_BOOTTIME reading now.
func SinceBoot() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}
