package journal

import (
	"bytes"
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
	if sink.Sent() != 1 || sink.Failed() != 0 {
		t.Errorf("sent %d failed %d, want 1 and 0", sink.Sent(), sink.Failed())
	}

	if stderr.Len() != 0 {
		t.Errorf("stderr: %q", stderr.String())
	}

	// journald gone after start-up: each failed entry is counted, the outage
	// is reported once, the totals on Close.
	conn.Close()
	os.Remove(SocketPath)
	sink.Adoption(output.NewAdoption(a))
	sink.Adoption(output.NewAdoption(a))
	if sink.Sent() != 1 || sink.Failed() != 2 {
		t.Errorf("sent %d failed %d, want 1 and 2", sink.Sent(), sink.Failed())
	}
	sink.Close()
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "journal: cannot send the adoption of 4242") ||
		!strings.Contains(lines[1], "journal: 1 adoptions sent, 2 could not be sent") {
		t.Errorf("stderr: want the outage once and the totals, got %q", stderr.String())
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
