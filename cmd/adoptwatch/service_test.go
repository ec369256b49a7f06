package main

// The command beside a service manager: systemd's notify protocol against a
// real NOTIFY_SOCKET datagram listener (internal/service/notifytest), s6's
// readiness fd with a real pipe, and the journal sink against the test's own
// journal socket in a private mount namespace (internal/journal/journaltest).

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/journal/journaltest"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/service/notifytest"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

// TestWatchNotifySocket: the watcher's messages, one by one: STATUS= with the
// hook and scope, READY=1 once attached (an adoption right after it is
// reported), WATCHDOG=1 every half WATCHDOG_USEC, STOPPING=1 on SIGTERM; all
// from the watcher's own pid.
func TestWatchNotifySocket(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		l := notifytest.Listen(t)
		c := startCLIWith(t, cliOptions{env: []string{l.Env(), "WATCHDOG_USEC=400000"}}, "--json", "--hook="+hook)
		pid := int32(c.cmd.Process.Pid)
		from := func(m notifytest.Message) notifytest.Message {
			t.Helper()
			if m.PID != pid {
				t.Errorf("%q sent by pid %d, want adoptwatch %d", m.Text, m.PID, pid)
			}
			return m
		}

		m, ok := l.Next(t, wait)
		if !ok || !strings.HasPrefix(m.Text, "STATUS=watching all adoptions with the "+hook+" hook") {
			t.Fatalf("first message %q (received %v), want the STATUS= of the attached watcher; stderr:\n%s", m.Text, ok, c.stderr.Text())
		}
		from(m)
		from(l.Expect(t, wait, "READY=1"))
		// Ready means attached: a daemonisation right now is reported.
		tree := testsupport.StartTree(t, "doublefork")
		_, _, daemon := testsupport.DoubleFork(t, tree)
		jsonAdoptionOf(t, c, daemon)

		// The pings sent meanwhile wait in the socket (many, on a slow
		// machine): take them first, then time the ones sent from now on.
		for {
			m, ok := l.Next(t, 20*time.Millisecond)
			if !ok {
				break
			}
			if from(m).Text != "WATCHDOG=1" {
				t.Fatalf("after READY=1: %q, want only WATCHDOG=1", m.Text)
			}
		}
		start := time.Now()
		for range 3 {
			from(l.Expect(t, wait, "WATCHDOG=1"))
		}
		if el := time.Since(start); el < 300*time.Millisecond {
			t.Errorf("3 watchdog pings in %v: want one per 200ms (half of WATCHDOG_USEC)", el)
		}

		c.cmd.Process.Signal(unix.SIGTERM)
		for {
			m, ok := l.Next(t, wait)
			if !ok {
				t.Fatal("no STOPPING=1 after SIGTERM")
			}
			if from(m).Text == "STOPPING=1" {
				break
			}
			if m.Text != "WATCHDOG=1" {
				t.Fatalf("after SIGTERM: %q, want STOPPING=1", m.Text)
			}
		}
		if code := c.exitCode(t, wait); code != 0 {
			t.Errorf("exit %d after SIGTERM, want 0", code)
		}
		l.ExpectNone(t, 300*time.Millisecond)
	})
}

// TestWatchNotifyFD: --notify-fd 3 with a real pipe: one newline once
// attached, then end of file (the descriptor closed).
func TestWatchNotifyFD(t *testing.T) {
	testsupport.RequireBPF(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := startCLIWith(t, cliOptions{files: []*os.File{w}}, "--json", "--notify-fd", "3")
	r.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "\n" {
		t.Fatalf("notify fd: read %q, %v; want one newline, then end of file; stderr:\n%s", got, err, c.stderr.Text())
	}
	c.waitReady(t)
	tree := testsupport.StartTree(t, "doublefork")
	_, _, daemon := testsupport.DoubleFork(t, tree)
	jsonAdoptionOf(t, c, daemon)
	if code := c.stop(t); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
}

// TestWatchNotifySocketStalled: a service manager that stops reading its
// socket (watchdog pings every 10ms fill it) holds up neither the watch nor
// SIGINT: adoptions are still reported, the watcher exits 0 at once, and
// stderr says what the manager did not get.
func TestWatchNotifySocketStalled(t *testing.T) {
	testsupport.RequireBPF(t)
	l := notifytest.Listen(t) // never read
	c := startCLIWith(t, cliOptions{env: []string{l.Env(), "WATCHDOG_USEC=20000"}}, "--json")
	c.waitReady(t)
	time.Sleep(500 * time.Millisecond) // the socket and the notifier's queue fill up
	tree := testsupport.StartTree(t, "doublefork")
	_, _, daemon := testsupport.DoubleFork(t, tree)
	jsonAdoptionOf(t, c, daemon)

	c.cmd.Process.Signal(unix.SIGINT)
	began := time.Now()
	if code := c.exitCode(t, 5*time.Second); code != 0 {
		t.Errorf("exit %d after SIGINT, want 0", code)
	}
	t.Logf("exited %v after SIGINT; stderr:\n%s", time.Since(began), c.stderr.Text())
	var drops, left int
	for _, line := range strings.Split(c.stderr.Text(), "\n") {
		if strings.Contains(line, "it is not reading its socket") {
			drops++
		}
		if strings.Contains(line, "did not take") && strings.HasSuffix(line, "messages within 1s: not sent") {
			left++
		}
	}
	if drops != 1 || left != 1 {
		t.Errorf("want one line about the drops and one about what was left at exit; stderr:\n%s", c.stderr.Text())
	}
}

// TestNotifyFDRefused: --notify-fd must name an open, writable descriptor
// above 2: otherwise exit 2 with one line, for the watcher and for run.
func TestNotifyFDRefused(t *testing.T) {
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	defer wr.Close()
	closed, err := unix.Dup(int(wr.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(closed)
	for _, c := range []struct{ fd, want string }{
		{"0", "must be a descriptor above 2"},
		{"2", "must be a descriptor above 2"},
		{strconv.Itoa(closed), "not an open descriptor"},
		{strconv.Itoa(int(rd.Fd())), "not open for writing"},
	} {
		for name, cmd := range map[string]func([]string, io.Writer, io.Writer) int{
			"watch": func(a []string, o, e io.Writer) int { return watchCommand(a, o, e) },
			"run": func(a []string, o, e io.Writer) int {
				return runCommand(append(a, "--", "true"), o, e)
			},
		} {
			var out, errOut bytes.Buffer
			code := cmd([]string{"--notify-fd", c.fd}, &out, &errOut)
			if code != 2 || strings.Count(errOut.String(), "\n") != 1 || !strings.Contains(errOut.String(), c.want) {
				t.Errorf("%s --notify-fd %s: exit %d, stderr %q; want 2 and one line with %q", name, c.fd, code, errOut.String(), c.want)
			}
		}
	}
}

// TestWatchNotifySocketNowhere: NOTIFY_SOCKET names no socket: one line says
// so, and the watch goes on (with watchdog pings failing too, still one line).
func TestWatchNotifySocketNowhere(t *testing.T) {
	testsupport.RequireBPF(t)
	nowhere := filepath.Join(t.TempDir(), "nobody.sock")
	c := startCLIWith(t, cliOptions{env: []string{"NOTIFY_SOCKET=" + nowhere, "WATCHDOG_USEC=100000"}}, "--json")
	c.waitReady(t)
	tree := testsupport.StartTree(t, "doublefork")
	_, _, daemon := testsupport.DoubleFork(t, tree)
	jsonAdoptionOf(t, c, daemon)
	time.Sleep(300 * time.Millisecond) // several watchdog pings fail meanwhile
	if code := c.stop(t); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	var lines []string
	for _, l := range strings.Split(c.stderr.Text(), "\n") {
		if strings.Contains(l, "NOTIFY_SOCKET") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "cannot notify the service manager") || !strings.Contains(lines[0], "no such file or directory") {
		t.Errorf("want one line about NOTIFY_SOCKET and its cause, got %q; stderr:\n%s", lines, c.stderr.Text())
	}
}

// TestWatchJournal: --journal writes each adoption as one native entry to
// /run/systemd/journal/socket, here the test's own socket (a private mount
// namespace gives the watcher its own /run); the entry is parsed field by
// field and checked against the real daemonisation. The watcher watches the
// test's tree only: adoptions elsewhere on the machine would fill the socket
// the test stops reading once it found its entry.
func TestWatchJournal(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		j := journaltest.Listen(t)
		tree := testsupport.StartTree(t, "idle")
		c := startCLIWith(t, cliOptions{privateRun: j.Dir}, "--journal", "--json", "--hook="+hook, "--pid", strconv.Itoa(tree.Reaper))
		c.waitReady(t)
		if err := tree.Run("doublefork"); err != nil {
			t.Fatal(err)
		}
		_, middle, daemon := testsupport.DoubleFork(t, tree)
		a := jsonAdoptionOf(t, c, daemon)

		var f map[string]string
		for deadline := time.Now().Add(wait); f == nil; {
			e, raw, ok := j.Next(t, time.Until(deadline))
			if !ok {
				t.Fatalf("no journal entry for the adoption of %d; stderr:\n%s", daemon, c.stderr.Text())
			}
			if e["ADOPTWATCH_PID"] == strconv.Itoa(daemon) {
				f = e
				t.Logf("entry: %q", raw)
			}
		}
		want := map[string]string{
			"PRIORITY":                    "6",
			"SYSLOG_IDENTIFIER":           "adoptwatch",
			"ADOPTWATCH_EVENT":            "adopt",
			"ADOPTWATCH_COMM":             "aw-daemon",
			"ADOPTWATCH_PREV_PARENT":      strconv.Itoa(middle),
			"ADOPTWATCH_PREV_PARENT_COMM": "aw-middle",
			"ADOPTWATCH_NEW_PARENT":       strconv.Itoa(tree.Reaper),
			"ADOPTWATCH_NEW_PARENT_COMM":  "aw-reaper",
			"ADOPTWATCH_REAPER_KIND":      "subreaper",
			"ADOPTWATCH_PATTERN":          "double-fork",
			"ADOPTWATCH_HOOK":             hook,
		}
		for k, v := range want {
			if f[k] != v {
				t.Errorf("%s=%q, want %q", k, f[k], v)
			}
		}
		head := fmt.Sprintf(" adopt %d aw-daemon from %d aw-middle to %d aw-reaper (subreaper) double-fork: ", daemon, middle, tree.Reaper)
		if !strings.Contains(f["MESSAGE"], head) || !strings.HasSuffix(f["MESSAGE"], f["ADOPTWATCH_LINEAGE"]) {
			t.Errorf("MESSAGE=%q: want the text line (%q..., ending with the lineage)", f["MESSAGE"], head)
		}
		if !strings.HasSuffix(f["ADOPTWATCH_LINEAGE"], fmt.Sprintf("aw-middle[%d exec setsid] > aw-daemon[%d]", middle, daemon)) ||
			strings.Count(f["ADOPTWATCH_LINEAGE"], " > ")+1 != len(a.Lineage) {
			t.Errorf("ADOPTWATCH_LINEAGE=%q: want the %d steps of the JSON lineage", f["ADOPTWATCH_LINEAGE"], len(a.Lineage))
		}
		start, err := strconv.ParseInt(f["ADOPTWATCH_START"], 10, 64)
		k, kerr := procfs.ReadStat(daemon)
		if err != nil || kerr != nil || !procfs.SameStart(time.Duration(start), k.Start) {
			t.Errorf("ADOPTWATCH_START=%q (%v), /proc says %v (%v)", f["ADOPTWATCH_START"], err, k.Start, kerr)
		}
		if code := c.stop(t); code != 0 {
			t.Errorf("exit %d, want 0; stderr:\n%s", code, c.stderr.Text())
		}
	})
}

// TestWatchJournalStalled: a journald that stops reading (its socket full)
// does not stall the watcher: with thousands of adoptions behind it, every
// adoption is still printed, the entries the journal could not take are
// dropped, counted and reported, and SIGINT ends the watcher at once.
func TestWatchJournalStalled(t *testing.T) {
	n := 2000 // far more than the socket and the sink's queue (512) hold
	if testing.Short() {
		// Emulated CPUs (test VMs): still twice what both hold, but half
		// the 20 s of forks and reaps.
		n = 1000
	}
	testsupport.RequireBPF(t)
	j := journaltest.Listen(t) // never read
	tree := testsupport.StartTree(t, "idle")
	c := startCLIWith(t, cliOptions{privateRun: j.Dir}, "--journal", "--json", "--pid", strconv.Itoa(tree.Reaper))
	c.waitReady(t)
	if err := tree.Run(fmt.Sprintf("raw:%d", n)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2*n; i++ { // every middle and daemon reaped: all adopted
		testsupport.Next(t, tree, "reaped")
	}
	isOurs := func(m map[string]any) bool {
		return m["event"] == "adopt" && testsupport.PartyPID(m, "new_parent") == tree.Reaper
	}
	if got := len(c.stdout.JSON(n, 30*time.Second, isOurs)); got != n {
		t.Fatalf("%d of %d adoptions printed; stderr:\n%s", got, n, c.stderr.Text())
	}

	c.cmd.Process.Signal(unix.SIGINT)
	began := time.Now()
	if code := c.exitCode(t, 5*time.Second); code != 0 {
		t.Errorf("exit %d after SIGINT, want 0; stderr:\n%s", code, c.stderr.Text())
	}
	t.Logf("exited %v after SIGINT", time.Since(began))

	var drops, totals []string
	for _, m := range c.stdout.JSON(0, 0, func(m map[string]any) bool { return m["event"] == "warning" }) {
		msg, _ := m["message"].(string)
		switch {
		case strings.HasPrefix(msg, "journal: too slow"):
			drops = append(drops, msg)
		case strings.Contains(msg, "could not be sent"):
			totals = append(totals, msg)
		}
	}
	if len(drops) == 0 || len(totals) != 1 {
		t.Fatalf("want warnings about drops and one total, got %q and %q", drops, totals)
	}
	var sent, notSent, refused, slow int
	if _, err := fmt.Sscanf(totals[0], "journal: %d adoptions sent, %d could not be sent (%d refused by the journal, %d dropped: journal too slow)",
		&sent, &notSent, &refused, &slow); err != nil {
		t.Fatalf("%q: %v", totals[0], err)
	}
	t.Logf("%q; %d warnings about drops", totals[0], len(drops))
	if sent+notSent != n || refused != 0 || sent > n/2 || slow != notSent {
		t.Errorf("%q: want all %d adoptions accounted for, most dropped as too slow", totals[0], n)
	}
}

// TestWatchJournalMissing: --journal where no journal runs (an empty /run):
// exit 1 with one line, before attaching anything.
func TestWatchJournalMissing(t *testing.T) {
	testsupport.RequireBPF(t)
	c := startCLIWith(t, cliOptions{privateRun: "none"}, "--journal")
	if code := c.exitCode(t, wait); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if got := c.stderr.Text(); got != "adoptwatch: --journal: no journal is running: /run/systemd/journal/socket missing" {
		t.Errorf("stderr %q", got)
	}
}

// TestRunNotifySocket: `adoptwatch run` under a Type=notify service, message
// by message: STATUS= while it waits, then MAINPID= (the real daemon's pid),
// STATUS= and READY=1 in one datagram once, and only once, the daemon is
// identified, STOPPING=1 on SIGTERM; all from run's own pid. CMD and the
// daemon do not inherit NOTIFY_SOCKET.
func TestRunNotifySocket(t *testing.T) {
	for _, mode := range []string{"subreaper", "no-subreaper"} {
		t.Run(mode, func(t *testing.T) {
			eachHook(t, func(t *testing.T, hook string) {
				l := notifytest.Listen(t)
				args := []string{"--hook=" + hook, "--settle=2s"}
				if mode == "no-subreaper" {
					args = append(args, "--no-subreaper")
				}
				r := startRun(t, true, []string{l.Env(), fixture.EnvSDTermCode + "=42"}, append(args, "--", "{dir}/aw-sd-launch")...)
				from := func(m notifytest.Message) notifytest.Message {
					t.Helper()
					if m.PID != int32(r.run) {
						t.Errorf("%q sent by pid %d, want adoptwatch run %d", m.Text, m.PID, r.run)
					}
					return m
				}
				m, ok := l.Next(t, wait)
				if !ok || !strings.HasPrefix(m.Text, "STATUS=waiting for the daemon: started aw-sd-launch pid ") {
					t.Fatalf("first message %q (received %v), want STATUS=waiting for the daemon...", m.Text, ok)
				}
				from(m)
				daemon := r.next(t, "daemon").Int(0)
				l.ExpectNone(t, 300*time.Millisecond) // --settle: not identified yet
				from(l.Expect(t, wait, fmt.Sprintf("MAINPID=%d\nSTATUS=following %d aw-sd-daemon\nREADY=1", daemon, daemon)))
				if got := r.identified(t); got != daemon {
					t.Fatalf("identified %d, the daemon is %d", got, daemon)
				}
				env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", daemon))
				if err != nil || bytes.Contains(env, []byte("NOTIFY_SOCKET=")) || !bytes.Contains(env, []byte(r.marker)) {
					t.Errorf("the daemon's environment (%v) should lack NOTIFY_SOCKET and carry the test's marker", err)
				}
				r.signalRun(t, unix.SIGTERM)
				from(l.Expect(t, wait, "STOPPING=1"))
				if mode == "subreaper" {
					// run reaped the daemon: it takes the service back to exit with its status.
					from(l.Expect(t, wait, fmt.Sprintf("MAINPID=%d\nSTATUS=daemon %d aw-sd-daemon exited with code 42: run exits 42", r.run, daemon)))
				} // else the reaper above run (the manager) reaped the daemon and has its status
				// run exits only once the manager has processed all that.
				from(l.ExpectBarrier(t, wait))
				if code := r.exitCode(t); code != 42 {
					t.Errorf("run exited %d, want the daemon's 42", code)
				}
				l.ExpectNone(t, 300*time.Millisecond)
			})
		})
	}
}

// TestRunNotifyHandBack: the daemon ends by itself, with a code or killed by
// a signal. run hands the service back to itself (MAINPID=<run>, sent by run
// while it lives: the datagram carries its credentials) and then ends as the
// daemon did: exit code 7, or killed by the same SIGINT (not 130), so that
// systemd, which reads only its own children's statuses, records the daemon's.
// With --no-subreaper and run's parent reaping the daemon, that parent (the
// manager) has the status itself: no MAINPID=.
func TestRunNotifyHandBack(t *testing.T) {
	cases := []struct {
		name        string
		noSubreaper bool
		sig         unix.Signal // sent to the daemon; it exits 7 on SIGTERM, dies of SIGINT
		handBack    string      // the STATUS= after MAINPID=<run>; "" for none
		code        int         // run's exit code as its reaper computes it
	}{
		{"exit-7", false, unix.SIGTERM, "exited with code 7: run exits 7", 7},
		{"killed-by-SIGINT", false, unix.SIGINT, "killed by SIGINT (signal 2): run ends by the same signal", 130},
		{"no-subreaper-exit-7", true, unix.SIGTERM, "", 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eachHook(t, func(t *testing.T, hook string) {
				l := notifytest.Listen(t)
				args := []string{"--hook=" + hook}
				if c.noSubreaper {
					args = append(args, "--no-subreaper")
				}
				r := startRun(t, true, []string{l.Env(), fixture.EnvSDTermCode + "=7"}, append(args, "--", "{dir}/aw-sd-launch")...)
				from := func(m notifytest.Message) {
					t.Helper()
					if m.PID != int32(r.run) {
						t.Errorf("%q sent by pid %d, want adoptwatch run %d", m.Text, m.PID, r.run)
					}
				}
				m, ok := l.Next(t, wait)
				if !ok || !strings.HasPrefix(m.Text, "STATUS=waiting for the daemon") {
					t.Fatalf("first message %q (received %v), want STATUS=waiting for the daemon...", m.Text, ok)
				}
				from(m)
				daemon := r.next(t, "daemon").Int(0)
				from(l.Expect(t, wait, fmt.Sprintf("MAINPID=%d\nSTATUS=following %d aw-sd-daemon\nREADY=1", daemon, daemon)))
				r.identified(t)
				r.kill(daemon, c.sig)
				if c.handBack != "" {
					from(l.Expect(t, wait, fmt.Sprintf("MAINPID=%d\nSTATUS=daemon %d aw-sd-daemon %s", r.run, daemon, c.handBack)))
				}
				// run waits for the manager to have processed the hand-back
				// (a zombie cannot be made the main PID).
				from(l.ExpectBarrier(t, wait))
				if code := r.exitCode(t); code != c.code {
					t.Errorf("run exited %d, want %d", code, c.code)
				}
				l.ExpectNone(t, 300*time.Millisecond)
				// How run ended, as its parent (the reaper) saw it; and the
				// daemon's zombie, which run leaves to the manager above it
				// (systemd reaps it and records its status even when it
				// ignores MAINPID=, while stopping), reaped there too.
				want := func(ws unix.WaitStatus) bool {
					if c.sig == unix.SIGINT {
						return ws.Signaled() && ws.Signal() == unix.SIGINT
					}
					return ws.Exited() && ws.ExitStatus() == 7
				}
				seen := map[int]bool{}
				for !seen[r.run] || !seen[daemon] {
					rep, err := r.sup.Reports.Next("reaped", wait)
					if err != nil {
						t.Fatalf("the reaper did not report the end of run %d and of the daemon %d (seen %v): %v", r.run, daemon, seen, err)
					}
					pid, ws := rep.Int(0), unix.WaitStatus(rep.Int(1))
					if pid != r.run && pid != daemon {
						continue
					}
					seen[pid] = true
					if !want(ws) {
						t.Errorf("pid %d (run %d, daemon %d) ended %s, want the daemon's end", pid, r.run, daemon, output.StatusText(uint32(ws)))
					}
				}
			})
		})
	}
}

// TestRunNotifySocketStalled: run under a service manager that does not
// read its socket (full from the start) follows the daemon all the same and
// stops at once on SIGTERM, saying what the manager did not get.
func TestRunNotifySocketStalled(t *testing.T) {
	testsupport.RequireBPF(t)
	l := notifytest.Listen(t) // never read
	l.Fill(t)
	r := startRun(t, true, []string{l.Env(), fixture.EnvSDTermCode + "=42"}, "--", "{dir}/aw-sd-launch")
	daemon := r.next(t, "daemon").Int(0)
	if got := r.identified(t); got != daemon {
		t.Fatalf("identified %d, the daemon is %d", got, daemon)
	}
	r.signalRun(t, unix.SIGTERM)
	if code := r.exitCode(t); code != 42 {
		t.Errorf("run exited %d, want the daemon's 42", code)
	}
	// STATUS=waiting... (blocked in the socket), MAINPID=...READY=1, STOPPING=1,
	// MAINPID=<run> (the hand-back).
	if !strings.Contains(r.stderr.Text(), "did not take 4 messages within 1s: not sent") {
		t.Errorf("want a line saying the 4 messages were not sent; stderr:\n%s", r.stderr.Text())
	}
}

// TestRunNotifyFD: `adoptwatch run --notify-fd 3` with a real pipe: nothing
// while the daemon is not identified, then one newline and end of file.
func TestRunNotifyFD(t *testing.T) {
	testsupport.RequireBPF(t)
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	r := startRunFiles(t, false, []string{fixture.EnvSDTermCode + "=42"}, []*os.File{wr},
		"--settle=2s", "--notify-fd", "3", "--", "{dir}/aw-sd-launch")
	daemon := r.next(t, "daemon").Int(0)
	rd.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if b, _ := io.ReadAll(rd); len(b) != 0 {
		t.Fatalf("readiness %q before the daemon was identified", b)
	}
	rd.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(rd)
	if err != nil || string(got) != "\n" {
		t.Fatalf("notify fd: read %q, %v; want one newline, then end of file", got, err)
	}
	if id := r.identified(t); id != daemon {
		t.Errorf("identified %d, the daemon is %d", id, daemon)
	}
	r.signalRun(t, unix.SIGTERM)
	if code := r.exitCode(t); code != 42 {
		t.Errorf("run exited %d, want 42", code)
	}
}

// TestRunNotifySocketNowhere: run under a NOTIFY_SOCKET that names no socket
// says so once and supervises the daemon all the same.
func TestRunNotifySocketNowhere(t *testing.T) {
	testsupport.RequireBPF(t)
	nowhere := filepath.Join(t.TempDir(), "nobody.sock")
	r := startRun(t, true, []string{"NOTIFY_SOCKET=" + nowhere, fixture.EnvSDTermCode + "=42"}, "--", "{dir}/aw-sd-launch")
	daemon := r.next(t, "daemon").Int(0)
	if got := r.identified(t); got != daemon {
		t.Fatalf("identified %d, the daemon is %d", got, daemon)
	}
	r.signalRun(t, unix.SIGTERM)
	if code := r.exitCode(t); code != 42 {
		t.Errorf("run exited %d, want the daemon's 42", code)
	}
	if n := strings.Count(r.stderr.Text(), "cannot notify the service manager at NOTIFY_SOCKET="); n != 1 {
		t.Errorf("%d lines about NOTIFY_SOCKET, want 1; stderr:\n%s", n, r.stderr.Text())
	}
}
