// Package subscribe serves adoption records on a Unix socket: each subscriber
// gets every record (or those its filter asks for) as one JSON line, and with
// each, through SCM_RIGHTS, a pidfd of the adopted process opened when the
// record arrived. A slow subscriber never blocks the others or the caller: it
// has a bounded queue, and on overflow it is told why and disconnected.
package subscribe

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/output"
)

// Config says where and for whom to serve.
type Config struct {
	Path  string
	Group string // name or gid allowed besides root; "" for root only
	Queue int    // records queued per subscriber before it counts as stalled
	// FilterWait is how long a subscriber has to send its filter line before
	// "all" applies. Records arriving meanwhile are queued, not lost.
	FilterWait time.Duration
	// Grace bounds the final writes to a subscriber (overflow notice, shutdown).
	Grace time.Duration
	Log   func(format string, args ...any) // one line each, for stderr
}

// Server is a listening subscriber socket.
type Server struct {
	cfg   Config
	gid   int // -1: root only
	ln    *net.UnixListener
	ino   uint64 // the socket file we made, so Close removes only ours
	dev   uint64
	wg    sync.WaitGroup
	mu    sync.Mutex
	subs  map[*subscriber]bool
	next  int
	done  bool
	stats struct {
		accepted, refused, overflowed, writeErrors, sent, dropped atomic.Uint64
		passed, unsupported, gone, mismatch, errors               atomic.Uint64
	}
}

// Listen creates the socket: mode 0600 owned by root, or 0660 with cfg.Group.
// An existing path is replaced only if it is a stale socket (nobody accepts
// on it); a live socket or another kind of file is refused.
func Listen(cfg Config) (*Server, error) {
	if cfg.Queue <= 0 {
		cfg.Queue = 256
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
	s := &Server{cfg: cfg, gid: -1, subs: map[*subscriber]bool{}}
	if cfg.Group != "" {
		gid, err := lookupGroup(cfg.Group)
		if err != nil {
			return nil, err
		}
		s.gid = gid
	}
	if err := s.clearStale(); err != nil {
		return nil, err
	}
	// The umask makes bind create the file 0600 at once: no window in which
	// it is more open than intended. It is process-wide, so restore it now.
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // Close removes it only if it is still ours
	s.ln = ln
	mode, gid := os.FileMode(0o600), 0
	if s.gid >= 0 {
		mode, gid = 0o660, s.gid
	}
	if err := os.Chown(cfg.Path, 0, gid); err != nil {
		s.abandon()
		return nil, err
	}
	if err := os.Chmod(cfg.Path, mode); err != nil {
		s.abandon()
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(cfg.Path, &st); err != nil {
		s.abandon()
		return nil, err
	}
	s.ino, s.dev = st.Ino, st.Dev
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func lookupGroup(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("--socket-group: %w", err)
	}
	return strconv.Atoi(g.Gid)
}

func (s *Server) clearStale() error {
	fi, err := os.Lstat(s.cfg.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket: refusing to replace it", s.cfg.Path)
	}
	c, err := net.DialTimeout("unix", s.cfg.Path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: a server is accepting connections there (another adoptwatch?): refusing to replace it", s.cfg.Path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether the socket is stale: %w", s.cfg.Path, err)
	}
	if err := os.Remove(s.cfg.Path); err != nil {
		return err
	}
	s.cfg.Log("removed stale socket %s", s.cfg.Path)
	return nil
}

func (s *Server) abandon() {
	s.ln.Close()
	os.Remove(s.cfg.Path)
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.cfg.Log("accept: %v", err)
			time.Sleep(100 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		s.admit(conn)
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

func (s *Server) admit(conn *net.UnixConn) {
	peer, err := peerOf(conn)
	if err != nil {
		s.cfg.Log("subscriber refused: SO_PEERCRED: %v", err)
		s.stats.refused.Add(1)
		conn.Close()
		return
	}
	ok, why := Authorize(peer, s.gid)
	s.mu.Lock()
	s.next++
	id := s.next
	if s.done {
		ok, why = false, "adoptwatch is shutting down"
	}
	s.mu.Unlock()
	who := fmt.Sprintf("subscriber %d (pid %d uid %d gid %d)", id, peer.PID, peer.UID, peer.GID)
	if !ok {
		s.stats.refused.Add(1)
		s.cfg.Log("%s refused: %s", who, why)
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		conn.Write(output.NoticeLine(time.Now(), "refused", why))
		conn.Close()
		return
	}
	s.stats.accepted.Add(1)
	s.cfg.Log("%s connected: allowed as %s", who, why)
	sub := &subscriber{srv: s, id: id, who: who, conn: conn,
		queue: make(chan item, s.cfg.Queue), kick: make(chan struct{}), quit: make(chan struct{}),
		filterSet: make(chan Filter, 1)}
	s.mu.Lock()
	s.subs[sub] = true
	s.mu.Unlock()
	s.wg.Add(2)
	go sub.readFilter()
	go sub.write()
}

// Publish hands one adoption to every subscriber, never blocking: the pidfd
// is opened here, at once, and each subscriber gets its own duplicate.
func (s *Server) Publish(a *output.Adoption) {
	s.mu.Lock()
	subs := make([]*subscriber, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	fd, status := OpenPidfd(a.Child.ID)
	s.countPidfd(status)
	if fd >= 0 {
		defer unix.Close(fd)
	}
	line := a.WithPidfd(status) // once for all subscribers
	for _, sub := range subs {
		it := item{a: a.Adoption, fd: -1, line: line}
		if fd >= 0 {
			dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				it.line = a.WithPidfd("error: dup: " + err.Error())
			} else {
				it.fd = dup
			}
		}
		sub.offer(it)
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
	}
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
	for sub := range s.subs {
		sub.shutdown()
	}
	s.mu.Unlock()
	s.ln.Close()
	var st unix.Stat_t
	if unix.Stat(s.cfg.Path, &st) == nil && st.Ino == s.ino && st.Dev == s.dev {
		os.Remove(s.cfg.Path)
	}
	s.wg.Wait()
	return s.Stats()
}

// item is one record queued for one subscriber, with its own pidfd (or -1).
type item struct {
	a    *events.Adoption
	line []byte
	fd   int
}

type subscriber struct {
	srv  *Server
	id   int
	who  string
	conn *net.UnixConn

	queue     chan item
	filter    Filter      // the writer's, once received
	filterSet chan Filter // readFilter's result

	mu         sync.Mutex
	closed     bool          // the writer is gone: offer closes fds itself
	kick       chan struct{} // closed on overflow
	overflowed bool
	quit       chan struct{} // closed at shutdown
	stopping   bool
	sent       uint64
	dropped    uint64
}

// offer queues a record, or marks the subscriber stalled.
func (sub *subscriber) offer(it item) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.closed || sub.overflowed {
		closeItem(it)
		if sub.overflowed {
			sub.dropped++
			sub.srv.stats.dropped.Add(1)
		}
		return
	}
	select {
	case sub.queue <- it:
	default:
		closeItem(it)
		sub.dropped++
		sub.srv.stats.dropped.Add(1)
		sub.overflowed = true
		close(sub.kick)
		sub.srv.cfg.Log("%s overflowed: its queue of %d records is full; disconnecting it", sub.who, cap(sub.queue))
		// Bound a write that may be blocked on the stalled peer right now.
		sub.conn.SetWriteDeadline(time.Now().Add(sub.srv.cfg.Grace))
	}
}

func (sub *subscriber) shutdown() {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if !sub.stopping {
		sub.stopping = true
		close(sub.quit)
		sub.conn.SetWriteDeadline(time.Now().Add(sub.srv.cfg.Grace))
	}
}

func closeItem(it item) {
	if it.fd >= 0 {
		unix.Close(it.fd)
	}
}

// readFilter reads the optional first line; without one in time, "all".
func (sub *subscriber) readFilter() {
	defer sub.srv.wg.Done()
	f, err := sub.readFilterLine()
	if err != nil {
		sub.srv.cfg.Log("%s: %v", sub.who, err)
		sub.conn.SetWriteDeadline(time.Now().Add(time.Second))
		sub.conn.Write(output.NoticeLine(time.Now(), "error", err.Error()))
		f = Filter{Kind: "invalid"}
	}
	sub.filterSet <- f
}

func (sub *subscriber) readFilterLine() (Filter, error) {
	sub.conn.SetReadDeadline(time.Now().Add(sub.srv.cfg.FilterWait))
	raw, err := bufio.NewReaderSize(sub.conn, maxFilterLine).ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return Filter{}, errors.New("filter line too long")
	}
	if err != nil && len(raw) == 0 {
		return Filter{Kind: "all"}, nil // timeout, EOF (write side shut) or closed: all
	}
	return ParseFilter(strings.TrimSpace(string(raw)))
}

// write sends the queued records in order until the subscriber overflows, a
// write fails, or the server shuts down.
func (sub *subscriber) write() {
	defer sub.srv.wg.Done()
	reason := sub.run()
	sub.mu.Lock()
	sub.closed = true
	for {
		select {
		case it := <-sub.queue:
			closeItem(it)
			continue
		default:
		}
		break
	}
	sent, dropped := sub.sent, sub.dropped
	sub.mu.Unlock()
	sub.conn.Close()
	sub.srv.mu.Lock()
	delete(sub.srv.subs, sub)
	sub.srv.mu.Unlock()
	sub.srv.cfg.Log("%s disconnected: %s (%d records sent, %d dropped)", sub.who, reason, sent, dropped)
}

func (sub *subscriber) run() string {
	sub.filter = Filter{Kind: "all"}
	select {
	case sub.filter = <-sub.filterSet:
	case <-sub.kick:
	case <-sub.quit:
	}
	if sub.filter.Kind == "invalid" {
		return "bad filter line"
	}
	hello := output.SubscribedLine(time.Now(), sub.id, sub.filter.String(), cap(sub.queue))
	if _, err := sub.conn.Write(hello); err != nil {
		sub.srv.stats.writeErrors.Add(1)
		return "write: " + err.Error()
	}
	partial := false
	for {
		// Overflow first: records still queued for a stalled subscriber are dropped.
		select {
		case <-sub.kick:
			return sub.overflow(partial)
		default:
		}
		var it item
		select {
		case <-sub.kick:
			return sub.overflow(partial)
		case it = <-sub.queue:
		case <-sub.quit:
			select {
			case it = <-sub.queue: // drain what was queued before shutdown
			default:
				return "adoptwatch is shutting down"
			}
		}
		if !sub.filter.Match(it.a) {
			closeItem(it)
			continue
		}
		n, err := sendRecord(sub.conn, it.line, it.fd)
		closeItem(it)
		if err != nil {
			partial = n > 0 && n < len(it.line)
			select {
			case <-sub.kick:
				return sub.overflow(partial)
			default:
			}
			sub.srv.stats.writeErrors.Add(1)
			return "write: " + err.Error()
		}
		sub.mu.Lock()
		sub.sent++
		sub.mu.Unlock()
		sub.srv.stats.sent.Add(1)
	}
}

// overflow tells the stalled subscriber why it is being disconnected, if it
// reads again within Grace.
func (sub *subscriber) overflow(partial bool) string {
	sub.srv.stats.overflowed.Add(1)
	sub.mu.Lock()
	for {
		select {
		case it := <-sub.queue:
			closeItem(it)
			sub.dropped++
			sub.srv.stats.dropped.Add(1)
			continue
		default:
		}
		break
	}
	dropped := sub.dropped
	sub.mu.Unlock()
	why := fmt.Sprintf("queue of %d records full: the subscriber did not keep up", cap(sub.queue))
	msg := output.OverflowLine(time.Now(), why, dropped)
	if partial {
		msg = append([]byte("\n"), msg...) // end the cut-off record's line first
	}
	sub.conn.SetWriteDeadline(time.Now().Add(sub.srv.cfg.Grace))
	sub.conn.Write(msg)
	return "overflow: " + why
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
