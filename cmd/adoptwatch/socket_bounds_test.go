package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/subscribe"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

// What the watcher process holds, from /proc.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	return procNumber(t, fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
}

// usage samples a process's fd count and RSS until stopped, keeping the peaks.
type usage struct {
	peakFDs, peakRSS atomic.Int64
	stop             chan struct{}
	done             chan struct{}
}

func sample(t *testing.T, pid int) *usage {
	u := &usage{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(u.done)
		for {
			if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
				u.peakFDs.Store(max(u.peakFDs.Load(), int64(len(ents))))
			}
			if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				if _, v, ok := strings.Cut(string(data), "VmRSS:"); ok {
					var kib int64
					fmt.Sscan(v, &kib)
					u.peakRSS.Store(max(u.peakRSS.Load(), kib))
				}
			}
			select {
			case <-u.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return u
}

func (u *usage) end() (fds, rssKiB int) {
	close(u.stop)
	<-u.done
	return int(u.peakFDs.Load()), int(u.peakRSS.Load())
}

// settleFDs waits until the watcher holds at most want fds.
func settleFDs(t *testing.T, pid, want int) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	n := openFDs(t, pid)
	for n > want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n = openFDs(t, pid)
	}
	return n
}

// socketStats reads the final socket-stats line of a stopped --json watcher.
func socketStats(t *testing.T, c *cli) output.SocketStats {
	t.Helper()
	if code := c.stop(t); code != 0 {
		t.Fatalf("adoptwatch exited %d; stderr:\n%s", code, c.stderr.Text())
	}
	lines := c.stdout.JSON(1, time.Second, func(m map[string]any) bool { return m["event"] == "socket-stats" })
	if len(lines) != 1 {
		t.Fatalf("no socket-stats line in the JSON stream")
	}
	var st output.SocketStats
	if err := testsupport.Decode(lines[0], &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// expectAdoptionWithPidfd checks that a new subscriber still works: it gets a
// daemon's adoption with a pidfd of exactly that daemon.
func expectAdoptionWithPidfd(t *testing.T, path string) {
	t.Helper()
	// Only this tree's adoptions: other tests on the machine may adopt a lot.
	tree := testsupport.StartTree(t, "idle")
	s := dial(t, path, fmt.Sprintf("parent %d", tree.Reaper))
	if err := tree.Run("doublefork"); err != nil {
		t.Fatal(err)
	}
	testsupport.Next(t, tree, "middle")
	daemon := testsupport.Next(t, tree, "daemon").Int(0)
	testsupport.KillAtEnd(t, daemon)
	d := adoptionsFrom(t, s, daemon)[daemon]
	if d.Fields["pidfd"] != subscribe.PidfdPassed || d.Pidfd < 0 {
		t.Fatalf("new subscriber: daemon's record has pidfd %v (fd %d)", d.Fields["pidfd"], d.Pidfd)
	}
	if p := pidfdPid(t, d.Pidfd); p != daemon {
		t.Errorf("pidfd refers to pid %d, want %d", p, daemon)
	}
	unix.Close(d.Pidfd)
}

// TestSocketAbandonedConnections: 20,000 connections (5,000 under -short)
// that go away (before the filter, after it, or after shutting their write
// side first) are each noticed at once: the watcher's fds and memory stay
// bounded and come back, its log is not flooded, and a new subscriber still
// gets records and pidfds: closed peers whose readers have not run yet never
// take its place (the watcher reaps them when at the limit).
func TestSocketAbandonedConnections(t *testing.T) {
	const workers, batch = 8, 25
	total := 20000
	if testing.Short() {
		total = 5000 // emulated CPUs (test VMs): still 78 times the subscriber limit
	}
	path := filepath.Join(t.TempDir(), "aw.sock")
	c := startWatching(t, "--json", "--socket", path)
	pid := c.cmd.Process.Pid
	time.Sleep(200 * time.Millisecond)
	baseFDs, baseRSS := openFDs(t, pid), rssKiB(t, pid)
	u := sample(t, pid)
	var wg sync.WaitGroup
	var dialErrs atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < total; i += workers * batch {
				var open []*net.UnixConn
				for j := i; j < min(i+workers*batch, total); j += workers {
					conn, err := dialRetry(path)
					if err != nil {
						dialErrs.Add(1)
						continue
					}
					switch j % 3 {
					case 1:
						conn.Write([]byte("all\n"))
					case 2:
						conn.Write([]byte("all\n"))
						conn.CloseWrite() // half-closed: a subscriber until it closes
					}
					open = append(open, conn)
				}
				for _, conn := range open {
					conn.Close()
				}
			}
		}(w)
	}
	wg.Wait()
	if n := dialErrs.Load(); n > 0 {
		t.Errorf("%d of %d connections could not be made", n, total)
	}
	fds := settleFDs(t, pid, baseFDs)
	peakFDs, peakRSS := u.end()
	rss := rssKiB(t, pid)
	t.Logf("watcher: fds %d before, peak %d, %d after; RSS %d KiB before, peak %d, %d after",
		baseFDs, peakFDs, fds, baseRSS, peakRSS, rss)
	if fds > baseFDs {
		t.Errorf("the watcher holds %d fds after all connections went away, %d before", fds, baseFDs)
	}
	// At most --socket-max-subscribers (64) held at once, plus a few being refused.
	if peakFDs > baseFDs+subscribe.DefaultMaxSubscribers+16 {
		t.Errorf("the watcher held up to %d fds (baseline %d)", peakFDs, baseFDs)
	}
	if peakRSS > baseRSS+64<<10 || rss > baseRSS+32<<10 {
		t.Errorf("RSS rose from %d KiB to a peak of %d and %d after", baseRSS, peakRSS, rss)
	}
	expectAdoptionWithPidfd(t, path)
	if n := len(strings.Split(c.stderr.Text(), "\n")); n > 2000 {
		t.Errorf("%d lines on stderr for %d connections: a log flood", n, total)
	}
	st := socketStats(t, c)
	t.Logf("socket stats: %+v", st)
	if got := st.Accepted + st.Refused + st.Abandoned; got != uint64(total)+1 || st.WriteErrors != 0 || st.Probes != 0 {
		t.Errorf("accepted %d + refused %d + abandoned %d = %d, want %d; %d write errors",
			st.Accepted, st.Refused, st.Abandoned, got, total+1, st.WriteErrors)
	}
}

// TestSocketNeverReadingSubscribers: 500 subscribers that never read are cut
// off when their queues fill, while a well-behaved one gets every record and
// every pidfd; what the watcher holds meanwhile is bounded, and goes back.
func TestSocketNeverReadingSubscribers(t *testing.T) {
	const records = 1000
	// The storm's bursts: see below.
	const burst = subscribe.DefaultQueue / 3
	stalledN := 500
	if testing.Short() {
		// Emulated CPUs (test VMs): every record goes to every stalled
		// subscriber until it is cut off, with a pidfd each.
		stalledN = 100
	}
	path := filepath.Join(t.TempDir(), "aw.sock")
	c := startWatching(t, "--json", "--socket", path, "--socket-max-subscribers", "1000")
	pid := c.cmd.Process.Pid
	time.Sleep(200 * time.Millisecond)
	baseFDs, baseRSS := openFDs(t, pid), rssKiB(t, pid)
	u := sample(t, pid)
	// The well-behaved subscriber asks for this test's adoptions only: other
	// tests on the machine may adopt more than it could read.
	tree := testsupport.StartTree(t, "idle")
	good := dial(t, path, fmt.Sprintf("parent %d", tree.Reaper))
	stalled := make([]*net.UnixConn, 0, stalledN)
	for i := 0; i < stalledN; i++ {
		conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.Write([]byte("all\n"))
		stalled = append(stalled, conn)
	}
	if n := awaitFDs(t, pid, baseFDs+stalledN+1); n < baseFDs+stalledN+1 {
		t.Fatalf("the watcher holds %d fds: the subscribers did not all connect; stderr:\n%s", n, c.stderr.Text())
	}

	type result struct {
		count, fds int
		err        error
	}
	done := make(chan result, 1)
	reaper := make(chan int, 1)
	var read atomic.Int64 // this test's adoptions the well-behaved one has read
	go func() {
		r, res := <-reaper, result{}
		good.Conn.SetReadDeadline(time.Now().Add(120 * time.Second))
		for res.count < records {
			rec, err := good.Next()
			if err != nil {
				res.err = err
				break
			}
			if rec.Fields["event"] != "adopt" || testsupport.PartyPID(rec.Fields, "new_parent") != r {
				if rec.Pidfd >= 0 {
					unix.Close(rec.Pidfd)
				}
				continue
			}
			res.count++
			read.Store(int64(res.count))
			if rec.Fields["pidfd"] == subscribe.PidfdPassed && rec.Pidfd >= 0 && pidfdPid(t, rec.Pidfd) == testsupport.Num(rec.Fields, "pid") {
				res.fds++
			}
			if rec.Pidfd >= 0 {
				unix.Close(rec.Pidfd)
			}
		}
		done <- res
	}()
	// Each stalled subscriber is cut off when its queue (256) and its socket
	// buffer are full: long before the 600th record. The stalled ones read
	// again then, to get the notice: the watcher waits Grace (5 s) from the
	// cut for that, and paced, the 600th record may come later than that on
	// an emulated CPU. So they read, all at once, as soon as the watcher's
	// fds show the cut: it holds a pidfd per record queued, so its fds rise
	// while their queues fill and fall back when they are cut off and their
	// queues released (its log of the cuts is rate-limited: no help). The
	// 600th record is the fallback.
	const cutBy = 600
	var notified, closed atomic.Int64
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		conns := baseFDs + stalledN + 1
		filling, released := conns+subscribe.DefaultQueue/2, conns+burst+16
		rose := false
		for wait := time.Now().Add(120 * time.Second); read.Load() < cutBy; {
			if time.Now().After(wait) {
				return
			}
			if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
				if n := len(ents); n >= filling {
					rose = true
				} else if rose && n <= released {
					t.Logf("the stalled subscribers read from record %d on: the watcher's fds fell to %d", read.Load(), n)
					break
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, conn := range stalled {
			readers.Add(1)
			go func() {
				defer readers.Done()
				conn.SetReadDeadline(time.Now().Add(60 * time.Second))
				data, err := readAllConn(conn)
				if err == nil {
					closed.Add(1)
				}
				lines := strings.Split(strings.TrimSpace(string(data)), "\n")
				if strings.Contains(lines[len(lines)-1], `"event":"overflow"`) {
					notified.Add(1)
				}
			}()
		}
	}()
	reaper <- tree.Reaper // reading starts before the storm does
	// The storm in bursts of a third of a queue, each once the well-behaved
	// subscriber has read the one before: it reads as fast as it can, yet on
	// an emulated CPU it fell a queue behind within one burst of 1,000 and
	// was (rightly) cut off as stalled. Paced, it never holds more than a
	// burst, so it must get every record; the stalled ones, reading nothing,
	// still fill their queues and socket buffers within a few hundred.
	for sent := 0; sent < records; sent += burst {
		for wait := time.Now().Add(60 * time.Second); read.Load() < int64(sent) && time.Now().Before(wait); {
			time.Sleep(10 * time.Millisecond)
		}
		if err := tree.Run(fmt.Sprintf("rawlinger:%d", min(burst, records-sent))); err != nil {
			t.Fatal(err)
		}
	}
	res := <-done
	if res.err != nil || res.count != records || res.fds != records {
		t.Logf("watcher's stderr:\n%s", c.stderr.Text())
		t.Fatalf("the well-behaved subscriber got %d of %d adoptions and %d pidfds: %v", res.count, records, res.fds, res.err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for closed.Load() < int64(stalledN) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	readers.Wait()
	if closed.Load() != int64(stalledN) || notified.Load() != int64(stalledN) {
		t.Errorf("of %d never-reading subscribers, %d were disconnected and %d told why", stalledN, closed.Load(), notified.Load())
	}
	for _, conn := range stalled {
		conn.Close()
	}
	good.Close()
	fds := settleFDs(t, pid, baseFDs)
	peakFDs, peakRSS := u.end()
	time.Sleep(time.Second)
	rss := rssKiB(t, pid)
	t.Logf("watcher: fds %d before, peak %d, %d after; RSS %d KiB before, peak %d, %d after",
		baseFDs, peakFDs, fds, baseRSS, peakRSS, rss)
	if fds > baseFDs {
		t.Errorf("the watcher holds %d fds after the subscribers left, %d before", fds, baseFDs)
	}
	// One fd per connection, and pidfds for at most a queue's worth of records
	// (shared by all queues) plus the one each writer is sending.
	if limit := baseFDs + stalledN + 1 + subscribe.DefaultQueue + stalledN + 1 + 16; peakFDs > limit {
		t.Errorf("the watcher held up to %d fds, want at most %d", peakFDs, limit)
	}
	if peakRSS > baseRSS+96<<10 || rss > baseRSS+64<<10 {
		t.Errorf("RSS rose from %d KiB to a peak of %d and %d after", baseRSS, peakRSS, rss)
	}
	st := socketStats(t, c)
	t.Logf("socket stats: %+v", st)
	if st.Overflowed+st.CutOff != uint64(stalledN) || st.WriteErrors != 0 || st.Accepted != uint64(stalledN)+1 {
		t.Errorf("stats %+v: want %d overflowed or cut off, %d accepted, no write errors", st, stalledN, stalledN+1)
	}
}

// dialRetry connects as a patient client does when the listen backlog is full.
func dialRetry(path string) (*net.UnixConn, error) {
	for tries := 0; ; tries++ {
		conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil || !errors.Is(err, unix.EAGAIN) || tries == 1000 {
			return conn, err
		}
		time.Sleep(time.Millisecond)
	}
}

func readAllConn(c *net.UnixConn) ([]byte, error) {
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			if err.Error() == "EOF" {
				return out, nil
			}
			return out, err
		}
	}
}

// TestSocketAcceptErrors: when accept fails (the watcher is out of fds), it
// backs off and logs it once, not ten times a second; subscribers waiting
// meanwhile are served once fds are free again.
func TestSocketAcceptErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "aw.sock")
	c := startWatching(t, "--json", "--socket", path)
	pid := c.cmd.Process.Pid
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatal(err)
	}
	low := unix.Rlimit{Cur: uint64(openFDs(t, pid)), Max: old.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &low, nil); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil)
		}
	}
	defer restore()
	var waiting []*net.UnixConn
	for i := 0; i < 5; i++ {
		conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err) // the backlog takes them although the watcher cannot accept
		}
		t.Cleanup(func() { conn.Close() })
		conn.Write([]byte("all\n"))
		waiting = append(waiting, conn)
	}
	time.Sleep(3 * time.Second)
	restore()
	var logged int
	for _, l := range strings.Split(c.stderr.Text(), "\n") {
		if strings.Contains(l, "accept:") {
			logged++
		}
	}
	if logged != 1 || !hasStderr(c, "too many open files", 0) {
		t.Errorf("%d accept errors logged in 3 s, want 1 saying too many open files:\n%s", logged, c.stderr.Text())
	}
	for i, conn := range waiting {
		sub := &subscribe.Client{Conn: conn}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if rec, err := sub.Next(); err != nil || rec.Fields["event"] != "subscribed" {
			t.Errorf("subscriber %d, waiting while fds ran out: %v %s", i, err, rec.Line)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("watcher's stderr:\n%s", c.stderr.Text())
		}
	})
	expectAdoptionWithPidfd(t, path)
	if st := socketStats(t, c); st.AcceptErrors == 0 || st.Accepted != 6 {
		t.Errorf("stats %+v: want accept errors counted and 6 accepted", st)
	}
}

// awaitFDs waits until the watcher holds at least want fds.
func awaitFDs(t *testing.T, pid, want int) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	n := openFDs(t, pid)
	for n < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n = openFDs(t, pid)
	}
	return n
}
