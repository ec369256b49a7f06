// Package control serves a running watcher's control socket, which answers
// `adoptwatch ps`: a client connects, sends one request line (`ps` for text,
// `ps json` for JSON lines), and reads the answer until EOF.
//
// The socket is guarded as the subscriber socket is: created mode 0600 owned
// by root (0660 with a group), each client's SO_PEERCRED checked on connect
// with subscribe.Authorize, a live socket at the path never replaced. A
// refused or malformed request gets one line, "error: REASON", and EOF.
package control

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/subscribe"
)

// Request is what a client asks for.
type Request struct {
	JSON bool // ps json: one JSON object per line
}

// String is the request's line on the wire.
func (r Request) String() string {
	if r.JSON {
		return "ps json"
	}
	return "ps"
}

// ParseRequest reads a request line (without its newline).
func ParseRequest(line string) (Request, error) {
	switch strings.Join(strings.Fields(line), " ") {
	case "ps":
		return Request{}, nil
	case "ps json":
		return Request{JSON: true}, nil
	}
	if len(line) > 40 {
		line = line[:40] + "…"
	}
	return Request{}, fmt.Errorf("unknown request %q (want \"ps\" or \"ps json\")", line)
}

// DefaultPath is where `adoptwatch --control-socket` serves and `adoptwatch
// ps` asks, unless told otherwise.
const DefaultPath = "/run/adoptwatch.ctl"

// ErrorPrefix starts the one line the server sends instead of an answer.
const ErrorPrefix = "error: "

// maxRequest bounds the request line.
const maxRequest = 256

// Config says where and for whom to serve, and what to answer.
type Config struct {
	Path  string
	Group string // name or gid allowed besides root; "" for root only
	// Answer returns the answer's lines, each ending in "\n". It is called
	// from each client's goroutine: it must be safe for concurrent use.
	Answer func(Request) [][]byte
	// MaxClients bounds the clients served at once; more are refused (default 8).
	MaxClients int
	// Timeout bounds reading the request and writing the answer (default 5s).
	Timeout time.Duration
	Log     func(format string, args ...any) // one line each, for stderr
}

// Stats count what the server did.
type Stats struct {
	Served      uint64 `json:"served"`
	Refused     uint64 `json:"refused"`      // credentials, shutting down, too many at once
	BadRequests uint64 `json:"bad_requests"` // unknown, too long, or none in time
	WriteErrors uint64 `json:"write_errors"`
}

// Server is a listening control socket.
type Server struct {
	cfg   Config
	gid   int // -1: root only
	sock  *subscribe.SocketFile
	slots chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[*net.UnixConn]bool
	done  bool
	stats struct{ served, refused, bad, writeErrors atomic.Uint64 }
}

// Listen creates the socket and serves it until Close.
func Listen(cfg Config) (*Server, error) {
	if cfg.Answer == nil {
		return nil, errors.New("control: no Answer")
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 8
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	s := &Server{cfg: cfg, gid: -1, slots: make(chan struct{}, cfg.MaxClients), conns: map[*net.UnixConn]bool{}}
	if cfg.Group != "" {
		gid, err := subscribe.LookupGroup(cfg.Group)
		if err != nil {
			return nil, err
		}
		s.gid = gid
	}
	sock, err := subscribe.ListenSocket(cfg.Path, s.gid, cfg.Log)
	if err != nil {
		return nil, err
	}
	s.sock = sock
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *Server) accept() {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		conn, err := s.sock.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.cfg.Log("control socket: accept: %v", err)
			time.Sleep(backoff) // e.g. EMFILE: do not spin, do not flood the log
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(conn)
	}
}

func (s *Server) serve(conn *net.UnixConn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	conn.SetDeadline(time.Now().Add(s.cfg.Timeout))
	peer, err := subscribe.PeerOf(conn)
	if err != nil {
		s.refuse(conn, "control client", "SO_PEERCRED: "+err.Error())
		return
	}
	who := fmt.Sprintf("control client (pid %d uid %d gid %d)", peer.PID, peer.UID, peer.GID)
	if ok, why := subscribe.Authorize(peer, s.gid); !ok {
		s.refuse(conn, who, why)
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.refuse(conn, who, fmt.Sprintf("%d clients are being served already", s.cfg.MaxClients))
		return
	}
	line, err := bufio.NewReaderSize(io.LimitReader(conn, maxRequest), maxRequest).ReadString('\n')
	conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout)) // the answer's own time, after the request's
	if err != nil {
		s.stats.bad.Add(1)
		reason := "no request line in time"
		if len(line) >= maxRequest-1 || errors.Is(err, io.EOF) && len(line) > 0 {
			reason = "request line too long or not ended by a newline"
		}
		s.cfg.Log("%s: %s", who, reason)
		conn.Write([]byte(ErrorPrefix + reason + "\n"))
		return
	}
	if strings.TrimSpace(line) == subscribe.ProbeLine {
		return // another watcher checking whether the socket is live: not a client
	}
	req, err := ParseRequest(strings.TrimSuffix(line, "\n"))
	if err != nil {
		s.stats.bad.Add(1)
		s.cfg.Log("%s: %v", who, err)
		conn.Write([]byte(ErrorPrefix + err.Error() + "\n"))
		return
	}
	w := bufio.NewWriter(conn)
	for _, l := range s.cfg.Answer(req) {
		w.Write(l)
	}
	if err := w.Flush(); err != nil {
		s.stats.writeErrors.Add(1)
		s.cfg.Log("%s: write: %v", who, err)
		return
	}
	s.stats.served.Add(1)
}

func (s *Server) refuse(conn *net.UnixConn, who, why string) {
	s.stats.refused.Add(1)
	s.cfg.Log("%s refused: %s", who, why)
	conn.Write([]byte(ErrorPrefix + why + "\n"))
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	return Stats{Served: s.stats.served.Load(), Refused: s.stats.refused.Load(),
		BadRequests: s.stats.bad.Load(), WriteErrors: s.stats.writeErrors.Load()}
}

// Close stops accepting, ends the connections in progress, removes the socket
// file if it is still ours, and returns the final counts.
func (s *Server) Close() Stats {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return s.Stats()
	}
	s.done = true
	for c := range s.conns {
		c.SetDeadline(time.Now()) // unblock reads and writes at once
	}
	s.mu.Unlock()
	s.sock.Close()
	s.wg.Wait()
	return s.Stats()
}

// Query connects to the control socket at path, sends req, and copies the
// answer to w until EOF. A refusal or an error line from the server is
// returned as an error; so is an answer cut off mid-line.
func Query(path string, req Request, w io.Writer, timeout time.Duration) error {
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, req.String()+"\n"); err != nil && !errors.Is(err, syscall.EPIPE) {
		return err // on EPIPE the server refused us: its line is there to read
	}
	r := bufio.NewReader(conn)
	first, err := r.ReadString('\n')
	if after, ok := strings.CutPrefix(first, ErrorPrefix); ok {
		return fmt.Errorf("%s: %s", path, strings.TrimSpace(after))
	}
	if err != nil {
		if errors.Is(err, io.EOF) && first == "" {
			return nil // an empty answer
		}
		return answerError(path, err)
	}
	if _, err := io.WriteString(w, first); err != nil {
		return err
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && line == "" {
				return nil
			}
			return answerError(path, err)
		}
		if _, err := io.WriteString(w, line); err != nil {
			return err
		}
	}
}

func answerError(path string, err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: the answer was cut off", path)
	}
	return fmt.Errorf("%s: %w", path, err)
}
