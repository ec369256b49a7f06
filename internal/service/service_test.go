package service

import (
	"bytes"
	"fmt"
	"github.com/adoptwatch/adoptwatch/internal/syncbuf"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/service/notifytest"
	"golang.org/x/sys/unix"
)

const wait = 5 * time.Second

func TestNotifyMessagesOneByOne(t *testing.T) {
	l := notifytest.Listen(t)
	l.Setenv(t)
	var stderr bytes.Buffer
	n := New(nil, &stderr)
	me := int32(os.Getpid())

	n.Status("waiting for the daemon")
	n.ReadyMainPID(4242, "following 4242 nginx")
	n.Ready() // a second readiness is not sent again
	n.Status("daemon 4343 re-daemonised\nSTOPPING=1")
	n.MainPID(4343, "following 4343 nginx (re-daemonised)")
	n.Stopping()

	for _, want := range []string{
		"STATUS=waiting for the daemon",
		"MAINPID=4242\nSTATUS=following 4242 nginx\nREADY=1",
		"STATUS=daemon 4343 re-daemonised STOPPING=1", // a newline cannot smuggle in an assignment
		"MAINPID=4343\nSTATUS=following 4343 nginx (re-daemonised)",
		"STOPPING=1",
	} {
		if m := l.Expect(t, wait, want); m.PID != me {
			t.Errorf("%q sent by pid %d, want %d", m.Text, m.PID, me)
		}
	}
	l.ExpectNone(t, 200*time.Millisecond)
	if stderr.Len() != 0 || n.Failed() != 0 {
		t.Errorf("stderr %q, failed %d: want nothing", stderr.String(), n.Failed())
	}
}

func TestNilNotifierDoesNothing(t *testing.T) {
	l := notifytest.Listen(t)
	l.Setenv(t)
	var n *Notifier
	n.Ready()
	n.ReadyMainPID(1, "x")
	n.MainPID(1, "x")
	n.Status("x")
	n.Stopping()
	n.Watchdog(time.Millisecond, nil)
	if n.Failed() != 0 {
		t.Error("Failed() != 0")
	}
	l.ExpectNone(t, 100*time.Millisecond)
}

func TestReadyAlone(t *testing.T) {
	l := notifytest.Listen(t)
	l.Setenv(t)
	n := New(nil, io.Discard)
	n.Ready()
	l.Expect(t, wait, "READY=1")
	n.ReadyMainPID(1, "x")
	l.ExpectNone(t, 200*time.Millisecond)
}

func TestWithoutNotifySocketNothingHappens(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	var stderr bytes.Buffer
	n := New(nil, &stderr)
	n.Status("x")
	n.Ready()
	n.Stopping()
	if stderr.Len() != 0 || n.Failed() != 0 {
		t.Errorf("stderr %q, failed %d: want nothing", stderr.String(), n.Failed())
	}
}

func TestNotifySocketPointingNowhere(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("NOTIFY_SOCKET", filepath.Join(dir, "nobody.sock"))
	var stderr bytes.Buffer
	n := New(nil, &stderr)
	n.Status("waiting for the daemon")
	n.Ready()
	n.Status("following 1 x")
	n.Stopping()
	n.Flush(wait)

	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "NOTIFY_SOCKET=") || !strings.Contains(lines[0], "no such file or directory") {
		t.Fatalf("stderr: want one line naming NOTIFY_SOCKET and the cause, got %q", stderr.String())
	}
	t.Logf("the line: %s", lines[0])
	if n.Failed() != 4 {
		t.Errorf("failed = %d, want 4", n.Failed())
	}

	// Once the manager is there, messages flow again.
	l := notifytest.Listen(t)
	l.Setenv(t)
	n.Status("back")
	l.Expect(t, wait, "STATUS=back")

	// A socket file with nobody reading it: a new outage, one new line.
	stale := filepath.Join(dir, "stale.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: stale}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	t.Setenv("NOTIFY_SOCKET", stale)
	stderr.Reset()
	n.Status("a")
	n.Status("b")
	n.Flush(wait)
	if got := strings.Count(stderr.String(), "\n"); got != 1 || !strings.Contains(stderr.String(), "connection refused") {
		t.Errorf("stale socket: want one line saying connection refused, got %q", stderr.String())
	}
}

// TestStalledNotifySocket: a service manager that does not read its socket
// (a real datagram socket, never read: the sends after its queue is full
// block in go-systemd) never holds up the callers: status changes, watchdog
// pings and STOPPING=1 return at once, what does not fit the queue is
// dropped and said once, Flush gives up after its timeout and says what was
// not sent, and what was queued arrives in order once the manager reads.
func TestStalledNotifySocket(t *testing.T) {
	l := notifytest.Listen(t) // not read until the end
	l.Setenv(t)
	var stderr syncbuf.Buffer
	n := New(nil, &stderr)
	// The manager's socket is full already (net.unix.max_dgram_qlen
	// datagrams): the sender blocks on the first message.
	l.Fill(t)
	const messages = 200
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range messages {
			n.Status(strconv.Itoa(i))
			n.ping()
		}
		n.Stopping()
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("the notifier blocked on a socket nobody reads")
	}
	began := time.Now()
	n.Flush(300 * time.Millisecond)
	if el := time.Since(began); el < 300*time.Millisecond || el > time.Second {
		t.Errorf("Flush took %v, want its 300ms timeout", el)
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	var left int
	if len(lines) == 2 {
		_, after, _ := strings.Cut(lines[1], "did not take ")
		fmt.Sscanf(after, "%d messages within 300ms: not sent", &left)
	}
	// Left: a full queue, and the one blocked in the socket if the sender
	// took it before the queue was full.
	if len(lines) != 2 || !strings.Contains(lines[0], "it is not reading its socket (16 messages waiting): dropping from ") ||
		left < Queue || left > Queue+1 {
		t.Errorf("stderr: want the drops said once and what Flush left, got %q", stderr.String())
	}
	if f := n.Failed(); f != uint64(2*messages+1-left) {
		t.Errorf("failed %d of %d, want all but the %d left", f, 2*messages+1, left)
	}

	// The manager reads again: the queued messages arrive, in order, and
	// Flush returns as soon as they are out.
	last := -1
	for {
		m, ok := l.Next(t, 300*time.Millisecond)
		if !ok {
			break
		}
		if m.Text == notifytest.Filler || m.Text == "WATCHDOG=1" {
			continue
		}
		i, err := strconv.Atoi(strings.TrimPrefix(m.Text, "STATUS="))
		if err != nil || i <= last {
			t.Fatalf("%q after STATUS=%d", m.Text, last)
		}
		last = i
	}
	n.Status("back")
	began = time.Now()
	n.Flush(wait)
	if el := time.Since(began); el > time.Second {
		t.Errorf("Flush took %v with a reading manager", el)
	}
	l.Expect(t, wait, "STATUS=back")
}

func TestWatchdog(t *testing.T) {
	l := notifytest.Listen(t)
	l.Setenv(t)
	t.Setenv("WATCHDOG_USEC", "300000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	interval, err := WatchdogInterval()
	if err != nil || interval != 150*time.Millisecond {
		t.Fatalf("WatchdogInterval() = %v, %v; want 150ms (half of WATCHDOG_USEC)", interval, err)
	}
	n := New(nil, io.Discard)
	stop, done := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() { n.Watchdog(interval, stop); close(done) }()
	for range 3 {
		l.Expect(t, wait, "WATCHDOG=1")
	}
	if el := time.Since(start); el < 3*interval {
		t.Errorf("3 pings in %v: faster than one per %v", el, interval)
	}
	// STOPPING=1 ends the pings, although the loop still runs: none follows it.
	n.Stopping()
	for {
		m, ok := l.Next(t, wait)
		if !ok {
			t.Fatal("no STOPPING=1")
		}
		if m.Text == "STOPPING=1" {
			break
		}
		if m.Text != "WATCHDOG=1" {
			t.Fatalf("unexpected %q", m.Text)
		}
	}
	l.ExpectNone(t, 3*interval)
	close(stop)
	<-done
}

func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		bad       bool
	}{
		{"", "", 0, false},                  // no watchdog
		{"2000000", "", time.Second, false}, // no WATCHDOG_PID: for us
		{"2000000", strconv.Itoa(os.Getpid()), time.Second, false},
		{"2000000", strconv.Itoa(os.Getpid() + 1), 0, false}, // meant for another process
		{"many", "", 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		got, err := WatchdogInterval()
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v; want %v (error %v)", c.usec, c.pid, got, err, c.want, c.bad)
		}
	}
}

// pipeFD returns the read end of a pipe and a bare descriptor for its write
// end, as a supervisor would pass it.
func pipeFD(t *testing.T) (*os.File, int) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	fd, err := unix.Dup(int(w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	return r, fd
}

func TestNotifyFDWritesNewlineAndCloses(t *testing.T) {
	r, fd := pipeFD(t)
	f, err := OpenNotifyFD(fd)
	if err != nil {
		t.Fatal(err)
	}
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("notify fd not close-on-exec: flags %#x, %v", flags, err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	var stderr bytes.Buffer
	n := New(f, &stderr)

	r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if b, _ := io.ReadAll(r); len(b) != 0 {
		t.Fatalf("readiness before Ready(): %q", b)
	}
	n.Ready()
	n.Ready()
	r.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(r) // EOF only once the write end is closed
	if err != nil || string(b) != "\n" {
		t.Fatalf("read %q, %v; want one newline, then end of file", b, err)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %q", stderr.String())
	}
}

func TestNotifyFDReaderGone(t *testing.T) {
	r, fd := pipeFD(t)
	r.Close()
	f, err := OpenNotifyFD(fd)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	New(f, &stderr).Ready()
	if !strings.Contains(stderr.String(), "broken pipe") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("want one line saying broken pipe, got %q", stderr.String())
	}
}

func TestOpenNotifyFDRefuses(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	closed, err := unix.Dup(int(w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(closed)
	for _, c := range []struct {
		fd   int
		want string
	}{
		{0, "above 2"}, {1, "above 2"}, {2, "above 2"}, {-1, "above 2"},
		{closed, "not an open descriptor"},
		{int(r.Fd()), "not open for writing"},
	} {
		_, err := OpenNotifyFD(c.fd)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("OpenNotifyFD(%d) = %v; want one line with %q", c.fd, err, c.want)
		}
	}
}

// TestSyncWaitsForTheManager: Sync returns only once the manager has read
// what was sent before and closed the barrier's pipe, not when the datagrams
// are merely in its socket.
func TestSyncWaitsForTheManager(t *testing.T) {
	l := notifytest.Listen(t)
	l.Setenv(t)
	n := New(nil, io.Discard)
	n.MainPID(os.Getpid(), "back")
	synced := make(chan struct{})
	go func() {
		n.Sync(10 * time.Second)
		close(synced)
	}()
	l.Expect(t, wait, fmt.Sprintf("MAINPID=%d\nSTATUS=back", os.Getpid()))
	select {
	case <-synced:
		t.Fatal("Sync returned before the manager took the barrier")
	case <-time.After(300 * time.Millisecond):
	}
	l.ExpectBarrier(t, wait)
	select {
	case <-synced:
	case <-time.After(wait):
		t.Fatal("Sync still waiting after the manager closed the barrier")
	}
}
