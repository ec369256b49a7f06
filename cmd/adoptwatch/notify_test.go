package main

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/notify"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

// sigReport is one "sig SIGNO CODE PID UID STATUS" line from a notified reaper.
type sigReport struct{ signo, code, pid, uid, status int }

func sigOf(r fixture.Report) sigReport {
	return sigReport{r.Int(0), r.Int(1), r.Int(2), r.Int(3), r.Int(4)}
}

func startNotified(t *testing.T, sig int, mode, scenario string) *fixture.Tree {
	t.Helper()
	tree, err := fixture.StartNotifiedReaper(sig, mode, scenario)
	if err != nil {
		t.Fatal(err)
	}
	testsupport.StopAtEnd(t, tree)
	if tree.Reaper == 1 {
		t.Fatal("the notified reaper is PID 1: refusing to go on")
	}
	return tree
}

// TestNotifySignalPerAdoption: a double fork beneath a reaper that asked for
// RTMIN+3 gives it exactly one signal per adoption, in order, with si_pid =
// the adopted process and si_status = its previous parent (read with sigtimedwait).
func TestNotifySignalPerAdoption(t *testing.T) {
	sig := notify.RTMin + 3
	tree := startNotified(t, sig, "sigwait", "doublefork")
	c := startWatching(t, "--json", "--notify-pid", itoa(tree.Reaper), "--notify-signal", "RTMIN+3")
	if err := tree.Go(); err != nil {
		t.Fatal(err)
	}
	launcher, middle, daemon := testsupport.DoubleFork(t, tree)

	adoptions := c.stdout.JSON(2, 10*time.Second, adoptedBy(tree.Reaper))
	if len(adoptions) != 2 {
		t.Fatalf("adoptwatch reported %d adoptions by the reaper, want 2", len(adoptions))
	}
	want := []sigReport{
		{sig, notify.SIQueue, middle, testsupport.Num(adoptions[0], "uid"), launcher},
		{sig, notify.SIQueue, daemon, testsupport.Num(adoptions[1], "uid"), middle},
	}
	for i, w := range want {
		got := sigOf(testsupport.Next(t, tree, "sig"))
		if got != w {
			t.Errorf("signal %d: got %+v, want %+v", i, got, w)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if all := tree.All("sig"); len(all) != 2 {
		t.Errorf("reaper got %d signals, want 2: %v", len(all), all)
	}
	if failed := c.stdout.JSON(0, 0, func(m map[string]any) bool { return m["event"] == "notify-failed" }); len(failed) > 0 {
		t.Errorf("notify-failed: %v", failed)
	}
}

// TestNotifyTwoReapers: each reaper gets its own signal for its own adoptions
// only; the second reads with signalfd.
func TestNotifyTwoReapers(t *testing.T) {
	sig1, sig2 := notify.RTMin+3, notify.RTMin+4
	r1 := startNotified(t, sig1, "sigwait", "doublefork")
	r2 := startNotified(t, sig2, "signalfd", "rawlinger:3")
	c := startWatching(t, "--json",
		"--notify-pid", itoa(r1.Reaper), "--notify-signal", "RTMIN+3",
		"--notify-pid", itoa(r2.Reaper), "--notify-signal", itoa(sig2))
	r1.Go()
	r2.Go()
	testsupport.KillAtEnd(t, testsupport.Next(t, r1, "daemon").Int(0))
	for _, tc := range []struct {
		tree *fixture.Tree
		sig  int
		n    int
	}{{r1, sig1, 2}, {r2, sig2, 3}} {
		adoptions := c.stdout.JSON(tc.n, 10*time.Second, adoptedBy(tc.tree.Reaper))
		if len(adoptions) != tc.n {
			t.Fatalf("reaper %d: %d adoptions reported, want %d", tc.tree.Reaper, len(adoptions), tc.n)
		}
		for _, a := range adoptions {
			if tc.tree == r2 {
				testsupport.KillAtEnd(t, testsupport.Num(a, "pid"))
			}
			got := sigOf(testsupport.Next(t, tc.tree, "sig"))
			want := sigReport{tc.sig, notify.SIQueue, testsupport.Num(a, "pid"), testsupport.Num(a, "uid"), testsupport.PartyPID(a, "prev_parent")}
			if got != want {
				t.Errorf("reaper %d: got %+v, want %+v", tc.tree.Reaper, got, want)
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(r1.All("sig")); n != 2 {
		t.Errorf("reaper 1 got %d signals, want 2", n)
	}
	if n := len(r2.All("sig")); n != 3 {
		t.Errorf("reaper 2 got %d signals, want 3", n)
	}
}

// TestNotifyFailureReported: a reaper whose signal queue is full (its
// RLIMIT_SIGPENDING is 0) gets nothing, and each failure is reported in the
// JSON stream and on stderr with EAGAIN.
func TestNotifyFailureReported(t *testing.T) {
	tree := startNotified(t, notify.RTMin+5, "full", "doublefork")
	c := startWatching(t, "--json", "--notify-pid", itoa(tree.Reaper), "--notify-signal", "RTMIN+5")
	tree.Go()
	middle := testsupport.Next(t, tree, "middle").Int(0)
	daemon := testsupport.Next(t, tree, "daemon").Int(0)
	testsupport.KillAtEnd(t, daemon)
	failed := c.stdout.JSON(2, 10*time.Second, func(m map[string]any) bool { return m["event"] == "notify-failed" })
	if len(failed) != 2 {
		t.Fatalf("%d notify-failed lines, want 2", len(failed))
	}
	for i, pid := range []int{middle, daemon} {
		f := failed[i]
		if testsupport.Num(f, "pid") != pid || testsupport.Num(f, "target") != tree.Reaper || f["errno"] != "EAGAIN" {
			t.Errorf("notify-failed %d: %v; want pid %d target %d EAGAIN", i, f, pid, tree.Reaper)
		}
	}
	if !hasStderr(c, "notify-failed: RTMIN+5 to "+itoa(tree.Reaper), time.Second) {
		t.Errorf("no notify-failed line on stderr")
	}
	if n := len(tree.All("sig")); n != 0 {
		t.Errorf("reaper got %d signals with a full queue", n)
	}
}

// TestNotifyRefusesStandardSignal: standard signals do not queue, so they are
// refused unless forced, and the error says why.
func TestNotifyRefusesStandardSignal(t *testing.T) {
	testsupport.RequireBPF(t)
	var out, errb bytes.Buffer
	code := dispatch([]string{"--notify-pid", itoa(os.Getpid()), "--notify-signal", "USR1"}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "not a realtime signal") || !strings.Contains(errb.String(), "do not queue") {
		t.Errorf("exit %d, stderr %q: want a refusal that explains queueing", code, errb.String())
	}
	errb.Reset()
	code = dispatch([]string{"--notify-pid", itoa(os.Getpid()), "--notify-signal", "RTMIN+1", "--notify-pid", "1"}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "pairs") {
		t.Errorf("unpaired flags: exit %d, stderr %q", code, errb.String())
	}
}

// TestNotifyInitInVM runs where PID 1 is vmtests' init, which blocks the
// signal named in ADOPTWATCH_INIT_SIGNAL, reads it with signalfd and appends
// one line per signal, "SIGNO CODE PID UID STATUS", to ADOPTWATCH_INIT_SIGNALS.
func TestNotifyInitInVM(t *testing.T) {
	if os.Getenv("ADOPTWATCH_IN_VM") != "1" || os.Getppid() != 1 {
		t.Skip("needs PID 1 to be our own init: runs in the test VMs")
	}
	path, sigName := os.Getenv("ADOPTWATCH_INIT_SIGNALS"), os.Getenv("ADOPTWATCH_INIT_SIGNAL")
	if path == "" || sigName == "" {
		t.Skip("this VM init does not take adoption signals (ADOPTWATCH_INIT_SIGNAL/ADOPTWATCH_INIT_SIGNALS unset)")
	}
	sig, err := notify.ParseSignal(sigName)
	if err != nil {
		t.Fatal(err)
	}
	c := startWatching(t, "--json", "--notify-pid", "1", "--notify-signal", sigName)
	tree := testsupport.StartUnreaped(t, "launcher")
	launcher, middle, daemon := testsupport.DoubleFork(t, tree)
	want := map[int]int{middle: launcher, daemon: middle} // adopted -> previous parent
	got := map[int]sigReport{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			r := sigOf(fixture.Report{Fields: strings.Fields(sc.Text())})
			if _, ok := want[r.pid]; ok {
				got[r.pid] = r
			}
		}
		f.Close()
	}
	for pid, prev := range want {
		r, ok := got[pid]
		if !ok {
			t.Errorf("init got no signal for the adoption of %d (from %d)", pid, prev)
			continue
		}
		if r.signo != sig || r.code != notify.SIQueue || r.status != prev {
			t.Errorf("init's signal for %d: %+v, want signo %d, SI_QUEUE, status %d", pid, r, sig, prev)
		}
	}
	if failed := c.stdout.JSON(0, 0, func(m map[string]any) bool { return m["event"] == "notify-failed" }); len(failed) > 0 {
		t.Errorf("notify-failed: %v", failed)
	}
}
