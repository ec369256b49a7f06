package subscribe

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/output"
)

// record is one adoption as sent to every subscriber: the line and the pidfd
// exist once, and the last queue to let go of it closes the pidfd.
type record struct {
	srv  *Server
	seq  uint64
	a    *events.Adoption
	line []byte
	fd   int // -1: none
	refs atomic.Int32
}

func (s *Server) hold(seq uint64, a *events.Adoption, line []byte, fd int) *record {
	r := &record{srv: s, seq: seq, a: a, line: line, fd: fd}
	r.refs.Store(1)
	s.heldBytes.Add(int64(len(line)))
	if fd >= 0 {
		s.heldPidfds.Add(1)
	}
	return r
}

func (r *record) release() {
	if r.refs.Add(-1) != 0 {
		return
	}
	r.srv.heldBytes.Add(-int64(len(r.line)))
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.srv.heldPidfds.Add(-1)
	}
}

// Why a subscriber's connection ends; the first reason wins.
type endKind int

const (
	endNone       endKind = iota
	endShutdown           // the server closes: queued records are still sent
	endOverflow           // its own queue filled up
	endCutOff             // furthest behind when the overall bounds were hit
	endPeerClosed         // it closed its end
	endBadFilter
	endProbe
	endWriteError
)

type subscriber struct {
	srv     *Server
	id      int
	who     string
	allowed string // why it was let in, for the log
	uid     uint32
	conn    *net.UnixConn

	ready  chan struct{} // closed once the filter is known
	filter Filter        // set before ready is closed
	wake   chan struct{} // a record was queued (capacity 1)
	done   chan struct{} // closed by end

	mu      sync.Mutex
	ring    []*record // the queue: len(ring) is its bound
	head, n int
	kind    endKind
	why     string
	joined  bool // got the "subscribed" line
	sent    uint64
	dropped uint64
}

func newSubscriber(s *Server, id int, who, allowed string, uid uint32, conn *net.UnixConn) *subscriber {
	return &subscriber{srv: s, id: id, who: who, allowed: allowed, uid: uid, conn: conn,
		ready: make(chan struct{}), wake: make(chan struct{}, 1), done: make(chan struct{}),
		ring: make([]*record, s.cfg.Queue)}
}

// offer queues a record (taking a reference), or cuts the subscriber off if
// its queue is full. Records its filter does not want are not queued at all.
func (sub *subscriber) offer(r *record) {
	select {
	case <-sub.ready:
		if !sub.filter.Match(r.a) {
			return
		}
	default: // filter not known yet: queue everything, the writer filters
	}
	sub.mu.Lock()
	if sub.kind != endNone && sub.kind != endShutdown {
		if sub.kind == endOverflow || sub.kind == endCutOff {
			sub.dropped++
			sub.srv.stats.dropped.Add(1)
		}
		sub.mu.Unlock()
		return
	}
	if sub.n == len(sub.ring) {
		sub.dropped++
		sub.srv.stats.dropped.Add(1)
		sub.mu.Unlock()
		sub.cut(endOverflow, fmt.Sprintf("queue of %d records full: the subscriber did not keep up", len(sub.ring)))
		return
	}
	r.refs.Add(1)
	sub.ring[(sub.head+sub.n)%len(sub.ring)] = r
	sub.n++
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// pop takes the oldest queued record, or nil.
func (sub *subscriber) pop() *record {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.n == 0 {
		return nil
	}
	r := sub.ring[sub.head]
	sub.ring[sub.head] = nil
	sub.head = (sub.head + 1) % len(sub.ring)
	sub.n--
	return r
}

// oldest is the sequence number of the oldest queued record.
func (sub *subscriber) oldest() (uint64, bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.n == 0 || (sub.kind != endNone && sub.kind != endShutdown) {
		return 0, false
	}
	return sub.ring[sub.head].seq, true
}

// dropQueued releases every queued record, counting them as dropped if asked.
func (sub *subscriber) dropQueued(count bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for sub.n > 0 {
		sub.ring[sub.head].release()
		sub.ring[sub.head] = nil
		sub.head = (sub.head + 1) % len(sub.ring)
		sub.n--
		if count {
			sub.dropped++
			sub.srv.stats.dropped.Add(1)
		}
	}
}

// end records why the connection ends (the first reason wins) and wakes the
// writer. It reports whether this call set the reason.
func (sub *subscriber) end(kind endKind, why string) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.kind != endNone {
		return false
	}
	sub.kind, sub.why = kind, why
	close(sub.done)
	// Bound a write that may be blocked on a stalled peer right now.
	sub.conn.SetWriteDeadline(time.Now().Add(sub.srv.cfg.Grace))
	return true
}

// cut disconnects a subscriber that fell behind: its queued records are
// released at once, so the pidfds and bytes they held are free again.
func (sub *subscriber) cut(kind endKind, why string) {
	if sub.end(kind, why) {
		sub.conn.SetWriteDeadline(time.Now()) // abandon a write blocked on it now
		sub.srv.logs.printf("%s %s: %s; disconnecting it", sub.who, map[endKind]string{endOverflow: "overflowed", endCutOff: "cut off"}[kind], why)
	}
	sub.dropQueued(true)
}

func (sub *subscriber) ending() (endKind, string) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.kind, sub.why
}

// read settles the filter (the optional first line), then keeps reading so
// that a subscriber that goes away is noticed at once, not at the next record.
func (sub *subscriber) read() {
	defer sub.srv.wg.Done()
	f, gone, err := sub.readFilterLine()
	switch {
	case gone:
		sub.end(endPeerClosed, "closed by the subscriber")
		return
	case err != nil:
		sub.srv.logs.printf("%s: %v", sub.who, err)
		sub.conn.SetWriteDeadline(time.Now().Add(time.Second))
		sub.conn.Write(output.NoticeLine(time.Now(), "error", err.Error()))
		sub.end(endBadFilter, "bad filter line")
		return
	case f.Kind == probeLine:
		sub.end(endProbe, "probe")
		return
	}
	sub.filter = f
	close(sub.ready)
	if sub.awaitHangup() {
		sub.end(endPeerClosed, "closed by the subscriber")
	}
}

// readFilterLine reads the optional first line; without one in time, "all".
// gone is true if the peer closed the connection instead.
func (sub *subscriber) readFilterLine() (f Filter, gone bool, err error) {
	sub.conn.SetReadDeadline(time.Now().Add(sub.srv.cfg.FilterWait))
	defer sub.conn.SetReadDeadline(time.Time{})
	raw, rerr := bufio.NewReaderSize(sub.conn, maxFilterLine).ReadSlice('\n')
	if errors.Is(rerr, bufio.ErrBufferFull) {
		return Filter{}, false, errors.New("filter line too long")
	}
	line := strings.TrimSpace(string(raw))
	if rerr != nil {
		var ne net.Error
		switch {
		case errors.As(rerr, &ne) && ne.Timeout() && line == "":
			return Filter{Kind: "all"}, false, nil
		case line == "" && sub.peerGone():
			return Filter{}, true, nil
		case line == "": // the subscriber shut its write side only: all
			return Filter{Kind: "all"}, false, nil
		}
	}
	if line == probeLine {
		return Filter{Kind: probeLine}, false, nil
	}
	f, err = ParseFilter(line)
	return f, false, err
}

// peerGone reports whether the peer closed its socket (POLLHUP), as opposed
// to only shutting down its write side.
func (sub *subscriber) peerGone() bool {
	raw, err := sub.conn.SyscallConn()
	if err != nil {
		return true
	}
	gone := true
	raw.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd)}}
		n, err := unix.Poll(pfd, 0)
		gone = err == nil && n == 1 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0
	})
	return gone
}

// awaitHangup waits, through the runtime's poller (no thread held), until the
// peer closes its socket, and reports whether it did (false: we closed it).
// Anything the subscriber sends after its filter line is read and ignored.
func (sub *subscriber) awaitHangup() bool {
	raw, err := sub.conn.SyscallConn()
	if err != nil {
		return false
	}
	var buf [512]byte
	hup := false
	err = raw.Read(func(fd uintptr) bool {
		for {
			n, err := unix.Read(int(fd), buf[:])
			switch {
			case n > 0:
				continue
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false // wait for more input or a hangup
			case err != nil:
				hup = true // ECONNRESET and the like: the peer is gone
				return true
			}
			// EOF: closed, or only its write side shut (it still reads: keep it).
			pfd := []unix.PollFd{{Fd: int32(fd)}}
			if n, err := unix.Poll(pfd, 0); err == nil && n == 1 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
				hup = true
				return true
			}
			return false // the peer's close will wake the poller again
		}
	})
	return hup && err == nil
}

// write sends the hello line, then the queued records in order, until the
// connection ends for any reason; then it releases everything it held.
func (sub *subscriber) write() {
	defer sub.srv.wg.Done()
	var filter Filter
	select {
	case <-sub.ready:
		filter = sub.filter
	case <-sub.done:
		if kind, _ := sub.ending(); kind == endShutdown {
			filter = Filter{Kind: "all"} // shutting down before a filter: send what was queued
			break
		}
		sub.finish(false)
		return
	}
	hello := output.SubscribedLine(time.Now(), sub.id, filter.String(), len(sub.ring))
	if _, err := sub.conn.Write(hello); err != nil {
		sub.writeFailed(err)
		sub.finish(false)
		return
	}
	sub.mu.Lock()
	sub.joined = true
	sub.mu.Unlock()
	sub.srv.stats.accepted.Add(1)
	sub.srv.logs.printf("%s connected: allowed as %s, filter %s", sub.who, sub.allowed, filter)
	partial := false
	for {
		if kind, _ := sub.ending(); kind != endNone && kind != endShutdown {
			break
		}
		r := sub.pop()
		if r == nil {
			select {
			case <-sub.wake:
				continue
			case <-sub.done:
				if kind, _ := sub.ending(); kind == endShutdown {
					if r = sub.pop(); r == nil {
						break // everything queued before shutdown was sent
					}
				}
			}
			if r == nil {
				break
			}
		}
		if !filter.Match(r.a) {
			r.release()
			continue
		}
		n, err := sendRecord(sub.conn, r.line, r.fd)
		r.release()
		if err != nil {
			partial = n > 0 && n < len(r.line)
			sub.writeFailed(err)
			break
		}
		sub.mu.Lock()
		sub.sent++
		sub.mu.Unlock()
		sub.srv.stats.sent.Add(1)
	}
	sub.finish(partial)
}

func (sub *subscriber) writeFailed(err error) {
	if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
		sub.end(endPeerClosed, "closed by the subscriber") // the reader would have seen it next
		return
	}
	// A write cut short by our own deadline after a cut-off is not a write error.
	if sub.end(endWriteError, "write: "+err.Error()) {
		sub.srv.stats.writeErrors.Add(1)
	}
}

// finish tells a subscriber that fell behind why it is disconnected (if it
// reads again within Grace), releases what is still queued, closes the
// connection and forgets the subscriber.
func (sub *subscriber) finish(partial bool) {
	sub.end(endShutdown, "adoptwatch is shutting down") // no-op if a reason is set
	kind, why := sub.ending()
	sub.mu.Lock()
	joined := sub.joined
	sub.mu.Unlock()
	switch kind {
	case endOverflow, endCutOff:
		sub.dropQueued(true)
		if kind == endOverflow {
			sub.srv.stats.overflowed.Add(1)
		} else {
			sub.srv.stats.cutOff.Add(1)
		}
		sub.mu.Lock()
		dropped := sub.dropped
		sub.mu.Unlock()
		msg := output.OverflowLine(time.Now(), why, dropped)
		if partial {
			msg = append([]byte("\n"), msg...) // end the cut-off record's line first
		}
		sub.conn.SetWriteDeadline(time.Now().Add(sub.srv.cfg.Grace))
		sub.conn.Write(msg)
	case endPeerClosed:
		if joined {
			sub.srv.stats.closedByPeer.Add(1)
		} else {
			sub.srv.stats.abandoned.Add(1)
		}
	case endProbe:
		sub.srv.stats.probes.Add(1)
	case endBadFilter:
		sub.srv.stats.refused.Add(1)
	}
	// What is still queued: records for a subscriber that is gone, or that
	// never asked for them (bad filter, probe), or were not sent in time.
	sub.dropQueued(kind == endShutdown || kind == endWriteError)
	sub.conn.Close() // also ends the reader
	sub.srv.remove(sub)
	sub.mu.Lock()
	sent, dropped := sub.sent, sub.dropped
	sub.mu.Unlock()
	switch kind {
	case endProbe:
		sub.srv.logs.printf("%s: probed by another adoptwatch checking whether this socket is live", sub.who)
	case endPeerClosed:
		if !joined {
			return // abandoned before subscribing: counted, not logged
		}
	}
	sub.srv.logs.printf("%s disconnected: %s (%d records sent, %d dropped)", sub.who, why, sent, dropped)
}

// sendRecord writes one line with its pidfd (if any) as SCM_RIGHTS on the
// line's first byte. A stream socket may take part of it: the rest follows.
func sendRecord(conn *net.UnixConn, line []byte, fd int) (int, error) {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	n, _, err := conn.WriteMsgUnix(line, oob, nil)
	if err != nil || n == len(line) {
		return n, err
	}
	m, err := conn.Write(line[n:])
	return n + m, err
}
