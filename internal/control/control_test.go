package control

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// envClient makes this test binary a control client (as another user).
const envClient = "ADOPTWATCH_CONTROL_CLIENT"

func TestMain(m *testing.M) {
	if path := os.Getenv(envClient); path != "" {
		var out bytes.Buffer
		err := Query(path, Request{}, &out, 5*time.Second)
		fmt.Printf("answer=%q err=%v\n", out.String(), err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the socket is made owned by root, and the test connects as another user")
	}
}

// answer lists a fixed table, counting the requests it saw.
type answer struct {
	mu   sync.Mutex
	reqs []Request
}

func (a *answer) lines(r Request) [][]byte {
	a.mu.Lock()
	a.reqs = append(a.reqs, r)
	a.mu.Unlock()
	if r.JSON {
		return [][]byte{[]byte(`{"pid":1}` + "\n"), []byte(`{"pid":2}` + "\n")}
	}
	return [][]byte{[]byte("PID COMM\n"), []byte("1 a\n"), []byte("2 b\n")}
}

func listen(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "control.sock")
	}
	if cfg.Log == nil {
		cfg.Log = t.Logf
	}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPsOverRealSocket(t *testing.T) {
	requireRoot(t)
	a := &answer{}
	s := listen(t, Config{Answer: a.lines})
	fi, err := os.Lstat(s.cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 || st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("socket file: mode %v uid %d gid %d, want a 0600 socket owned by root", fi.Mode(), st.Uid, st.Gid)
	}
	var out bytes.Buffer
	if err := Query(s.cfg.Path, Request{}, &out, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if out.String() != "PID COMM\n1 a\n2 b\n" {
		t.Errorf("text answer %q", out.String())
	}
	out.Reset()
	if err := Query(s.cfg.Path, Request{JSON: true}, &out, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if out.String() != "{\"pid\":1}\n{\"pid\":2}\n" {
		t.Errorf("json answer %q", out.String())
	}
	if len(a.reqs) != 2 || a.reqs[0].JSON || !a.reqs[1].JSON {
		t.Errorf("requests seen: %+v", a.reqs)
	}
	if got := s.Close(); got.Served != 2 || got.Refused != 0 {
		t.Errorf("stats %+v", got)
	}
	if _, err := os.Lstat(s.cfg.Path); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
}

// The raw protocol: a bad request gets one error line and EOF.
func TestBadRequests(t *testing.T) {
	requireRoot(t)
	s := listen(t, Config{Answer: (&answer{}).lines, Timeout: 300 * time.Millisecond})
	for _, tc := range []struct{ send, want string }{
		{"all\n", `error: unknown request "all"`},
		{"ps yaml\n", "error: unknown request"},
		{strings.Repeat("x", 1000), "error: request line too long"},
		{"", "error: no request line in time"},
	} {
		c, err := net.Dial("unix", s.cfg.Path)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, tc.send)
		got, _ := io.ReadAll(bufio.NewReader(c))
		c.Close()
		if !strings.HasPrefix(string(got), tc.want) || strings.Count(string(got), "\n") != 1 {
			t.Errorf("sent %.20q: got %q, want one line starting %q", tc.send, got, tc.want)
		}
	}
	if st := s.Stats(); st.BadRequests != 4 || st.Served != 0 {
		t.Errorf("stats %+v", st)
	}
}

// asNobody runs the control client role as uid and gid nobody and returns what it printed.
func asNobody(t *testing.T, exe, path string) string {
	t.Helper()
	out, err := testsupport.AsNobody(exe, envClient+"="+path).CombinedOutput()
	if err != nil {
		t.Fatalf("client as nobody: %v: %s", err, out)
	}
	return string(out)
}

// Only root (or the group) may ask: the file mode keeps others out, and
// behind it each client's credentials are checked.
func TestAccess(t *testing.T) {
	requireRoot(t)
	dir, exe := testsupport.NobodyCopy(t, "control-client")
	var logMu sync.Mutex
	var logged []string
	logf := func(format string, args ...any) {
		logMu.Lock()
		logged = append(logged, fmt.Sprintf(format, args...))
		logMu.Unlock()
	}
	s := listen(t, Config{Path: filepath.Join(dir, "c.sock"), Answer: (&answer{}).lines, Log: logf})
	if out := asNobody(t, exe, s.cfg.Path); !strings.Contains(out, "permission denied") || strings.Contains(out, "1 a") {
		t.Errorf("nobody on the 0600 socket: %s", out)
	}
	// Open the file to everyone: SO_PEERCRED must still refuse.
	if err := os.Chmod(s.cfg.Path, 0o666); err != nil {
		t.Fatal(err)
	}
	out := asNobody(t, exe, s.cfg.Path)
	if !strings.Contains(out, `answer=""`) || !strings.Contains(out, "uid 65534 is not root") {
		t.Errorf("nobody behind an open mode: %s", out)
	}
	if st := s.Stats(); st.Refused != 1 || st.Served != 0 {
		t.Errorf("stats %+v", st)
	}
	logMu.Lock()
	if !strings.Contains(strings.Join(logged, "\n"), "uid 65534 gid 65534) refused") {
		t.Errorf("refusal not logged: %q", logged)
	}
	logMu.Unlock()

	// With the group, nobody's primary group is admitted, and the mode is 0660.
	g := listen(t, Config{Path: filepath.Join(dir, "g.sock"), Group: "65534", Answer: (&answer{}).lines})
	fi, err := os.Lstat(g.cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != 65534 {
		t.Errorf("group socket: mode %v gid %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid)
	}
	if out := asNobody(t, exe, g.cfg.Path); !strings.Contains(out, `answer="PID COMM\n1 a\n2 b\n" err=<nil>`) {
		t.Errorf("group member: %s", out)
	}
}

// A live socket is never replaced; a stale one is; another file is refused.
func TestExistingPath(t *testing.T) {
	requireRoot(t)
	s := listen(t, Config{Answer: (&answer{}).lines})
	if _, err := Listen(Config{Path: s.cfg.Path, Answer: (&answer{}).lines}); err == nil || !strings.Contains(err.Error(), "accepting connections") {
		t.Fatalf("second server on a live socket: %v", err)
	}
	// The probe is not a client: nothing counted. (It was accepted before
	// this query, so once no connection is open both have been handled.)
	if err := Query(s.cfg.Path, Request{}, io.Discard, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	busy := func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.conns) > 0 }
	for busy() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st != (Stats{Served: 1}) {
		t.Fatalf("the probe was counted: %+v", st)
	}
	// A stale socket: bound, never listened on.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: stale}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	s2 := listen(t, Config{Path: stale, Answer: (&answer{}).lines})
	var out bytes.Buffer
	if err := Query(s2.cfg.Path, Request{}, &out, 5*time.Second); err != nil || out.Len() == 0 {
		t.Fatalf("after replacing a stale socket: %v %q", err, out.String())
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(Config{Path: file, Answer: (&answer{}).lines}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("a regular file at the path: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the regular file was removed: %v", err)
	}
}

// Clients beyond MaxClients are refused, not queued without bound; the
// server stays usable afterwards.
func TestMaxClients(t *testing.T) {
	requireRoot(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	s := listen(t, Config{MaxClients: 2, Answer: func(Request) [][]byte {
		entered <- struct{}{}
		<-release
		return [][]byte{[]byte("ok\n")}
	}})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- Query(s.cfg.Path, Request{}, io.Discard, 5*time.Second)
		}()
	}
	<-entered
	<-entered
	err := Query(s.cfg.Path, Request{}, io.Discard, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "2 clients are being served already") {
		t.Errorf("third client: %v", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("served client: %v", err)
		}
	}
	var out bytes.Buffer
	s.cfg.Answer = func(Request) [][]byte { return [][]byte{[]byte("again\n")} }
	if err := Query(s.cfg.Path, Request{}, &out, 5*time.Second); err != nil || out.String() != "again\n" {
		t.Errorf("after the burst: %v %q", err, out.String())
	}
}

// An answer cut off mid-line is an error for the client, not a short list.
func TestCutOffAnswer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fake.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "1 a\n2 b") // no final newline
		c.Close()
	}()
	var out bytes.Buffer
	if err := Query(path, Request{}, &out, 5*time.Second); err == nil || !strings.Contains(err.Error(), "cut off") {
		t.Fatalf("cut-off answer: %v (%q)", err, out.String())
	}
}

func TestParseRequest(t *testing.T) {
	for line, want := range map[string]Request{"ps": {}, "ps json": {JSON: true}, "  ps   json ": {JSON: true}} {
		got, err := ParseRequest(line)
		if err != nil || got != want {
			t.Errorf("%q: %+v %v", line, got, err)
		}
		if back, _ := ParseRequest(got.String()); back != got {
			t.Errorf("%q does not round-trip", got.String())
		}
	}
	for _, bad := range []string{"", "PS", "ps json extra", "all"} {
		if _, err := ParseRequest(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
