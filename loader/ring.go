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
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/bpf"
)

// ring reads the BPF ring buffer from its shared memory, and waits for the
// kernel's wakeups in the Go runtime's network poller.
//
// Why not ringbuf.Reader: it waits in epoll_wait on the goroutine's own thread
// and calls epoll_wait again before each batch. Every system call made while
// all of the Go runtime's processors are idle wakes its monitor thread (sysmon),
// which then sleeps and wakes again on its own; a thread blocked in a system
// call also has its processor handed off. At thousands of adoptions a second
// those wake-ups cost several times the records' own handling (issue 12's
// profile). Here a record is taken with plain memory reads, and an empty ring
// is waited on through the poller (the map's fd is pollable): the goroutine
// parks, and no system call is made on the way.
//
// The layout is the kernel's (kernel/bpf/ringbuf.c): one read-write page
// holding the consumer position, then a read-only page holding the producer
// position, then the data area mapped twice in a row, so that a record that
// wraps around the end is contiguous. Each record starts with an 8-byte
// header: its length, with a busy bit while the producer writes it and a
// discard bit if the producer dropped it, and a page offset we do not need.
type ring struct {
	mu     sync.Mutex // guards the mappings against close
	closed bool
	cons   []byte // consumer page
	prod   []byte // producer page, then the data area twice
	data   []byte
	mask   uint64
	buf    []byte // the current sample, copied out of the ring

	file    *os.File        // a non-blocking duplicate of the map's fd, in the poller
	conn    syscall.RawConn // waits on file
	closing atomic.Bool

	// Batching (see next): promise writes the kernel's reader_looks_by_ns
	// (nil: never promise); lastTs is the timestamp of the last adoption
	// taken, gap the moving average of the time between adoptions (ns);
	// took says records were taken since the last wait.
	promise  func(bootNs uint64) error
	promised bool
	lastTs   uint64
	gap      uint64
	took     bool
	deadline time.Time // the read deadline set on file (zero: none)
}

// ringLinger is how long the reader lets adoptions gather when they come
// faster than one per ringBatchGap on average: it promises the kernel to
// look again that long after the last record it took, and the kernel sends
// no wakeup for records well within the promise (bpf/adopt.bpf.h). Slower
// than that, the Go timer (1 ms granularity) would often fire before the
// next record and cost a wakeup of its own: measured, batching then cost
// more than it saved.
const (
	ringLinger   = 500 * time.Microsecond
	ringBatchGap = 375 * time.Microsecond // about 2,700 records a second
)

// ringBackstop bounds the wait after a promise is withdrawn: a record whose
// program was preempted between reading the promise and committing the
// record is found then at the latest.
const ringBackstop = time.Second

const (
	ringHeaderSize = 8
	ringBusyBit    = 1 << 31
	ringDiscardBit = 1 << 30
)

func newRing(m *ebpf.Map, promise func(uint64) error) (*ring, error) {
	size := int(m.MaxEntries())
	if size <= 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d is not a power of two", size)
	}
	page := os.Getpagesize()
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup ring buffer fd: %w", err)
	}
	r := &ring{mask: uint64(size - 1), promise: promise}
	fail := func(err error) (*ring, error) {
		if r.cons != nil {
			unix.Munmap(r.cons)
		}
		if r.prod != nil {
			unix.Munmap(r.prod)
		}
		unix.Close(fd)
		return nil, err
	}
	if r.cons, err = unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fail(fmt.Errorf("map the ring buffer's consumer page: %w", err))
	}
	if r.prod, err = unix.Mmap(fd, int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return fail(fmt.Errorf("map the ring buffer's data: %w", err))
	}
	r.data = r.prod[page:]
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail(fmt.Errorf("ring buffer fd: %w", err))
	}
	r.file = os.NewFile(uintptr(fd), "ringbuf") // registers it with the poller
	if r.conn, err = r.file.SyscallConn(); err != nil {
		r.file.Close()
		unix.Munmap(r.cons)
		unix.Munmap(r.prod)
		return nil, err
	}
	return r, nil
}

func (r *ring) consPos() *uint64 { return (*uint64)(unsafe.Pointer(&r.cons[0])) }
func (r *ring) prodPos() *uint64 { return (*uint64)(unsafe.Pointer(&r.prod[0])) }

// take copies the next committed sample into r.buf and consumes it. It
// returns false if there is none (the ring is empty, or its next record is
// still being written: the kernel wakes us once it is committed).
func (r *ring) take() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false, ErrClosed
	}
	cons := atomic.LoadUint64(r.consPos())
	for {
		prod := atomic.LoadUint64(r.prodPos())
		if cons == prod {
			return false, nil
		}
		if prod-cons < ringHeaderSize {
			return false, fmt.Errorf("ring buffer: %d bytes left, less than a record header", prod-cons)
		}
		// An atomic load of the length orders the reads of the record's
		// data after the kernel's commit of it.
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[cons&r.mask])))
		if hdr&ringBusyBit != 0 {
			return false, nil
		}
		n := uint64(hdr &^ (ringBusyBit | ringDiscardBit))
		next := cons + (ringHeaderSize+n+7)&^7
		if next > prod {
			return false, fmt.Errorf("ring buffer: a record of %d bytes runs past the producer", n)
		}
		if hdr&ringDiscardBit == 0 {
			start := (cons + ringHeaderSize) & r.mask
			r.buf = append(r.buf[:0], r.data[start:start+n]...)
		}
		atomic.StoreUint64(r.consPos(), next)
		if hdr&ringDiscardBit == 0 {
			return true, nil
		}
		cons = next
	}
}

// next returns the next sample, waiting for the kernel's wakeup when the ring
// is empty; with poll > 0, at most that long between looks (records sent
// without a wakeup are taken then). The sample is valid until the next call.
//
// Batching: while records come less than ringBatchGap apart on average, the
// reader promises to look again ringLinger after the last one, and parks
// until then (or until a record sent after the promise wakes it): a record
// then waits at most ringLinger plus the Go timer's granularity (about 1 ms).
// Otherwise it withdraws the promise, and each adoption wakes it at once.
func (r *ring) next(poll time.Duration) ([]byte, error) {
	for {
		ok, err := r.take()
		if err != nil {
			return nil, err
		}
		if ok {
			// Every record starts with its header: the kernel's
			// timestamp, then its kind (bpf/records.h). Only adoptions
			// wake the reader; the others come with them.
			if len(r.buf) >= 12 && bpf.AdoptwatchRecordKind(binary.NativeEndian.Uint32(r.buf[8:])) == bpf.AdoptwatchRecordKindRECORD_ADOPT {
				r.noteTime(binary.NativeEndian.Uint64(r.buf))
			}
			r.took = true
			return r.buf, nil
		}
		// How long to park: until the promised look; once after
		// withdrawing a promise, the backstop; else until a wakeup (no
		// timer: setting one costs the runtime a wakeup of its own).
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
		if err := r.wait(wait); err != nil {
			return nil, err
		}
	}
}

// noteTime keeps the average time between records (weight 1/8 to the
// newest), starting high so that a few close records do not start batching.
func (r *ring) noteTime(ts uint64) {
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
func (r *ring) promiseBy(bootNs uint64) bool {
	if r.promise == nil || r.promise(bootNs) != nil {
		return false
	}
	r.promised = bootNs != 0
	return true
}

// wait parks until the ring holds data, d passes (0: no limit), or close.
// A deadline already set that comes no later is kept: looking early is
// harmless, and each new deadline costs the runtime a timer change.
func (r *ring) wait(d time.Duration) error {
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

// pending says whether records (perhaps not yet committed) are waiting.
func (r *ring) pending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.closed && atomic.LoadUint64(r.prodPos()) != atomic.LoadUint64(r.consPos())
}

// close wakes a waiting next, which returns ErrClosed, and unmaps the ring.
func (r *ring) close() {
	if r.closing.Swap(true) {
		return
	}
	r.file.Close() // wakes the waiter, after which it takes r.mu no more
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	unix.Munmap(r.cons)
	unix.Munmap(r.prod)
}
