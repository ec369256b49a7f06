package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/bpf"
)

// reader takes records from the BPF ring buffer with cilium/ebpf's
// ringbuf.Reader, reusing one Record so that taking a record allocates
// nothing, and adds the wakeup promise (bpf/adopt.bpf.h): when adoptions come
// fast, the reader promises the kernel to look again soon, and the kernel
// sends the adoptions made well within the promise without a wakeup.
//
// The reader waits for the kernel's wakeups in Go's network poller (a
// duplicate of the map's fd, which is pollable), not in ringbuf.Reader's own
// blocking epoll_wait, and calls ReadInto only once records are there, with a
// deadline in the past so that it never blocks. A goroutine parked in the
// poller costs no thread; a thread blocked in epoll_wait has its processor
// handed off and wakes the runtime's monitor thread, which at thousands of
// adoptions a second cost more than the records (issue 12's profile).
type reader struct {
	rd  *ringbuf.Reader
	rec ringbuf.Record // reused: its sample is valid until the next read

	file     *os.File        // a non-blocking duplicate of the map's fd, in the poller
	conn     syscall.RawConn // waits on file
	closing  atomic.Bool
	deadline time.Time // the read deadline set on file (zero: none)

	// mu guards rd's AvailableBytes against close (it reads the mapping,
	// which Close unmaps); a ReadInto under way is waited for by Close.
	mu     sync.RWMutex
	closed bool

	// Batching (see next): promise writes the kernel's reader_looks_by_ns
	// (nil: never promise); lastTs is the timestamp of the last adoption
	// taken, gap the moving average of the time between adoptions (ns);
	// took says records were taken since the last wait.
	promise  func(bootNs uint64) error
	promised bool
	lastTs   uint64
	gap      uint64
	took     bool
}

// ringLinger is how long the reader lets adoptions gather when they come
// faster than one per ringBatchGap on average: it promises the kernel to
// look again that long after the last record it took, and the kernel sends
// no wakeup for records well within the promise (bpf/adopt.bpf.h). Slower
// than that, the wait (1 ms granularity) would often end before the next
// record and cost a wakeup of its own: measured, batching then cost more
// than it saved.
const (
	ringLinger   = 500 * time.Microsecond
	ringBatchGap = 375 * time.Microsecond // about 2,700 records a second
)

// ringBackstop bounds the wait after a promise is withdrawn: a record whose
// program was preempted between reading the promise and committing the
// record is found then at the latest.
const ringBackstop = time.Second

func newReader(m *ebpf.Map, promise func(uint64) error) (*reader, error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, err
	}
	rd.SetDeadline(time.Unix(1, 0)) // ReadInto never blocks: we wait in the poller
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		rd.Close()
		return nil, fmt.Errorf("dup ring buffer fd: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		rd.Close()
		return nil, fmt.Errorf("ring buffer fd: %w", err)
	}
	r := &reader{rd: rd, promise: promise, file: os.NewFile(uintptr(fd), "ringbuf")} // registers it with the poller
	if r.conn, err = r.file.SyscallConn(); err != nil {
		r.file.Close()
		rd.Close()
		return nil, err
	}
	return r, nil
}

// next returns the next sample, waiting for the kernel's wakeup when the ring
// is empty; with poll > 0, at most that long between looks (records sent
// without a wakeup are taken then). The sample is valid until the next call.
//
// Batching: while records come less than ringBatchGap apart on average, the
// reader promises to look again ringLinger after the last one, and waits
// until then (or until a record sent after the promise wakes it): a record
// then waits at most ringLinger plus the Go timer's granularity (about 1 ms).
// Otherwise it withdraws the promise, and each adoption wakes it at once.
func (r *reader) next(poll time.Duration) ([]byte, error) {
	for {
		if !r.pending() {
			if err := r.wait(r.waitFor(poll)); err != nil {
				return nil, err
			}
			continue
		}
		err := r.rd.ReadInto(&r.rec)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue // all taken (ReadInto does not block)
		case errors.Is(err, os.ErrClosed), r.closing.Load():
			return nil, ErrClosed
		default:
			return nil, fmt.Errorf("read the ring buffer: %w", err)
		}
		buf := r.rec.RawSample
		// Every record starts with its header: the kernel's timestamp,
		// then its kind (bpf/records.h). Only adoptions wake the reader;
		// the others come with them.
		if len(buf) >= 12 && bpf.AdoptwatchRecordKind(binary.NativeEndian.Uint32(buf[8:])) == bpf.AdoptwatchRecordKindRECORD_ADOPT {
			r.noteTime(binary.NativeEndian.Uint64(buf))
		}
		r.took = true
		return buf, nil
	}
}

// waitFor decides, before the reader waits on an empty ring, how long it may
// wait: until the promised look; once after withdrawing a promise, the
// backstop; else until a wakeup (0); never longer than poll.
func (r *reader) waitFor(poll time.Duration) time.Duration {
	var wait time.Duration
	switch {
	case r.took && r.gap < uint64(ringBatchGap) && r.promiseBy(r.lastTs+uint64(ringLinger)):
		wait = ringLinger
	case r.promised:
		r.promiseBy(0)
		wait = ringBackstop
	}
	if poll > 0 && (wait == 0 || poll < wait) {
		wait = poll
	}
	r.took = false
	return wait
}

// wait parks until the ring holds data, d passes (0: no limit), or close.
// A deadline already set that comes no later is kept: looking early is
// harmless, and each new deadline costs the runtime a timer change.
func (r *reader) wait(d time.Duration) error {
	if d > 0 {
		now := time.Now()
		if until := now.Add(d); r.deadline.IsZero() || !r.deadline.After(now) || r.deadline.After(until) {
			r.file.SetReadDeadline(until)
			r.deadline = until
		}
	} else if !r.deadline.IsZero() {
		r.file.SetReadDeadline(time.Time{})
		r.deadline = time.Time{}
	}
	// The poller reports the fd once per wakeup (edge-triggered); a wakeup
	// between the check and the park is kept for the park.
	err := r.conn.Read(func(uintptr) bool { return r.pending() || r.closing.Load() })
	switch {
	case r.closing.Load():
		return ErrClosed
	case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	}
	return fmt.Errorf("wait for the ring buffer: %w", err)
}

// noteTime keeps the average time between records (weight 1/8 to the
// newest), starting high so that a few close records do not start batching.
func (r *reader) noteTime(ts uint64) {
	gap := uint64(time.Second)
	if r.lastTs != 0 && ts > r.lastTs {
		gap = min(ts-r.lastTs, uint64(time.Second))
	}
	if r.gap == 0 {
		r.gap = uint64(time.Second)
	}
	r.gap = r.gap - r.gap/8 + gap/8
	r.lastTs = max(r.lastTs, ts)
}

// promiseBy tells the kernel the reader looks again by bootNs (0: no promise).
func (r *reader) promiseBy(bootNs uint64) bool {
	if r.promise == nil || r.promise(bootNs) != nil {
		return false
	}
	r.promised = bootNs != 0
	return true
}

// pending says whether records (perhaps not yet committed) are waiting.
func (r *reader) pending() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return !r.closed && r.rd.AvailableBytes() > 0
}

// close wakes a waiting next, which returns ErrClosed, and unmaps the ring.
func (r *reader) close() {
	if r.closing.Swap(true) {
		return
	}
	r.file.Close() // wakes the waiter
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.rd.Close() // waits for a ReadInto under way
}
