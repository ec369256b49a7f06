package main

// Tests of `adoptwatch run` on the real kernel, as root. Each runs
//
//	test > aw-sd-reaper (child subreaper) > adoptwatch run ... -- aw-sd-launch ...
//
// as real processes (the test binary in roles, internal/fixture). The reaper
// stands in for init: in subreaper mode it must reap nothing but run (run
// leaves nothing behind); with --no-subreaper it adopts the daemon instead of
// PID 1, which is never involved. When run ends, the reaper kills what is
// left beneath it and exits with run's exit code.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

// wait bounds every wait for a report, a line or run's exit: generous for
// the emulated CPUs of the test VMs, and still failing long before the
// binary's -test.timeout.
const wait = 30 * time.Second

// cleanupWait bounds each phase of a test's cleanup.
const cleanupWait = 10 * time.Second

// runTree is one `adoptwatch run` under test.
type runTree struct {
	sup     *fixture.Supervised
	cmd     *exec.Cmd
	stderr  *testsupport.Lines
	errRead *os.File // the test's end of the stderr pipe
	reaper  int      // 0 without a reaper
	run     int      // adoptwatch run's pid
	done    chan struct{}
	pidfile string
	marker  string // in the environment of every process this test started
}

// startRun starts `adoptwatch run ARGS...` beneath a subreaper of its own
// (viaReaper) or as the test's child, with env added to the environment.
// "{pidfile}" and "{dir}" in env and args stand for the daemon's pid file and
// the directory of role links.
//
// Every wait is bounded, and the test's cleanup ends whatever the test
// started and is still running (see stop), so a failure never hangs the binary.
func startRun(t *testing.T, viaReaper bool, env []string, args ...string) *runTree {
	t.Helper()
	return startRunFiles(t, viaReaper, env, nil, args...)
}

// startRunFiles is startRun with files as the first process's descriptors
// 3, 4, ... (closed here once it started). The reaper does not pass them on:
// use them with viaReaper false.
func startRunFiles(t *testing.T, viaReaper bool, env []string, files []*os.File, args ...string) *runTree {
	t.Helper()
	sup, err := fixture.NewSupervised()
	if err != nil {
		t.Fatal(err)
	}
	r := &runTree{sup: sup, done: make(chan struct{}), pidfile: filepath.Join(sup.Dir, "daemon.pid")}
	// The reports FIFO is in a directory of this test's own: its variable
	// marks the processes this test started (and it alone).
	r.marker = sup.Env()[0]
	expand := strings.NewReplacer("{pidfile}", r.pidfile, "{dir}", sup.Dir).Replace
	argv := []string{sup.Path("run"), "run"}
	for _, a := range args {
		argv = append(argv, expand(a))
	}
	if viaReaper {
		argv = append([]string{sup.Path("reaper")}, argv...)
	}
	r.cmd = exec.Command(argv[0], argv[1:]...)
	r.cmd.Env = append(append(os.Environ(), envCLI+"=1"), sup.Env()...)
	for _, e := range env {
		r.cmd.Env = append(r.cmd.Env, expand(e))
	}
	r.cmd.Stdout = os.Stderr
	// A pipe of our own, not StderrPipe: the whole tree inherits its write
	// end, so its EOF waits for the last leftover; Wait must not.
	errRead, errWrite, err := os.Pipe()
	if err != nil {
		sup.Close()
		t.Fatal(err)
	}
	r.errRead = errRead
	r.cmd.Stderr = errWrite
	r.cmd.ExtraFiles = files
	// Should the test binary die (a panic, -test.timeout), the first process
	// gets SIGTERM: the reaper then kills the tree, run stops the daemon. The
	// signal follows the thread that started it, so that thread stays
	// dedicated to the process until it is waited for.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := r.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		r.cmd.Wait()
		close(r.done)
	}()
	err = <-started
	errWrite.Close()
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		errRead.Close()
		sup.Close()
		t.Fatal(err)
	}
	r.stderr = testsupport.NewLines(errRead)
	t.Cleanup(func() {
		r.stop(t)
		sup.Close()
		if t.Failed() || testing.Verbose() {
			t.Logf("stderr of the run tree:\n%s", r.stderr.Text())
		}
	})
	if viaReaper {
		r.reaper = r.cmd.Process.Pid
		r.run = r.next(t, "child").Int(0)
	} else {
		r.run = r.cmd.Process.Pid
	}
	return r
}

// stop ends what this test started and is still running, and nothing else:
// run (SIGKILL; its reaper then kills and reaps what is left beneath it, and
// exits), then any process whose environment carries this test's marker (a
// leftover the reaper could not reach). Each wait is bounded.
func (r *runTree) stop(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	default:
		if r.run > 0 {
			r.kill(r.run, unix.SIGKILL)
		}
		if r.reaper > 0 { // it kills what is left beneath it, and exits
			r.kill(r.reaper, unix.SIGTERM)
		}
		select {
		case <-r.done:
		case <-time.After(cleanupWait):
			t.Errorf("adoptwatch run (or its reaper) did not end within %v of SIGKILL", cleanupWait)
		}
	}
	if left := r.sweep(); len(left) > 0 {
		if !t.Failed() {
			t.Errorf("processes this test started were still running at its end: %s", strings.Join(left, ", "))
		} else {
			t.Logf("killed what this test started and left running: %s", strings.Join(left, ", "))
		}
	}
	select {
	case <-r.done:
	case <-time.After(cleanupWait):
		t.Errorf("the test's first process %d did not end; giving up on it", r.cmd.Process.Pid)
	}
	// Everything that held the pipe is gone: wait (briefly) for the rest of
	// the output, then stop reading for good.
	r.stderr.WaitFor(2*time.Second, func(string) bool { return false })
	r.errRead.Close()
}

// sweep SIGKILLs every process carrying the test's marker and waits (bounded)
// until none is left. It returns those it found, as "pid (comm)".
func (r *runTree) sweep() []string {
	var found []string
	seen := map[int]bool{}
	deadline := time.Now().Add(cleanupWait)
	for {
		ours := r.marked()
		if len(ours) == 0 || time.Now().After(deadline) {
			return found
		}
		for _, pid := range ours {
			if !seen[pid] {
				seen[pid] = true
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				found = append(found, fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(string(comm))))
			}
			r.kill(pid, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// marked lists the live processes whose environment carries the test's
// marker (a zombie has no environment left: it is not listed).
func (r *runTree) marked() []int {
	dirs, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err == nil && r.ours(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// ours: pid is a process this test started (never PID 1, never the test).
func (r *runTree) ours(pid int) bool {
	if pid <= 1 || pid == os.Getpid() {
		return false
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, v := range bytes.Split(env, []byte{0}) {
		if string(v) == r.marker {
			return true
		}
	}
	return false
}

// kill sends sig to pid if it is a process this test started, through a pidfd
// opened before the check: a pid reused since is never signalled.
func (r *runTree) kill(pid int, sig unix.Signal) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if r.ours(pid) {
		unix.PidfdSendSignal(fd, sig, nil, 0)
	}
}

func (r *runTree) next(t *testing.T, key string) fixture.Report {
	t.Helper()
	rep, err := r.sup.Reports.Next(key, wait)
	if err != nil {
		t.Fatalf("%v; stderr:\n%s", err, r.stderr.Text())
	}
	return rep
}

// line waits for run's line matching re and returns its submatches.
func (r *runTree) line(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	l, ok := r.stderr.WaitFor(wait, rx.MatchString)
	if !ok {
		t.Fatalf("no line matching %q; stderr:\n%s", re, r.stderr.Text())
	}
	return rx.FindStringSubmatch(l)
}

// identified waits for the identification line and returns the daemon's pid.
func (r *runTree) identified(t *testing.T) int {
	t.Helper()
	m := r.line(t, `adoptwatch run: daemon pid=(\d+) comm=(\S+) identified`)
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// exitCode waits for run (and its reaper) to exit: the reaper exits with run's code.
func (r *runTree) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode()
	case <-time.After(wait):
		t.Fatalf("adoptwatch run still running after %v; stderr:\n%s", wait, r.stderr.Text())
		return -1
	}
}

// signalRun sends sig to adoptwatch run (a process this test started).
func (r *runTree) signalRun(t *testing.T, sig unix.Signal) {
	t.Helper()
	if err := unix.Kill(r.run, sig); err != nil {
		t.Fatalf("signal run: %v", err)
	}
}

// checkLeftNothing: the reaper above run reaped run and nothing else, so run
// itself reaped every orphan of the tree (subreaper mode).
func (r *runTree) checkLeftNothing(t *testing.T) {
	t.Helper()
	for _, rep := range r.sup.Reports.All("reaped") {
		if rep.Int(0) != r.run {
			t.Errorf("the reaper above run had to reap pid %d (status %d): run left it behind", rep.Int(0), rep.Int(1))
		}
	}
}

// checkGone: none of these processes exists any more, not even as a zombie.
func checkGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(cleanupWait)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if state, ok := procState(pid); ok {
			t.Errorf("pid %d still exists (state %s)", pid, state)
		}
	}
}

// checkNoZombies: no child of pid is a zombie for longer than a moment.
func checkNoZombies(t *testing.T, pid int) {
	t.Helper()
	var zombies []int
	for deadline := time.Now().Add(5 * time.Second); ; {
		zombies = nil
		for _, c := range childrenWithState(pid) {
			if c.state == "Z" {
				zombies = append(zombies, c.pid)
			}
		}
		if len(zombies) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("zombie children of %d left unreaped: %v", pid, zombies)
}

func alive(pid int) bool { _, err := procfs.ReadStat(pid); return err == nil }

// procState reads the state letter of /proc/PID/stat.
func procState(pid int) (string, bool) {
	st, err := procfs.ReadStat(pid)
	return st.State, err == nil
}

func procPPID(pid int) int {
	st, _ := procfs.ReadStat(pid)
	return int(st.PPID)
}

type childState struct {
	pid   int
	state string
}

func childrenWithState(ppid int) []childState {
	var out []childState
	for _, c := range procfs.Children(ppid) {
		out = append(out, childState{int(c.PID), c.State})
	}
	return out
}

func reportPIDs(r *runTree, keys ...string) []int {
	var out []int
	for _, k := range keys {
		for _, rep := range r.sup.Reports.All(k) {
			out = append(out, rep.Int(0))
		}
	}
	return out
}

func readPidfile(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRunDoubleForkDaemon: a real double-forking daemon under adoptwatch run:
// identified as the pid its pid file names, signals reach it, run lives as
// long as it does and exits with its status, and no zombie remains.
func TestRunDoubleForkDaemon(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		r := startRun(t, true, []string{fixture.EnvSDPidfile + "={pidfile}", fixture.EnvSDTermCode + "=42", fixture.EnvSDWorkers + "=2"},
			"--hook="+hook, "--pidfile={pidfile}", "--", "{dir}/aw-sd-launch", "daemon")
		daemon := r.next(t, "daemon")
		middle := r.next(t, "middle").Int(0)
		if got := r.identified(t); got != daemon.Int(0) {
			t.Fatalf("identified pid %d, the daemon is %d", got, daemon.Int(0))
		}
		if got := readPidfile(t, r.pidfile); got != daemon.Int(0) {
			t.Errorf("pid file names %d, run identified %d", got, daemon.Int(0))
		}
		r.line(t, `identified \(double-fork, named by the pid file\): .*aw-sd-launch\[\d+ exec\] > aw-sd-middle\[`+strconv.Itoa(middle)+` exec setsid\] > aw-sd-daemon\[`)
		if ppid := procPPID(daemon.Int(0)); ppid != r.run {
			t.Errorf("daemon's parent is %d, want adoptwatch run %d", ppid, r.run)
		}
		r.next(t, "worker")
		r.next(t, "worker")
		checkNoZombies(t, r.run)

		// run lives as long as the daemon.
		time.Sleep(300 * time.Millisecond)
		if !alive(r.run) {
			t.Fatal("adoptwatch run exited while its daemon runs")
		}
		r.signalRun(t, unix.SIGUSR1)
		if rep := r.next(t, "usr1"); rep.Int(0) != daemon.Int(0) {
			t.Errorf("SIGUSR1 reached %d, want the daemon %d", rep.Int(0), daemon.Int(0))
		}
		if !alive(r.run) {
			t.Fatal("adoptwatch run exited after forwarding SIGUSR1")
		}
		r.signalRun(t, unix.SIGTERM)
		if rep := r.next(t, "term"); rep.Int(0) != daemon.Int(0) {
			t.Errorf("SIGTERM reached %d, want the daemon %d", rep.Int(0), daemon.Int(0))
		}
		if code := r.exitCode(t); code != 42 {
			t.Errorf("run exited %d, want the daemon's 42", code)
		}
		r.line(t, `daemon pid=`+strconv.Itoa(daemon.Int(0))+` comm=aw-sd-daemon ended: status=42, exited with code 42`)
		r.checkLeftNothing(t)
		checkGone(t, reportPIDs(r, "launch", "middle", "daemon", "worker")...)
	})
}

// TestRunLineageNamesLauncher: run's announcement shows the daemon's whole
// lineage, from the processes that started run (this test, then the reaper)
// through run itself and CMD: generations the kernel recorded are completed
// from the process table, as the watcher's are.
func TestRunLineageNamesLauncher(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		r := startRun(t, true, nil, "--hook="+hook, "--", "{dir}/aw-sd-launch", "daemon")
		daemon := r.next(t, "daemon").Int(0)
		middle := r.next(t, "middle").Int(0)
		if got := r.identified(t); got != daemon {
			t.Fatalf("identified pid %d, the daemon is %d", got, daemon)
		}
		marks := `(?: exec)?(?: setsid)?\]`
		m := r.line(t, `identified \(double-fork, [^)]*\): (.*)$`)
		want := regexp.MustCompile(`\[` + strconv.Itoa(os.Getpid()) + marks + ` > aw-sd-reaper\[` + strconv.Itoa(r.reaper) + marks +
			` > adoptwatch\[` + strconv.Itoa(r.run) + marks + ` > aw-sd-launch\[\d+ exec\] > aw-sd-middle\[` + strconv.Itoa(middle) +
			` exec setsid\] > aw-sd-daemon\[` + strconv.Itoa(daemon) + `\]$`)
		if !want.MatchString(m[1]) {
			t.Errorf("lineage %q does not name the launchers (this test %d, reaper %d, run %d)", m[1], os.Getpid(), r.reaper, r.run)
		}
		if strings.HasPrefix(m[1], "…") {
			t.Errorf("lineage %q is incomplete: the process table reaches init", m[1])
		}
		r.signalRun(t, unix.SIGTERM)
		r.exitCode(t)
	})
}

// TestRunHelpersAndWorkers: a launcher that double-forks a helper before the
// daemon, and a daemon that forks short-lived helpers (its own and
// double-forked ones) and long-lived workers. Only the daemon is the daemon;
// the adopted helpers are reaped.
func TestRunHelpersAndWorkers(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		r := startRun(t, true, []string{fixture.EnvSDWorkers + "=3", fixture.EnvSDHelpers + "=2", fixture.EnvSDOrphans + "=2",
			fixture.EnvSDHelperFor + "=150ms"},
			// The launcher's helper lives 150ms; a settle of 2s leaves it time
			// to be gone (and reaped) before the daemon is chosen on a slow CPU.
			"--hook="+hook, "-v", "--settle=2s", "--", "{dir}/aw-sd-launch", "helper+daemon")
		daemon := r.next(t, "daemon").Int(0)
		if got := r.identified(t); got != daemon {
			t.Fatalf("identified pid %d, the daemon is %d", got, daemon)
		}
		// The launcher's helper is adopted before the daemon and announced as
		// such, not taken for it. Which helper reports first is up to the
		// scheduler, so it is named by run's line and checked against the
		// helpers' reports below.
		announced, _ := strconv.Atoi(r.line(t, `adopted pid=(\d+) comm=aw-sd-helper`)[1])
		workers := map[int]bool{}
		for i := 0; i < 3; i++ {
			w := r.next(t, "worker")
			workers[w.Int(0)] = true
			if w.Int(1) != daemon {
				t.Errorf("worker %d's parent is %d, want the daemon %d", w.Int(0), w.Int(1), daemon)
			}
		}
		// Every helper (1 + 2 + 2) has come and gone; the adopted ones were reaped by run.
		var helpers []int
		for i := 0; i < 5; i++ {
			helpers = append(helpers, r.next(t, "helper").Int(0))
		}
		if !slices.Contains(helpers, announced) {
			t.Errorf("run announced pid %d as an adopted helper; the helpers are %v", announced, helpers)
		}
		checkGone(t, helpers...)
		checkNoZombies(t, r.run)
		if strings.Contains(r.stderr.Text(), "follows") || strings.Contains(r.stderr.Text(), "also adopted") {
			t.Errorf("helpers or workers taken for daemons:\n%s", r.stderr.Text())
		}
		r.signalRun(t, unix.SIGTERM)
		if code := r.exitCode(t); code != 0 {
			t.Errorf("run exited %d, want the daemon's 0", code)
		}
		r.checkLeftNothing(t)
		checkGone(t, reportPIDs(r, "launch", "middle", "daemon", "worker", "helper")...)
	})
}

// TestRunDaemonKilled: the daemon dies of SIGKILL: run exits 137 and stops the
// workers the daemon left behind (adopted by run).
func TestRunDaemonKilled(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		r := startRun(t, true, []string{fixture.EnvSDWorkers + "=2"}, "--hook="+hook, "--", "{dir}/aw-sd-launch")
		daemon := r.next(t, "daemon").Int(0)
		if got := r.identified(t); got != daemon {
			t.Fatalf("identified pid %d, the daemon is %d", got, daemon)
		}
		r.next(t, "worker")
		r.next(t, "worker")
		r.kill(daemon, unix.SIGKILL)
		if code := r.exitCode(t); code != 137 {
			t.Errorf("run exited %d, want 137", code)
		}
		r.line(t, `ended: status=137, killed by SIGKILL`)
		r.line(t, `stopping leftover pid=\d+ comm=aw-sd-worker`)
		r.checkLeftNothing(t)
		checkGone(t, reportPIDs(r, "daemon", "worker")...)
	})
}

// TestRunLaunchFailures: a launcher that fails, one not found, one that never
// leaves a daemon.
func TestRunLaunchFailures(t *testing.T) {
	testsupport.RequireBPF(t)
	t.Run("fails", func(t *testing.T) {
		r := startRun(t, true, nil, "--", "{dir}/aw-sd-launch", "fail")
		if code := r.exitCode(t); code != 3 {
			t.Errorf("run exited %d, want the launcher's 3", code)
		}
		r.line(t, `aw-sd-launch exited with code 3 and left no daemon`)
		r.checkLeftNothing(t)
	})
	t.Run("not-found", func(t *testing.T) {
		r := startRun(t, true, nil, "--", "{dir}/no-such-command")
		if code := r.exitCode(t); code != 127 {
			t.Errorf("run exited %d, want 127", code)
		}
		r.line(t, `no-such-command: no such file`)
	})
	t.Run("timeout", func(t *testing.T) {
		// A worker never exits by itself: no daemon is ever identified.
		r := startRun(t, true, nil, "--timeout=1s", "--", "{dir}/aw-sd-worker")
		if code := r.exitCode(t); code != 1 {
			t.Errorf("run exited %d, want 1", code)
		}
		r.line(t, `no daemon identified within 1s: the launcher is still running`)
		r.line(t, `stopping leftover pid=\d+ comm=aw-sd-worker`)
		r.checkLeftNothing(t)
		checkGone(t, reportPIDs(r, "worker")...)
	})
}

// TestRunStopBeforeIdentified: SIGTERM while run waits for the tree to settle
// goes to the processes adopted so far; run exits 128+15.
func TestRunStopBeforeIdentified(t *testing.T) {
	testsupport.RequireBPF(t)
	r := startRun(t, true, []string{fixture.EnvSDTermCode + "=42"}, "-v", "--settle=30s", "--", "{dir}/aw-sd-launch")
	daemon := r.next(t, "daemon").Int(0)
	r.line(t, `aw-sd-launch pid=\d+ exited with code 0`)
	r.line(t, `adopted pid=`+strconv.Itoa(daemon)+` `)
	r.signalRun(t, unix.SIGTERM)
	if rep := r.next(t, "term"); rep.Int(0) != daemon {
		t.Errorf("SIGTERM reached %d, want the adopted daemon %d", rep.Int(0), daemon)
	}
	if code := r.exitCode(t); code != 143 {
		t.Errorf("run exited %d, want 143", code)
	}
	r.line(t, `stopped by SIGTERM before a daemon was identified`)
	r.checkLeftNothing(t)
}

// TestRunRedaemonise: on SIGHUP the daemon double-forks a new daemon and exits
// 0; run follows the new one and says so.
func TestRunRedaemonise(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		r := startRun(t, true, []string{fixture.EnvSDOnHUP + "=redaemonise", fixture.EnvSDTermCode + "=7", fixture.EnvSDWorkers + "=1"},
			"--hook="+hook, "--", "{dir}/aw-sd-launch")
		first := r.next(t, "daemon").Int(0)
		if got := r.identified(t); got != first {
			t.Fatalf("identified pid %d, the daemon is %d", got, first)
		}
		r.signalRun(t, unix.SIGHUP)
		second := r.next(t, "daemon").Int(0)
		r.line(t, fmt.Sprintf(`daemon pid=%d comm=aw-sd-daemon follows pid=%d comm=aw-sd-daemon`, second, first))
		r.signalRun(t, unix.SIGTERM)
		if rep := r.next(t, "term"); rep.Int(0) != second {
			t.Errorf("SIGTERM reached %d, want the new daemon %d", rep.Int(0), second)
		}
		if code := r.exitCode(t); code != 7 {
			t.Errorf("run exited %d, want the new daemon's 7", code)
		}
		r.checkLeftNothing(t)
		checkGone(t, reportPIDs(r, "daemon", "worker", "middle")...)
	})
}

// TestRunReexec: on SIGHUP the daemon re-executes itself under another name:
// same pid, still followed, and run says so.
func TestRunReexec(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		r := startRun(t, true, []string{fixture.EnvSDOnHUP + "=reexec", fixture.EnvSDTermCode + "=42"},
			"--hook="+hook, "--", "{dir}/aw-sd-launch")
		daemon := r.next(t, "daemon").Int(0)
		r.identified(t)
		r.signalRun(t, unix.SIGHUP)
		if again := r.next(t, "daemon"); again.Int(0) != daemon || again.Fields[3] != "aw-sd-daemon2" {
			t.Fatalf("after re-exec: %v, want pid %d as aw-sd-daemon2", again, daemon)
		}
		r.line(t, fmt.Sprintf(`daemon pid=%d comm=aw-sd-daemon re-executed itself: now comm=aw-sd-daemon2`, daemon))
		r.signalRun(t, unix.SIGTERM)
		if code := r.exitCode(t); code != 42 {
			t.Errorf("run exited %d, want 42", code)
		}
		r.line(t, fmt.Sprintf(`daemon pid=%d comm=aw-sd-daemon2 ended: status=42`, daemon))
		r.checkLeftNothing(t)
	})
}

// TestRunNoSubreaper runs `run --no-subreaper` beneath a subreaper of the
// test's own, which therefore adopts (and reaps) the daemon as init would: run
// follows it through its pidfd and takes its status from the exit record.
func TestRunNoSubreaper(t *testing.T) {
	for _, c := range []struct {
		name string
		sig  unix.Signal
		code int
	}{{"term", unix.SIGTERM, 42}, {"kill", unix.SIGKILL, 137}} {
		t.Run(c.name, func(t *testing.T) {
			eachHook(t, func(t *testing.T, hook string) {
				r := startRun(t, true, []string{fixture.EnvSDTermCode + "=42", fixture.EnvSDWorkers + "=1"},
					"--hook="+hook, "--no-subreaper", "--", "{dir}/aw-sd-launch")
				daemon := r.next(t, "daemon").Int(0)
				if got := r.identified(t); got != daemon {
					t.Fatalf("identified pid %d, the daemon is %d", got, daemon)
				}
				if ppid := procPPID(daemon); ppid != r.reaper {
					t.Fatalf("daemon's parent is %d, want the test's subreaper %d", ppid, r.reaper)
				}
				if c.sig == unix.SIGTERM {
					r.signalRun(t, unix.SIGTERM) // forwarded through the pidfd
				} else {
					r.kill(daemon, unix.SIGKILL)
				}
				if code := r.exitCode(t); code != c.code {
					t.Errorf("run exited %d, want the daemon's %d", code, c.code)
				}
				r.line(t, fmt.Sprintf(`daemon pid=%d comm=aw-sd-daemon ended: status=%d`, daemon, c.code))
				reapedDaemon := false
				for _, rep := range r.sup.Reports.All("reaped") {
					reapedDaemon = reapedDaemon || rep.Int(0) == daemon
				}
				if !reapedDaemon {
					t.Errorf("the daemon was not reaped by its adoptive parent, the test's subreaper")
				}
			})
		})
	}
}

// TestRunNoSubreaperInit: the daemon adopted by PID 1 itself, where PID 1 is
// our own init (the test VMs).
func TestRunNoSubreaperInit(t *testing.T) {
	if os.Getenv("ADOPTWATCH_IN_VM") == "" || os.Getppid() != 1 {
		t.Skip("needs PID 1 to be our own init (ADOPTWATCH_IN_VM=1, started by it): runs in the test VMs; TestRunNoSubreaper covers the host")
	}
	eachHook(t, func(t *testing.T, hook string) {
		r := startRun(t, false, []string{fixture.EnvSDTermCode + "=42"}, "--hook="+hook, "--no-subreaper", "--", "{dir}/aw-sd-launch")
		daemon := r.next(t, "daemon").Int(0)
		t.Cleanup(func() { r.kill(daemon, unix.SIGKILL) })
		if got := r.identified(t); got != daemon {
			t.Fatalf("identified pid %d, the daemon is %d", got, daemon)
		}
		if ppid := procPPID(daemon); ppid != 1 {
			t.Fatalf("daemon's parent is %d, want init", ppid)
		}
		r.signalRun(t, unix.SIGTERM)
		if code := r.exitCode(t); code != 42 {
			t.Errorf("run exited %d, want the daemon's 42", code)
		}
	})
}

// TestRunUsage needs no privileges: flags and usage.
func TestRunUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runCommand([]string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "--no-subreaper") ||
		!strings.Contains(out.String(), "Usage: adoptwatch run [flags] -- CMD") {
		t.Errorf("--help: code %d, stdout:\n%s", code, out.String())
	}
	for _, args := range [][]string{{}, {"--bogus", "--", "true"}, {"--hook=nope", "--", "true"}, {"--timeout=0s", "--", "true"}} {
		out.Reset()
		errOut.Reset()
		if code := runCommand(args, &out, &errOut); code != 2 || !strings.HasPrefix(errOut.String(), "adoptwatch run: ") {
			t.Errorf("%q: code %d, stderr %q; want 2 and one message", args, code, errOut.String())
		}
	}
}
