package journal

import (
	"bytes"
	"fmt"
	"github.com/adoptwatch/adoptwatch/internal/syncbuf"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/journal/journaltest"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"golang.org/x/sys/unix"
)

// go-systemd's journal package always sends to /run/systemd/journal/socket.
// journald does not run on the development machines, and a test must never
// write into a real journal, so each test runs in a copy of this test binary
// inside a private mount namespace, where /run is an empty tmpfs and the test
// itself listens on /run/systemd/journal/socket. The bytes it receives are
// what go-systemd sent: the native protocol, parsed here field by field.
const nsEnv = "ADOPTWATCH_TEST_JOURNAL_NS"

// inPrivateRun runs the calling test again in a child process with a private
// mount namespace and an empty /run; it returns true in that child, where the
// test goes on, and false in the parent, once the child passed.
func inPrivateRun(t *testing.T) bool {
	t.Helper()
	if os.Getenv(nsEnv) == t.Name() {
		if err := os.MkdirAll("/run", 0o755); err != nil { // an initramfs may have none
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			t.Fatalf("tmpfs on /run in the private mount namespace: %v", err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test mounts its own /run in a private mount namespace")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), nsEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(err.Error(), "operation not permitted") {
		t.Skipf("cannot create a mount namespace here: %v", err)
	}
	t.Logf("in a private mount namespace:\n%s", out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("child test: %v", err)
	}
	return false
}

// listenJournal is the test's journald: a datagram socket at SocketPath.
func listenJournal(t *testing.T) *net.UnixConn {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(SocketPath), 0o755); err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: SocketPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func hostile() *events.Adoption {
	return &events.Adoption{
		Time:       time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC),
		Hook:       events.HookExitWalk,
		Child:      events.Process{ID: procfs.ID{PID: 4242, Start: 123456789 * time.Microsecond}, TID: 4242, SID: 4241, PGID: 4241, Comm: "x\nADOPTWATCH_REAPER_KIND=init"},
		PrevParent: events.Process{ID: procfs.ID{PID: 4241}, Comm: "mid=dle"},
		NewParent:  events.Process{ID: procfs.ID{PID: 77}, Comm: "reaper"},
		Reaper:     events.ReaperSubreaper,
		Lineage: []events.Step{
			{ID: procfs.ID{PID: 900}, SID: 900, Comm: "bash"},
			{ID: procfs.ID{PID: 4240}, SID: 900, Comm: "launch", Exec: true},
			{ID: procfs.ID{PID: 4241}, SID: 4241, Comm: "mid=dle", Setsid: true},
			{ID: procfs.ID{PID: 4242}, SID: 4241, Comm: "x\nADOPTWATCH_REAPER_KIND=init"},
		},
		LineageComplete: false,
	}
}

func TestEntryOnTheWire(t *testing.T) {
	if !inPrivateRun(t) {
		return
	}
	conn := listenJournal(t)
	var stdout, stderr bytes.Buffer
	sink, err := Open(output.NewPrinter(&stdout, &stderr, false))
	if err != nil {
		t.Fatalf("Open with a listening journal: %v", err)
	}
	a := hostile()
	sink.Adoption(output.NewAdoption(a))

	buf := make([]byte, 1<<16)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("datagram: %q", buf[:n])
	got, err := journaltest.Parse(buf[:n])
	if err != nil {
		t.Fatalf("not the native protocol: %v", err)
	}
	want := map[string]string{
		"MESSAGE":                     output.AdoptionText(a),
		"PRIORITY":                    "6",
		"SYSLOG_IDENTIFIER":           "adoptwatch",
		"ADOPTWATCH_EVENT":            "adopt",
		"ADOPTWATCH_PID":              "4242",
		"ADOPTWATCH_COMM":             "x\nADOPTWATCH_REAPER_KIND=init", // one field, binary-safe
		"ADOPTWATCH_START":            "123456789000",
		"ADOPTWATCH_PREV_PARENT":      "4241",
		"ADOPTWATCH_PREV_PARENT_COMM": "mid=dle",
		"ADOPTWATCH_NEW_PARENT":       "77",
		"ADOPTWATCH_NEW_PARENT_COMM":  "reaper",
		"ADOPTWATCH_REAPER_KIND":      "subreaper",
		"ADOPTWATCH_PATTERN":          "double-fork",
		"ADOPTWATCH_HOOK":             "exit-walk",
		"ADOPTWATCH_LINEAGE":          output.LineageText(a.Lineage, false),
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s = %q (present %v), want %q", k, g, ok, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %s=%q", k, got[k])
		}
	}
	if !bytes.Contains(buf[:n], []byte("ADOPTWATCH_COMM\n")) {
		t.Errorf("ADOPTWATCH_COMM holds a newline but was not sent length-prefixed")
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %q", stderr.String())
	}

	// journald gone after start-up: each failed entry is counted, the outage
	// is reported once, the totals on Close (which waits for the queue).
	conn.Close()
	os.Remove(SocketPath)
	sink.Adoption(output.NewAdoption(a))
	sink.Adoption(output.NewAdoption(a))
	sink.Close()
	if sink.Sent() != 1 || sink.Failed() != 2 || sink.Dropped() != 0 {
		t.Errorf("sent %d failed %d dropped %d, want 1, 2 and 0", sink.Sent(), sink.Failed(), sink.Dropped())
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "journal: cannot send the adoption of 4242") ||
		!strings.Contains(lines[1], "journal: 1 adoptions sent, 2 could not be sent (2 refused by the journal, 0 dropped: journal too slow)") {
		t.Errorf("stderr: want the outage once and the totals, got %q", stderr.String())
	}
}

// TestStalledJournal: a journald that stops reading (its socket's queue full,
// where go-systemd's send blocks with no deadline) never blocks Adoption:
// entries beyond the queue are dropped and counted, each episode of drops is
// reported once when it starts, and Close returns within its bound with the
// totals.
func TestStalledJournal(t *testing.T) {
	if !inPrivateRun(t) {
		return
	}
	conn := listenJournal(t) // read only when the test says so
	var stdout bytes.Buffer
	var stderr syncbuf.Buffer
	const queue, closeWait = 16, 300 * time.Millisecond
	sink := start(output.NewPrinter(&stdout, &stderr, false), queue, closeWait)
	a := hostile()
	calls := 0
	flood := func(n int) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range n {
				sink.Adoption(output.NewAdoption(a))
			}
		}()
		select {
		case <-done:
			calls += n
		case <-time.After(5 * time.Second):
			t.Fatalf("Adoption blocked on a stalled journal")
		}
	}
	episodes := func() int { return strings.Count(stderr.String(), "journal: too slow, 16 entries waiting") }

	// stall fills the socket's queue (net.unix.max_dgram_qlen) with the
	// test's own entries, as a journald that stopped reading would have it.
	filler := []byte("MESSAGE=filler\n")
	stall := func() {
		t.Helper()
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		for i := 0; ; i++ {
			err := unix.Sendto(fd, filler, 0, &unix.SockaddrUnix{Name: SocketPath})
			if err == unix.EAGAIN {
				break
			}
			if err != nil || i > 100000 {
				t.Fatalf("filling the journal socket: %d sent, %v", i, err)
			}
		}
	}

	stall()
	flood(200) // the sender blocks on one; 16 wait; the rest are dropped
	if sink.Dropped() == 0 || episodes() != 1 {
		t.Fatalf("dropped %d, %d warnings; want drops, warned once; stderr %q", sink.Dropped(), episodes(), stderr.String())
	}

	// journald catches up: everything queued arrives, in order, intact.
	received := 0
	buf := make([]byte, 1<<16)
	for {
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := conn.Read(buf)
		if err != nil {
			break
		}
		if bytes.Equal(buf[:n], filler) {
			continue
		}
		if _, err := journaltest.Parse(buf[:n]); err != nil {
			t.Fatalf("entry %d: %v", received, err)
		}
		received++
	}
	// A full queue, and the one blocked in the socket if the sender took it
	// before the queue was full.
	if received < queue || received > queue+1 {
		t.Errorf("received %d entries, want the %d queued (and maybe one more)", received, queue)
	}
	if uint64(received) != sink.Sent() || received+int(sink.Dropped()) != calls {
		t.Errorf("received %d, sent %d, dropped %d, of %d", received, sink.Sent(), sink.Dropped(), calls)
	}
	// The next entry is queued (the episode ends); stalled again, a new
	// episode of drops is reported.
	stall()
	flood(200)
	if episodes() != 2 {
		t.Errorf("%d warnings about drops, want 2 (one per episode); stderr %q", episodes(), stderr.String())
	}

	began := time.Now()
	sink.Close()
	if el := time.Since(began); el < closeWait || el > closeWait+time.Second {
		t.Errorf("Close took %v with a stalled journal, want about %v", el, closeWait)
	}
	var sent, notSent, refused, slow int
	last := stderr.String()
	last = last[strings.LastIndex(strings.TrimSuffix(last, "\n"), "\n")+1:]
	if _, err := fmt.Sscanf(last, "adoptwatch: warning: journal: %d adoptions sent, %d could not be sent (%d refused by the journal, %d dropped: journal too slow)",
		&sent, &notSent, &refused, &slow); err != nil {
		t.Fatalf("last line %q: %v", last, err)
	}
	// Still queued at Close: a full queue, less the one blocked in the socket.
	if sent+notSent != calls || refused != 0 || slow < int(sink.Dropped())+queue-1 {
		t.Errorf("%q: want all %d accounted for, at least %d dropped (%d while stalled, the queue at Close)", last, calls, int(sink.Dropped())+queue-1, sink.Dropped())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q: warnings go to stderr in text mode", stdout.String())
	}
}

func TestOpenWithoutJournal(t *testing.T) {
	if !inPrivateRun(t) {
		return
	}
	_, err := Open(nil)
	if err == nil || err.Error() != "no journal is running: /run/systemd/journal/socket missing" {
		t.Fatalf("Open with no socket: %v", err)
	}

	// A socket file nobody listens on (journald died): refused, also one line.
	if err := os.MkdirAll(filepath.Dir(SocketPath), 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: SocketPath}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	_, err = Open(nil)
	if err == nil || err.Error() != "no journal is running: /run/systemd/journal/socket does not accept connections" {
		t.Fatalf("Open with a dead socket: %v", err)
	}
}
