package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/notify"
	"github.com/adoptwatch/adoptwatch/internal/subscribe"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

func dial(t *testing.T, path, filter string) *subscribe.Client {
	t.Helper()
	c, err := subscribe.Dial(path, filter)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rec, err := c.Next()
	if err != nil || rec.Fields["event"] != "subscribed" {
		t.Fatalf("subscribe with %q: %v %s", filter, err, rec.Line)
	}
	return c
}

// adoptionsFrom reads until it has an adoption record of each pid.
func adoptionsFrom(t *testing.T, c *subscribe.Client, pids ...int) map[int]subscribe.Record {
	t.Helper()
	c.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	got := map[int]subscribe.Record{}
	for len(got) < len(pids) {
		rec, err := c.Next()
		if err != nil {
			t.Fatalf("waiting for adoptions of %v (have %d): %v", pids, len(got), err)
		}
		for _, pid := range pids {
			if rec.Fields["event"] == "adopt" && testsupport.Num(rec.Fields, "pid") == pid {
				got[pid] = rec
			}
		}
		if _, want := got[testsupport.Num(rec.Fields, "pid")]; !want && rec.Pidfd >= 0 {
			unix.Close(rec.Pidfd)
		}
	}
	return got
}

func pidfdPid(t *testing.T, fd int) int {
	t.Helper()
	return procNumber(t, fmt.Sprintf("/proc/self/fdinfo/%d", fd), "Pid:")
}

// procNumber reads the number after key in a /proc file of "Key: value" lines.
func procNumber(t *testing.T, path, key string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	t.Fatalf("no %s in %s: %s", key, path, data)
	return 0
}

// TestSocketTwoSubscribers: both get the same records as --json prints, each
// with its own pidfd of exactly the adopted process, which tells when it exits.
func TestSocketTwoSubscribers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "aw.sock")
	// The watcher watches this test's processes only: the subscribers ask for
	// everything, and other tests on the machine may adopt more than their
	// queues hold while the one without a filter line waits.
	c := startWatching(t, "--json", "--socket", path, "--pid", fmt.Sprint(os.Getpid()))
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 || st.Uid != 0 {
		t.Errorf("socket mode %v uid %d, want a 0600 socket owned by root", fi.Mode(), st.Uid)
	}
	s1 := dial(t, path, "all")
	s2 := dial(t, path, "") // no filter line: all, after a short wait

	tree := testsupport.StartTree(t, "doublefork")
	middle := testsupport.Next(t, tree, "middle").Int(0)
	daemon := testsupport.Next(t, tree, "daemon").Int(0)
	testsupport.KillAtEnd(t, daemon)
	printed := c.stdout.JSON(1, 10*time.Second, func(m map[string]any) bool { return m["event"] == "adopt" && testsupport.Num(m, "pid") == daemon })
	if len(printed) != 1 {
		t.Fatalf("--json printed %d adoptions of the daemon", len(printed))
	}
	var fds []int
	for i, s := range []*subscribe.Client{s1, s2} {
		recs := adoptionsFrom(t, s, middle, daemon)
		d := recs[daemon]
		if d.Fields["pidfd"] != subscribe.PidfdPassed || d.Pidfd < 0 {
			t.Fatalf("subscriber %d: daemon's record has pidfd %v (fd %d)", i, d.Fields["pidfd"], d.Pidfd)
		}
		delete(d.Fields, "pidfd")
		want, _ := json.Marshal(printed[0])
		have, _ := json.Marshal(d.Fields)
		if !bytes.Equal(want, have) {
			t.Errorf("subscriber %d's record differs from --json:\n%s\n%s", i, have, want)
		}
		if p := pidfdPid(t, d.Pidfd); p != daemon {
			t.Errorf("subscriber %d: pidfd refers to pid %d, want %d", i, p, daemon)
		}
		if err := unix.PidfdSendSignal(d.Pidfd, 0, nil, 0); err != nil {
			t.Errorf("pidfd_send_signal(0) to the live daemon: %v", err)
		}
		if m := recs[middle]; m.Pidfd >= 0 {
			unix.Close(m.Pidfd)
		}
		fds = append(fds, d.Pidfd)
	}
	unix.Kill(daemon, unix.SIGTERM) // ours; the fixture's reaper reaps it
	for _, fd := range fds {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 10000); n != 1 || err != nil {
			t.Errorf("pidfd did not report the daemon's exit: %d %v", n, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for unix.PidfdSendSignal(fd, 0, nil, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // exited; reaped a moment later
		}
		if err := unix.PidfdSendSignal(fd, 0, nil, 0); !errors.Is(err, unix.ESRCH) {
			t.Errorf("pidfd_send_signal after the daemon was reaped: %v, want ESRCH", err)
		}
		unix.Close(fd)
	}
}

// TestSocketFilters: "parent PID" and "root PID" keep only their adoptions;
// a bad filter line is answered with an error and a disconnect.
func TestSocketFilters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "aw.sock")
	startWatching(t, "--socket", path)
	// Reapers that wait for Go, so the filters can name them first (they get no signals).
	rA := startNotified(t, notify.RTMin+6, "sigwait", "doublefork")
	rB := startNotified(t, notify.RTMin+6, "sigwait", "doublefork")
	byParent := dial(t, path, fmt.Sprintf("parent %d", rA.Reaper))
	byRoot := dial(t, path, fmt.Sprintf("root %d", rB.Reaper))
	bad, err := subscribe.Dial(path, "everything please")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rec, err := bad.Next(); err != nil || rec.Fields["event"] != "error" {
		t.Errorf("bad filter: %v %s, want an error line", err, rec.Line)
	}
	if _, err := bad.Next(); err == nil {
		t.Errorf("bad filter: still connected")
	}

	rA.Go()
	rB.Go()
	for _, tc := range []struct {
		c    *subscribe.Client
		tree *fixture.Tree
	}{{byParent, rA}, {byRoot, rB}} {
		middle := testsupport.Next(t, tc.tree, "middle").Int(0)
		daemon := testsupport.Next(t, tc.tree, "daemon").Int(0)
		testsupport.KillAtEnd(t, daemon)
		recs := adoptionsFrom(t, tc.c, middle, daemon)
		for _, r := range recs {
			if testsupport.PartyPID(r.Fields, "new_parent") != tc.tree.Reaper {
				t.Errorf("filtered subscriber got %s", r.Line)
			}
			if r.Pidfd >= 0 {
				unix.Close(r.Pidfd)
			}
		}
	}
	// Nothing of the other tree may follow.
	for _, c := range []*subscribe.Client{byParent, byRoot} {
		c.Conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if rec, err := c.Next(); err == nil {
			t.Errorf("unexpected record after the filtered ones: %s", rec.Line)
		}
	}
}

// TestSocketStalledSubscriber: a subscriber that stops reading is told why and
// disconnected when its queue fills, while another gets every record.
func TestSocketStalledSubscriber(t *testing.T) {
	// The queue leaves the active subscriber room on a loaded machine; the stalled
	// one still overflows it long before the 600th record.
	const n, queue = 600, 256
	path := filepath.Join(t.TempDir(), "aw.sock")
	c := startWatching(t, "--socket", path, "--socket-queue", itoa(queue))
	stalled := dial(t, path, "all")
	active := dial(t, path, "all")
	type result struct {
		count int
		err   error
		seen  map[int]bool // the adopted pids, for the failure report
	}
	done := make(chan result, 1)
	reaper := make(chan int, 1)
	go func() {
		r, count, seen := <-reaper, 0, map[int]bool{}
		active.Conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		for count < n {
			rec, err := active.Next()
			if err != nil {
				done <- result{count, err, seen}
				return
			}
			if rec.Pidfd >= 0 {
				unix.Close(rec.Pidfd)
			}
			if rec.Fields["event"] == "adopt" && testsupport.PartyPID(rec.Fields, "new_parent") == r {
				count++
				seen[testsupport.Num(rec.Fields, "pid")] = true
			}
		}
		done <- result{count, nil, seen}
	}()
	// The stalled subscriber reads again as soon as it has been cut off: the
	// server waits only a few seconds to tell it why, and on a slow (emulated)
	// CPU the active subscriber may take longer than that to get everything.
	type drained struct {
		last subscribe.Record
		got  int
	}
	stalledDone := make(chan drained, 1)
	go func() {
		var d drained
		if !hasStderr(c, "overflowed", 120*time.Second) {
			stalledDone <- d
			return
		}
		stalled.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			rec, err := stalled.Next()
			if err != nil {
				break
			}
			if rec.Pidfd >= 0 {
				unix.Close(rec.Pidfd)
			}
			if rec.Fields["event"] == "adopt" {
				d.got++
			}
			d.last = rec
		}
		stalledDone <- d
	}()
	tree := testsupport.StartTree(t, fmt.Sprintf("raw:%d", n))
	reaper <- tree.Reaper
	res := <-done
	if res.err != nil || res.count != n {
		// Was the adoption lost before the socket (stdout lacks it too, and
		// the counters on stderr may say why) or by the socket?
		c.stop(t)
		printed := 0
		for _, line := range strings.Split(c.stdout.Text(), "\n") {
			// "TIME adopt PID COMM from PPID COMM to REAPER COMM ..."
			f := strings.Fields(line)
			if len(f) < 3 || f[1] != "adopt" || !strings.Contains(line, fmt.Sprintf(" to %d ", tree.Reaper)) {
				continue
			}
			printed++
			if pid, _ := strconv.Atoi(f[2]); !res.seen[pid] {
				t.Logf("printed but not sent to the subscriber: %q", line)
			}
		}
		t.Logf("adoptwatch printed %d adoptions by the reaper", printed)
		t.Fatalf("active subscriber got %d of %d adoptions: %v; adoptwatch's stderr:\n%s", res.count, n, res.err, c.stderr.Text())
	}
	if !hasStderr(c, "overflowed", 5*time.Second) {
		t.Fatalf("the stalled subscriber was not disconnected")
	}
	d := <-stalledDone
	last, got := d.last, d.got
	if last.Fields["event"] != "overflow" || !strings.Contains(fmt.Sprint(last.Fields["reason"]), "queue") {
		t.Errorf("stalled subscriber's last line: %s, want the overflow notice", last.Line)
	}
	if got >= n {
		t.Errorf("stalled subscriber got all %d records: nothing stalled", got)
	}
	t.Logf("stalled subscriber received %d records before it was cut off", got)
	if _, bad := c.stderr.WaitFor(0, func(s string) bool {
		return strings.Contains(s, "subscriber 2 (") && strings.Contains(s, "overflow")
	}); bad {
		t.Errorf("the active subscriber overflowed too")
	}
	// The final counts, on stderr (and in the JSON stream with --json).
	if code := c.stop(t); code != 0 {
		t.Fatalf("adoptwatch exited %d", code)
	}
	if !hasStderr(c, "socket: 2 subscribers (0 refused, 1 overflowed", 0) {
		t.Errorf("no final socket counts on stderr:\n%s", c.stderr.Text())
	}
}

// asNobody runs the subscriber role as uid and gid 65534 and returns what it printed.
func asNobody(t *testing.T, exe, path string) string {
	t.Helper()
	out, err := testsupport.AsNobody(exe, fixture.EnvSocket+"="+path).Output()
	if err != nil {
		t.Fatalf("subscriber as nobody: %v: %s", err, out)
	}
	return string(out)
}

// TestSocketAccess: only root (or the --socket-group) may subscribe: the file
// mode keeps others out, and behind it each peer's credentials are checked.
func TestSocketAccess(t *testing.T) {
	dir, exe := testsupport.NobodyCopy(t, fixture.SubscriberComm) // the name plays the subscriber role
	path := filepath.Join(dir, "aw.sock")
	c := startWatching(t, "--socket", path)
	if out := asNobody(t, exe, path); !strings.Contains(out, "connect-error") || !strings.Contains(out, "permission denied") {
		t.Errorf("nobody connecting to the 0600 socket: %q, want permission denied", out)
	}
	// Open the file to everyone: the SO_PEERCRED check must still refuse.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	out := asNobody(t, exe, path)
	if !strings.Contains(out, `"event":"refused"`) || !strings.Contains(out, "uid 65534") {
		t.Errorf("nobody behind an open file mode: %q, want refused", out)
	}
	if !hasStderr(c, "uid 65534 gid 65534) refused", 5*time.Second) {
		t.Errorf("refusal not logged")
	}

	gpath := filepath.Join(dir, "group.sock")
	g := startWatching(t, "--socket", gpath, "--socket-group", "65534")
	fi, err := os.Lstat(gpath)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != 65534 || st.Uid != 0 {
		t.Errorf("group socket: mode %v owner %d:%d, want 0660 root:65534", fi.Mode(), st.Uid, st.Gid)
	}
	if out := asNobody(t, exe, gpath); !strings.Contains(out, `"event":"subscribed"`) {
		t.Errorf("nobody in --socket-group: %q, want subscribed", out)
	}
	if !hasStderr(g, "connected: allowed as primary group 65534", 5*time.Second) {
		t.Errorf("group member's connection not logged")
	}
}

// TestSocketStalePath: a stale socket is replaced; a live one, or a file that
// is not a socket, is refused.
func TestSocketStalePath(t *testing.T) {
	testsupport.RequireBPF(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "aw.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // leaves a stale socket file
	c := startWatching(t, "--socket", path)
	if !hasStderr(c, "removed stale socket", time.Second) {
		t.Errorf("stale socket not reported as removed")
	}
	var out, errb bytes.Buffer
	if code := dispatch([]string{"--socket", path}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "another adoptwatch") {
		t.Errorf("second adoptwatch on a live socket: exit %d, %q", code, errb.String())
	}
	file := filepath.Join(dir, "plain")
	os.WriteFile(file, []byte("keep me"), 0o644)
	errb.Reset()
	if code := dispatch([]string{"--socket", file}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "not a socket") {
		t.Errorf("--socket on a regular file: exit %d, %q", code, errb.String())
	}
	if data, _ := os.ReadFile(file); string(data) != "keep me" {
		t.Errorf("regular file was touched")
	}
}
