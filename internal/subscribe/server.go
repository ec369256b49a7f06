// Package subscribe serves adoption records on a Unix socket: each subscriber
// gets every record (or those its filter asks for) as one JSON line, and with
// each, through SCM_RIGHTS, a pidfd of the adopted process opened when the
// record arrived. A slow subscriber never blocks the others or the caller.
//
// Everything the server holds for its subscribers is bounded: the number of
// subscribers (overall and per non-root uid), each one's queue, and the
// records, bytes and pidfds held for all of them. A record's line and pidfd
// exist once, shared by every queue it is in; the kernel duplicates the pidfd
// when it is sent. When a bound is hit the subscriber that caused it is
// refused, or cut off, and told why in one JSON line; the others lose nothing.
package subscribe

import (
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/output"
)

// Defaults of the bounds (Config's zero values).
const (
	DefaultQueue          = 256
	DefaultMaxSubscribers = 64
	DefaultMaxPerUID      = 8
	DefaultMaxPidfds      = 4096
	DefaultMaxBytes       = 64 << 20
)

// Config says where and for whom to serve, and within which bounds.
type Config struct {
	Path  string
	Group string // name or gid allowed besides root; "" for root only
	Queue int    // records queued per subscriber before it counts as stalled
	// MaxSubscribers bounds the connections held at once (subscribed or still
	// choosing a filter); MaxPerUID bounds those of each non-root uid.
	MaxSubscribers int
	MaxPerUID      int
	// MaxPidfds and MaxBytes bound the pidfds and line bytes held for all
	// subscribers together. Past them, the subscriber furthest behind is cut off.
	// MaxPidfds is lowered to a quarter of RLIMIT_NOFILE if that is less.
	MaxPidfds int
	MaxBytes  int64
	// FilterWait is how long a subscriber has to send its filter line before
	// "all" applies. Records arriving meanwhile are queued, not lost.
	FilterWait time.Duration
	// Grace bounds the final writes to a subscriber (overflow notice, shutdown).
	Grace time.Duration
	Log   func(format string, args ...any) // one line each, for stderr
}

// Server is a listening subscriber socket.
type Server struct {
	cfg     Config
	gid     int // -1: root only
	sock    *SocketFile
	wg      sync.WaitGroup
	closing chan struct{} // closed by Close: ends the accept loop's back-off

	mu     sync.Mutex
	subs   map[*subscriber]bool
	perUID map[uint32]int
	next   int
	seq    uint64
	done   bool

	// What all subscribers' queues hold together, released as records are sent or dropped.
	heldPidfds atomic.Int64
	heldBytes  atomic.Int64

	logs  rateLog
	stats struct {
		accepted, refused, overflowed, writeErrors, sent, dropped atomic.Uint64
		passed, unsupported, gone, mismatch, errors               atomic.Uint64
		cutOff, closedByPeer, abandoned, probes, acceptErrors     atomic.Uint64
	}
}

// Listen creates the socket: mode 0600 owned by root, or 0660 with cfg.Group.
// An existing path is replaced only if it is a stale socket (nobody accepts
// on it); a live socket or another kind of file is refused.
func Listen(cfg Config) (*Server, error) {
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.MaxSubscribers <= 0 {
		cfg.MaxSubscribers = DefaultMaxSubscribers
	}
	if cfg.MaxPerUID <= 0 {
		cfg.MaxPerUID = DefaultMaxPerUID
	}
	if cfg.MaxPidfds <= 0 {
		cfg.MaxPidfds = DefaultMaxPidfds
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur/4 < uint64(cfg.MaxPidfds) {
		cfg.MaxPidfds = max(int(lim.Cur/4), 1)
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.FilterWait <= 0 {
		cfg.FilterWait = time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	s := &Server{cfg: cfg, gid: -1, subs: map[*subscriber]bool{}, perUID: map[uint32]int{},
		closing: make(chan struct{})}
	s.logs = rateLog{log: cfg.Log, perSecond: 20}
	if cfg.Group != "" {
		gid, err := LookupGroup(cfg.Group)
		if err != nil {
			return nil, err
		}
		s.gid = gid
	}
	sock, err := ListenSocket(cfg.Path, s.gid, cfg.Log)
	if err != nil {
		return nil, err
	}
	s.sock = sock
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// LookupGroup resolves a group name, or checks that a numeric gid exists.
func LookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		if _, numeric := strconv.Atoi(name); numeric == nil {
			g, err = user.LookupGroupId(name)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("--socket-group %s: %w", name, err)
	}
	return strconv.Atoi(g.Gid)
}

// accept admits connections. Errors (EMFILE, ENFILE, ENOBUFS...) are backed
// off exponentially up to a second, and logged at most every 10 s with a count.
func (s *Server) accept() {
	defer s.wg.Done()
	var delay time.Duration
	var lastLog time.Time
	var unlogged uint64
	for {
		conn, err := s.sock.Accept()
		if err == nil {
			delay = 0
			s.admit(conn)
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
		s.stats.acceptErrors.Add(1)
		unlogged++
		if time.Since(lastLog) >= 10*time.Second {
			more := ""
			if unlogged > 1 {
				more = fmt.Sprintf(" (%d accept errors since the last report)", unlogged)
			}
			s.cfg.Log("accept: %v%s; backing off", err, more)
			lastLog, unlogged = time.Now(), 0
		}
		delay = min(max(5*time.Millisecond, 2*delay), time.Second)
		select {
		case <-time.After(delay):
		case <-s.closing:
			return
		}
	}
}

// Peer is who connected, from SO_PEERCRED and SO_PEERGROUPS at connect time.
type Peer struct {
	PID, UID, GID uint32
	Groups        []uint32
}

// Authorize: root, or a member of the allowed group (gid < 0: none).
func Authorize(p Peer, gid int) (bool, string) {
	if p.UID == 0 {
		return true, "root"
	}
	if gid >= 0 {
		if p.GID == uint32(gid) {
			return true, fmt.Sprintf("primary group %d", gid)
		}
		for _, g := range p.Groups {
			if g == uint32(gid) {
				return true, fmt.Sprintf("member of group %d", gid)
			}
		}
		return false, fmt.Sprintf("uid %d is neither root nor a member of group %d", p.UID, gid)
	}
	return false, fmt.Sprintf("uid %d is not root (no --socket-group)", p.UID)
}

func peerOf(conn *net.UnixConn) (Peer, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var p Peer
	var opErr error
	err = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			opErr = err
			return
		}
		p = Peer{PID: uint32(cred.Pid), UID: cred.Uid, GID: cred.Gid}
		p.Groups, _ = peerGroups(int(fd)) // Linux 4.13+; without it, the primary gid only
	})
	if err == nil {
		err = opErr
	}
	return p, err
}

func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 256)
	n := uint32(len(buf) * 4)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
		uintptr(unsafePointer(&buf[0])), uintptr(unsafePointer(&n)), 0)
	if errno != 0 {
		return nil, errno
	}
	return buf[:n/4], nil
}

// admit checks the peer's credentials and the bounds on subscribers, then
// starts the subscriber's reader and writer.
func (s *Server) admit(conn *net.UnixConn) {
	peer, err := peerOf(conn)
	if err != nil {
		s.logs.printf("subscriber refused: SO_PEERCRED: %v", err)
		s.stats.refused.Add(1)
		conn.Close()
		return
	}
	ok, why := Authorize(peer, s.gid)
	s.mu.Lock()
	s.next++
	id := s.next
	if len(s.subs) >= s.cfg.MaxSubscribers || peer.UID != 0 && s.perUID[peer.UID] >= s.cfg.MaxPerUID {
		s.reapClosedLocked()
	}
	switch {
	case s.done:
		ok, why = false, "adoptwatch is shutting down"
	case !ok:
	case len(s.subs) >= s.cfg.MaxSubscribers:
		ok, why = false, fmt.Sprintf("too many subscribers: %d connected, the limit is %d (--socket-max-subscribers)", len(s.subs), s.cfg.MaxSubscribers)
	case peer.UID != 0 && s.perUID[peer.UID] >= s.cfg.MaxPerUID:
		ok, why = false, fmt.Sprintf("uid %d has %d subscribers connected, the limit per non-root uid is %d (--socket-max-per-uid)", peer.UID, s.perUID[peer.UID], s.cfg.MaxPerUID)
	}
	who := fmt.Sprintf("subscriber %d (pid %d uid %d gid %d)", id, peer.PID, peer.UID, peer.GID)
	if !ok {
		s.mu.Unlock()
		s.stats.refused.Add(1)
		s.logs.printf("%s refused: %s", who, why)
		// A new connection's send buffer is empty: this never waits long.
		conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		conn.Write(output.NoticeLine(time.Now(), "refused", why))
		conn.Close()
		return
	}
	sub := newSubscriber(s, id, who, why, peer.UID, conn)
	s.subs[sub] = true
	s.perUID[peer.UID]++
	s.mu.Unlock()
	s.wg.Add(2)
	go sub.read()
	go sub.write()
}

// reapClosedLocked closes and forgets, at once, the subscribers whose peers
// have closed their sockets but whose readers have not run yet to notice (a
// slow or busy machine, a burst of connections that came and went): a peer
// that is gone must never cost a live one its place. Closing here keeps the
// descriptors held within the limit too; their writers finish as usual.
func (s *Server) reapClosedLocked() {
	for sub := range s.subs {
		if sub.peerGone() {
			sub.end(endPeerClosed, "closed by the subscriber")
			sub.conn.Close()
			s.removeLocked(sub)
		}
	}
}

// remove forgets a subscriber whose writer has finished.
func (s *Server) remove(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(sub)
}

func (s *Server) removeLocked(sub *subscriber) {
	if s.subs[sub] {
		delete(s.subs, sub)
		if s.perUID[sub.uid]--; s.perUID[sub.uid] <= 0 {
			delete(s.perUID, sub.uid)
		}
	}
}

// Publish hands one adoption to every subscriber, never blocking: the pidfd
// is opened here, once, and shared by every queue the record goes into.
func (s *Server) Publish(a *output.Adoption) {
	s.mu.Lock()
	subs := make([]*subscriber, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	fd, status := OpenPidfd(a.Child.ID)
	s.countPidfd(status)
	rec := s.hold(seq, a.Adoption, a.WithPidfd(status), fd)
	defer rec.release() // Publish's own reference
	s.enforceTotals(subs)
	for _, sub := range subs {
		sub.offer(rec)
	}
}

// enforceTotals cuts off the subscribers furthest behind until what is held
// for all of them fits the bounds: the one holding the oldest record is the
// one that keeps the others' records (and pidfds) alive.
func (s *Server) enforceTotals(subs []*subscriber) {
	for s.heldPidfds.Load() > int64(s.cfg.MaxPidfds) || s.heldBytes.Load() > s.cfg.MaxBytes {
		var worst *subscriber
		oldest := ^uint64(0)
		for _, sub := range subs {
			if seq, ok := sub.oldest(); ok && seq < oldest {
				worst, oldest = sub, seq
			}
		}
		if worst == nil {
			return // only the new record and records being written are held
		}
		why := fmt.Sprintf("adoptwatch holds %d pidfds and %d bytes for its subscribers (bounds %d and %d) and this subscriber was furthest behind",
			s.heldPidfds.Load(), s.heldBytes.Load(), s.cfg.MaxPidfds, s.cfg.MaxBytes)
		worst.cut(endCutOff, why)
	}
}

func (s *Server) countPidfd(status string) {
	switch status {
	case PidfdPassed:
		s.stats.passed.Add(1)
	case PidfdUnsupported:
		s.stats.unsupported.Add(1)
	case PidfdGone:
		s.stats.gone.Add(1)
	case PidfdMismatch:
		s.stats.mismatch.Add(1)
	default:
		s.stats.errors.Add(1)
	}
}

// Stats returns the counts so far.
func (s *Server) Stats() output.SocketStats {
	st := &s.stats
	return output.SocketStats{
		Accepted: st.accepted.Load(), Refused: st.refused.Load(), Overflowed: st.overflowed.Load(),
		WriteErrors: st.writeErrors.Load(), RecordsSent: st.sent.Load(), RecordsDropped: st.dropped.Load(),
		PidfdsPassed: st.passed.Load(), PidfdUnsupported: st.unsupported.Load(), PidfdGone: st.gone.Load(),
		PidfdMismatch: st.mismatch.Load(), PidfdErrors: st.errors.Load(),
		CutOff: st.cutOff.Load(), ClosedByPeer: st.closedByPeer.Load(), Abandoned: st.abandoned.Load(),
		Probes: st.probes.Load(), AcceptErrors: st.acceptErrors.Load(),
	}
}

// Held returns the pidfds and line bytes held for all subscribers right now.
func (s *Server) Held() (pidfds, bytes int64) {
	return s.heldPidfds.Load(), s.heldBytes.Load()
}

// Close stops accepting, lets each subscriber's writer send what it has
// queued (within Grace), removes the socket file if it is still ours, and
// returns the final counts.
func (s *Server) Close() output.SocketStats {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return s.Stats()
	}
	s.done = true
	close(s.closing)
	subs := make([]*subscriber, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		sub.end(endShutdown, "adoptwatch is shutting down")
	}
	s.sock.Close()
	s.wg.Wait()
	s.logs.flush()
	return s.Stats()
}

// rateLog passes at most perSecond lines a second (connection traffic is the
// subscribers' to make, the log is not) and says how many it held back.
type rateLog struct {
	log        func(format string, args ...any)
	perSecond  int
	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed int
}

func (r *rateLog) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.window) >= time.Second {
		r.flushLocked()
		r.window, r.n = now, 0
	}
	if r.n >= r.perSecond {
		if r.suppressed++; r.suppressed == 1 {
			// Say how many were held back even if nothing else is logged.
			time.AfterFunc(time.Second, r.flush)
		}
		return
	}
	r.n++
	r.log(format, args...)
}

func (r *rateLog) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushLocked()
}

func (r *rateLog) flushLocked() {
	if r.suppressed > 0 {
		r.log("%d more subscriber messages were not logged (at most %d a second); the socket-stats line counts them all", r.suppressed, r.perSecond)
		r.suppressed = 0
	}
}
