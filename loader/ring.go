package loader

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// ring reads the ring buffer without blocking a thread in a system call.
//
// ringbuf.Reader waits in epoll_wait on the goroutine's own thread: a blocking
// system call, so the Go runtime's monitor hands the thread's processor off
// after 20 µs and keeps polling every 20 µs while that happens again and
// again. At thousands of adoptions a second that cost more CPU than handling
// the records (issue 12's profile). Here the wait goes through the runtime's
// network poller instead (the map's file descriptor is pollable): the
// goroutine parks, no thread holds a processor, and the reader is used only
// to take what is already there, never to wait.
type ring struct {
	reader  *ringbuf.Reader
	file    *os.File        // a non-blocking duplicate of the map's fd, in the network poller
	conn    syscall.RawConn // waits on file
	rec     ringbuf.Record  // reused: the Assembler copies what it keeps
	closing atomic.Bool
}

func newRing(m *ebpf.Map) (*ring, error) {
	reader, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, err
	}
	// A deadline in the past: ReadInto returns what is there, then
	// os.ErrDeadlineExceeded instead of waiting.
	reader.SetDeadline(time.Unix(1, 0))
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		reader.Close()
		return nil, fmt.Errorf("dup ring buffer fd: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		reader.Close()
		return nil, fmt.Errorf("ring buffer fd: %w", err)
	}
	file := os.NewFile(uintptr(fd), "ringbuf")
	conn, err := file.SyscallConn()
	if err != nil {
		file.Close()
		reader.Close()
		return nil, err
	}
	return &ring{reader: reader, file: file, conn: conn}, nil
}

// next returns the next sample, waiting for the kernel's wakeup when the ring
// is empty; with poll > 0, at most that long (records sent without a wakeup
// are taken then). The sample is valid until the next call.
func (r *ring) next(poll time.Duration) ([]byte, error) {
	for {
		if r.reader.AvailableBytes() == 0 {
			if err := r.wait(poll); err != nil {
				return nil, err
			}
		}
		err := r.reader.ReadInto(&r.rec)
		switch {
		case err == nil:
			return r.rec.RawSample, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue // nothing after all (a discarded record)
		case errors.Is(err, ringbuf.ErrClosed), r.closing.Load():
			return nil, ErrClosed
		default:
			return nil, fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

// wait parks until the ring holds data, the poll interval passes, or close.
func (r *ring) wait(poll time.Duration) error {
	if poll > 0 {
		r.file.SetReadDeadline(time.Now().Add(poll))
	}
	err := r.conn.Read(func(uintptr) bool { return r.reader.AvailableBytes() > 0 })
	switch {
	case r.closing.Load():
		return ErrClosed
	case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	}
	return fmt.Errorf("wait for the ring buffer: %w", err)
}

// pending says whether records are waiting to be read.
func (r *ring) pending() bool { return r.reader.AvailableBytes() > 0 }

// close wakes a waiting next, which returns ErrClosed.
func (r *ring) close() {
	r.closing.Store(true)
	r.file.Close()
	r.reader.Close()
}
