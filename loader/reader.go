package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/adoptwatch/adoptwatch/bpf"
)

// reader takes records from the BPF ring buffer with cilium/ebpf's
// ringbuf.Reader, reusing one Record so that taking a record allocates
// nothing, and adds the wakeup promise (bpf/adopt.bpf.h): when adoptions come
// fast, the reader promises the kernel to look again soon, and the kernel
// sends the adoptions made well within the promise without a wakeup.
type reader struct {
	rd  *ringbuf.Reader
	rec ringbuf.Record // reused: its sample is valid until the next read

	// mu guards rd against close for pending (AvailableBytes reads the
	// mapping, which Close unmaps); ReadInto is interrupted by Close itself.
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
	noWait   bool // the deadline set is in the past: ReadInto does not block
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
	return &reader{rd: rd, promise: promise}, nil
}

// next returns the next sample, waiting for the kernel's wakeup when the ring
// is empty; with poll > 0, at most that long between looks (records sent
// without a wakeup are taken then). The sample is valid until the next call.
//
// Batching: while records come less than ringBatchGap apart on average, the
// reader promises to look again ringLinger after the last one, and waits
// until then (or until a record sent after the promise wakes it): a record
// then waits at most ringLinger plus the wait's granularity (1 ms).
// Otherwise it withdraws the promise, and each adoption wakes it at once.
func (r *reader) next(poll time.Duration) ([]byte, error) {
	for {
		if r.rd.AvailableBytes() == 0 {
			r.setWait(poll)
		} else if !r.noWait {
			// Records are there, perhaps sent without a wakeup: take
			// them without waiting for one.
			r.rd.SetDeadline(time.Unix(1, 0))
			r.noWait = true
		}
		err := r.rd.ReadInto(&r.rec)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue // looked, as promised or polled: nothing more
		case errors.Is(err, os.ErrClosed):
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

// setWait decides, before the reader waits on an empty ring, how long it may
// wait: until the promised look; once after withdrawing a promise, the
// backstop; else until a wakeup; never longer than poll.
func (r *reader) setWait(poll time.Duration) {
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
	r.noWait = false
	if wait == 0 {
		r.rd.SetDeadline(time.Time{})
		return
	}
	// The reader's epoll_wait takes whole milliseconds, rounded down from
	// the time left: under 1 ms it would return at once, and the reader
	// would spin until the promise. Round up to whole milliseconds, with
	// half a millisecond to spare for the time until the call.
	wait = (wait + time.Millisecond - 1).Truncate(time.Millisecond)
	r.rd.SetDeadline(time.Now().Add(wait + time.Millisecond/2))
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

// close interrupts a waiting next, which returns ErrClosed, and unmaps the ring.
func (r *reader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.rd.Close()
}
