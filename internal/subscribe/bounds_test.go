package subscribe

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// These tests run a real server on a real socket, with real pidfds of a real
// process; they need root only to connect as another uid.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: connects as another uid and opens pidfds")
	}
}

// listen starts a server in a directory every uid may enter.
func listen(t *testing.T, cfg Config) (*Server, *logLines) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o755)
	}
	cfg.Path = filepath.Join(dir, "s.sock")
	logs := &logLines{}
	cfg.Log = logs.add
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

type logLines struct {
	mu  sync.Mutex
	all []string
}

func (l *logLines) add(format string, args ...any) {
	l.mu.Lock()
	l.all = append(l.all, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logLines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

// connectAs connects with this thread's credentials switched to uid:gid for
// the connect (SO_PEERCRED records them then), and back to root after.
func connectAs(t *testing.T, path string, uid, gid int) *net.UnixConn {
	t.Helper()
	runtime.LockOSThread()
	// Raw syscalls change this thread only (the syscall package would change all).
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), uintptr(gid), ^uintptr(0)); e != 0 {
		t.Fatalf("setresgid: %v", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
		t.Fatalf("setresuid: %v", e)
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	_, _, e1 := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0))
	_, _, e2 := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), 0, ^uintptr(0))
	if e1 == 0 && e2 == 0 {
		runtime.UnlockOSThread() // else the thread dies with this goroutine
	}
	if err != nil {
		t.Fatalf("connect as %d:%d: %v", uid, gid, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// firstLine reads the server's first line on a connection.
func firstLine(t *testing.T, conn *net.UnixConn, filter string) string {
	t.Helper()
	if filter != "" {
		conn.Write([]byte(filter + "\n"))
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	var got []byte
	for !bytes.Contains(got, []byte("\n")) {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	return string(got)
}

func TestBoundsOnSubscribers(t *testing.T) {
	requireRoot(t)
	s, logs := listen(t, Config{Group: "65534", MaxSubscribers: 4, MaxPerUID: 2})
	path := s.cfg.Path
	for i := 0; i < 2; i++ {
		if l := firstLine(t, connectAs(t, path, 65534, 65534), "all"); !strings.Contains(l, `"subscribed"`) {
			t.Fatalf("non-root subscriber %d: %q", i, l)
		}
	}
	l := firstLine(t, connectAs(t, path, 65534, 65534), "all")
	if !strings.Contains(l, `"refused"`) || !strings.Contains(l, "limit per non-root uid is 2") {
		t.Errorf("third subscriber of uid 65534: %q, want refused by the per-uid limit", l)
	}
	// Root is not held to the per-uid limit, only to the overall one.
	for i := 0; i < 2; i++ {
		if l := firstLine(t, connectAs(t, path, 0, 0), "all"); !strings.Contains(l, `"subscribed"`) {
			t.Fatalf("root subscriber %d: %q", i, l)
		}
	}
	l = firstLine(t, connectAs(t, path, 0, 0), "all")
	if !strings.Contains(l, `"refused"`) || !strings.Contains(l, "too many subscribers") {
		t.Errorf("fifth subscriber: %q, want refused by the overall limit", l)
	}
	// Counted just after the line is written: give the server a moment.
	deadline := time.Now().Add(3 * time.Second)
	for st := s.Stats(); st.Accepted != 4 && time.Now().Before(deadline); st = s.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	if st := s.Stats(); st.Accepted != 4 || st.Refused != 2 {
		t.Errorf("stats %+v, want 4 accepted, 2 refused", st)
	}
	if !strings.Contains(logs.text(), "uid 65534 gid 65534) refused: uid 65534 has 2 subscribers") {
		t.Errorf("refusal not logged:\n%s", logs.text())
	}
}

// TestClosedPeersAtOnce: a subscriber that goes away is dropped at once, with
// no record ever written to it; one that only shuts its write side still gets
// records; a second server probing the path is not a subscriber.
func TestClosedPeersAtOnce(t *testing.T) {
	requireRoot(t)
	s, _ := listen(t, Config{})
	path := s.cfg.Path
	waitFor := func(what string, cond func(output.SocketStats) bool) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for !cond(s.Stats()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: stats %+v", what, s.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	abandoned := connectAs(t, path, 0, 0)
	abandoned.Close()
	waitFor("abandoned before the filter", func(st output.SocketStats) bool { return st.Abandoned == 1 })

	gone := connectAs(t, path, 0, 0)
	if l := firstLine(t, gone, "all"); !strings.Contains(l, "subscribed") {
		t.Fatal(l)
	}
	gone.Close()
	waitFor("closed after subscribing", func(st output.SocketStats) bool { return st.ClosedByPeer == 1 })

	half := connectAs(t, path, 0, 0)
	if l := firstLine(t, half, "all"); !strings.Contains(l, "subscribed") {
		t.Fatal(l)
	}
	half.CloseWrite()
	time.Sleep(100 * time.Millisecond)
	sleeper := startSleeper(t)
	s.Publish(sleeper.adoption(0))
	c := &Client{Conn: half}
	half.SetReadDeadline(time.Now().Add(5 * time.Second))
	rec, err := c.Next()
	if err != nil || rec.Fields["event"] != "adopt" || rec.Pidfd < 0 {
		t.Fatalf("half-closed subscriber: %v %s", err, rec.Line)
	}
	unix.Close(rec.Pidfd)
	half.Close()
	waitFor("closed after shutting its write side", func(st output.SocketStats) bool { return st.ClosedByPeer == 2 })

	if _, err := Listen(Config{Path: path}); err == nil || !strings.Contains(err.Error(), "another adoptwatch") {
		t.Errorf("second server on a live socket: %v", err)
	}
	waitFor("probe", func(st output.SocketStats) bool { return st.Probes == 1 })
	if st := s.Stats(); st.Accepted != 2 || st.WriteErrors != 0 || st.Refused != 0 {
		t.Errorf("stats %+v: want 2 accepted, no write errors, none refused", st)
	}
	if p, b := s.Held(); p != 0 || b != 0 {
		t.Errorf("still held: %d pidfds, %d bytes", p, b)
	}
}

// sleeper is a live process whose pidfds the records carry.
type sleeper struct {
	id procfs.ID
}

func startSleeper(t *testing.T) sleeper {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	k, err := procfs.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return sleeper{k.ID}
}

// adoption is a record of the sleeper, its comm padded to pad bytes.
func (s sleeper) adoption(pad int) *output.Adoption {
	return output.NewAdoption(&events.Adoption{Child: events.Process{ID: s.id, Comm: strings.Repeat("x", pad)}})
}

// TestBoundOnPidfdsHeld: subscribers that stop reading are cut off, furthest
// behind first, once the pidfds held for everyone reach the bound; the one
// that reads gets every record with its pidfd, and nothing stays held.
func TestBoundOnPidfdsHeld(t *testing.T) {
	requireRoot(t)
	const bound, records = 20, 1500
	s, logs := listen(t, Config{MaxPidfds: bound, Queue: 5000})
	path := s.cfg.Path
	good := &Client{Conn: connectAs(t, path, 0, 0)}
	good.Conn.Write([]byte("all\n"))
	if rec, err := good.Next(); err != nil || rec.Fields["event"] != "subscribed" {
		t.Fatalf("%v %s", err, rec.Line)
	}
	var stalled []*net.UnixConn
	for i := 0; i < 3; i++ {
		c := connectAs(t, path, 0, 0)
		if l := firstLine(t, c, "all"); !strings.Contains(l, "subscribed") {
			t.Fatal(l)
		}
		stalled = append(stalled, c)
	}
	sl := startSleeper(t)
	// Lines of 4 KiB fill the stalled subscribers' socket buffers soon.
	rec := sl.adoption(4096)
	var received, withFd atomic.Int64
	errc := make(chan error, 1)
	go func() {
		good.Conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		for received.Load() < records {
			rec, err := good.Next()
			if err != nil {
				errc <- err
				return
			}
			if rec.Fields["event"] != "adopt" {
				errc <- fmt.Errorf("good subscriber got %.200s", rec.Line)
				return
			}
			if rec.Fields["pidfd"] == PidfdPassed && rec.Pidfd >= 0 {
				withFd.Add(1)
				unix.Close(rec.Pidfd)
			}
			received.Add(1)
		}
		errc <- nil
	}()
	maxHeld := int64(0)
	for i := 1; i <= records; i++ {
		s.Publish(rec)
		maxHeld = max(maxHeld, s.heldPidfds.Load())
		// Keep the reader within a few records: it must not be the one behind.
		for int64(i)-received.Load() > bound/4 {
			select {
			case err := <-errc:
				t.Fatalf("after %d records: %v", received.Load(), err)
			default:
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if withFd.Load() != records {
		t.Errorf("the reading subscriber got %d pidfds with %d records", withFd.Load(), records)
	}
	if maxHeld > bound+1 { // the bound, plus the record being published
		t.Errorf("held up to %d pidfds, bound %d", maxHeld, bound)
	}
	for i, c := range stalled {
		// Read now: the notice is last, after what the socket buffer held.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		data, _ := readAll(c)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		last := lines[len(lines)-1]
		if !strings.Contains(last, `"event":"overflow"`) || !strings.Contains(last, "furthest behind") {
			t.Errorf("stalled subscriber %d's last line: %.300s", i, last)
		}
	}
	st := s.Stats()
	if st.CutOff != 3 || st.Overflowed != 0 || st.WriteErrors != 0 {
		t.Errorf("stats %+v: want 3 cut off, no overflow, no write errors", st)
	}
	if !strings.Contains(logs.text(), "cut off") {
		t.Errorf("cut-offs not logged:\n%s", logs.text())
	}
	deadline := time.Now().Add(3 * time.Second)
	for p, _ := s.Held(); p != 0 && time.Now().Before(deadline); p, _ = s.Held() {
		time.Sleep(10 * time.Millisecond)
	}
	if p, b := s.Held(); p != 0 || b != 0 {
		t.Errorf("still held after all was sent: %d pidfds, %d bytes", p, b)
	}
}

func readAll(c *net.UnixConn) ([]byte, error) {
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf) // no room for SCM_RIGHTS: the kernel closes those fds
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

// TestClosedPeersFreeTheirPlaces: subscribers whose peers closed their
// sockets before their readers ran (as on a slow machine after a burst of
// connections that came and went) never cost a new subscriber its place,
// overall or per uid; live ones, half-closed included, keep theirs.
func TestClosedPeersFreeTheirPlaces(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name     string
		uid      int
		limit    string
		cfg      Config
		closed   int // admitted subscribers whose peers are gone
		live     int // and whose peers are still there
		newcomer int // then admitted, before one more is refused
	}{
		{"overall", 0, "too many subscribers: 4 connected, the limit is 4", Config{MaxSubscribers: 4}, 2, 2, 2},
		{"per-uid", 65534, "uid 65534 has 3 subscribers connected, the limit per non-root uid is 3", Config{Group: "65534", MaxPerUID: 3}, 2, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := listen(t, tc.cfg)
			var injected []*subscriber
			for i := 0; i < tc.closed+tc.live; i++ {
				injected = append(injected, injectSubscriber(t, s, uint32(tc.uid), i < tc.closed, i%2 == 1))
			}
			for i := 0; i < tc.newcomer; i++ {
				if l := firstLine(t, connectAs(t, s.cfg.Path, tc.uid, tc.uid), "all"); !strings.Contains(l, `"subscribed"`) {
					t.Fatalf("new subscriber %d with %d closed and %d live ones admitted: %q", i, tc.closed, tc.live, l)
				}
			}
			if l := firstLine(t, connectAs(t, s.cfg.Path, tc.uid, tc.uid), "all"); !strings.Contains(l, `"refused"`) || !strings.Contains(l, tc.limit) {
				t.Errorf("one more subscriber: %q, want refused: %q", l, tc.limit)
			}
			// The closed ones' descriptors were released at once: what the
			// server holds stays within its limit however late their writers run.
			for i, sub := range injected {
				if err := sub.conn.SetDeadline(time.Time{}); (err != nil) != (i < tc.closed) {
					t.Errorf("injected subscriber %d (peer gone: %v): connection closed: %v", i, i < tc.closed, err)
				}
			}
			// Now let the injected subscribers' reader and writer run, as admit would have.
			for _, sub := range injected {
				s.wg.Add(2)
				go sub.read()
				go sub.write()
			}
			if st := s.Close(); st.Abandoned != uint64(tc.closed) || st.Refused != 1 || st.WriteErrors != 0 {
				t.Errorf("stats %+v: want %d abandoned, 1 refused, no write errors", st, tc.closed)
			}
		})
	}
}

// injectSubscriber adds a subscriber to s as admit does, on one end of a
// socket pair, without starting its reader and writer (not scheduled yet).
// Its peer is closed (gone), or open, with its write side shut if half.
func injectSubscriber(t *testing.T, s *Server, uid uint32, gone, half bool) *subscriber {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "injected")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case gone:
		unix.Close(fds[1])
	case half:
		unix.Shutdown(fds[1], unix.SHUT_WR)
		t.Cleanup(func() { unix.Close(fds[1]) })
	default:
		t.Cleanup(func() { unix.Close(fds[1]) })
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	sub := newSubscriber(s, s.next, fmt.Sprintf("injected subscriber %d", s.next), "test", uid, c.(*net.UnixConn))
	s.subs[sub] = true
	s.perUID[uid]++
	return sub
}
