// Package notifytest is a real NOTIFY_SOCKET for tests: a unixgram socket in
// a temporary directory that receives each datagram with the sender's
// credentials (SCM_CREDENTIALS), as systemd's manager does, so a test can
// check the notify protocol message by message and who sent each one.
package notifytest

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Message is one datagram received on the socket.
type Message struct {
	Text string // the datagram as sent: "READY=1", "MAINPID=42\nREADY=1", ...
	PID  int32  // the sender's pid, from SCM_CREDENTIALS
}

// Assignments splits a message into its VAR=value lines.
func (m Message) Assignments() []string { return strings.Split(m.Text, "\n") }

// Listener is the test's service manager end of NOTIFY_SOCKET.
type Listener struct {
	Path string
	conn *net.UnixConn
}

// Listen creates the socket in a fresh temporary directory. It is closed when
// the test ends.
func Listen(t testing.TB) *Listener {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("notify socket: %v", err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	t.Cleanup(func() { conn.Close() })
	return &Listener{Path: path, conn: conn}
}

// Filler is the datagram Fill sends.
const Filler = "X_NOTIFYTEST_FILLER=1"

// Fill sends Filler datagrams until the socket's queue is full
// (net.unix.max_dgram_qlen), as it is when the manager stops reading: a
// blocking send to it then waits until the test reads. It returns how many
// it sent.
func (l *Listener) Fill(t testing.TB) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for n := 0; ; n++ {
		err := unix.Sendto(fd, []byte(Filler), 0, &unix.SockaddrUnix{Name: l.Path})
		if errors.Is(err, unix.EAGAIN) {
			return n
		}
		if err != nil || n > 100000 {
			t.Fatalf("filling the notify socket: %d sent, %v", n, err)
		}
	}
}

// Setenv points this process's NOTIFY_SOCKET at the listener for the test.
func (l *Listener) Setenv(t *testing.T) { t.Setenv("NOTIFY_SOCKET", l.Path) }

// Env is the NOTIFY_SOCKET assignment for a child process's environment.
func (l *Listener) Env() string { return "NOTIFY_SOCKET=" + l.Path }

// Next returns the next datagram, or ok=false if none came within timeout.
func (l *Listener) Next(t testing.TB, timeout time.Duration) (Message, bool) {
	t.Helper()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	l.conn.SetReadDeadline(time.Now().Add(timeout))
	n, oobn, _, _, err := l.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return Message{}, false
		}
		t.Fatalf("notify socket: %v", err)
	}
	msg := Message{Text: string(buf[:n]), PID: -1}
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatalf("notify socket: control message: %v", err)
	}
	for _, c := range cmsgs {
		if cred, err := unix.ParseUnixCredentials(&c); err == nil {
			msg.PID = cred.Pid
		}
	}
	if msg.PID < 0 {
		t.Fatalf("notify socket: datagram %q came without credentials", msg.Text)
	}
	return msg, true
}

// Expect returns the next datagram and fails the test unless its text is want.
func (l *Listener) Expect(t testing.TB, timeout time.Duration, want string) Message {
	t.Helper()
	m, ok := l.Next(t, timeout)
	if !ok {
		t.Fatalf("notify socket: no message within %v, want %q", timeout, want)
	}
	if m.Text != want {
		t.Fatalf("notify socket: got %q, want %q", m.Text, want)
	}
	return m
}

// ExpectNone fails the test if a datagram arrives within d.
func (l *Listener) ExpectNone(t testing.TB, d time.Duration) {
	t.Helper()
	if m, ok := l.Next(t, d); ok {
		t.Fatalf("notify socket: unexpected %q from pid %d", m.Text, m.PID)
	}
}
