package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"github.com/adoptwatch/adoptwatch/loader"
)

// jsonAdoptionOf waits for the JSON adoption line of pid.
func jsonAdoptionOf(t *testing.T, c *cli, pid int) output.AdoptionJSON {
	t.Helper()
	got := c.stdout.JSON(1, 15*time.Second, func(m map[string]any) bool {
		return m["event"] == "adopt" && testsupport.Num(m, "pid") == pid
	})
	if len(got) == 0 {
		t.Fatalf("no adoption of %d printed; stdout:\n%s\nstderr:\n%s", pid, c.stdout.Text(), c.stderr.Text())
	}
	var a output.AdoptionJSON
	if err := testsupport.Decode(got[0], &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestWatchJSON(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		c := startCLI(t, "--json", "--hook="+hook)
		ready := c.waitReady(t)
		if !strings.Contains(ready, hook) {
			t.Errorf("ready line does not name the hook %s: %q", hook, ready)
		}
		if note := loader.CopiesNote(loader.DetectPreemption()); !strings.Contains(ready, note) {
			t.Errorf("ready line does not say %q: %q", note, ready)
		}
		tree := testsupport.StartTree(t, "doublefork")
		launcher, middle, daemon := testsupport.DoubleFork(t, tree)

		a := jsonAdoptionOf(t, c, daemon)
		if _, err := time.Parse(time.RFC3339Nano, a.Time); err != nil {
			t.Errorf("time %q is not RFC 3339: %v", a.Time, err)
		}
		if a.Comm != "aw-daemon" || a.PrevParent.PID != uint32(middle) || a.PrevParent.Comm != "aw-middle" ||
			a.NewParent.PID != uint32(tree.Reaper) || a.NewParent.Comm != "aw-reaper" ||
			a.Reaper != "subreaper" || a.Hook != hook || a.Pattern != "double-fork" {
			t.Errorf("adoption line: %+v", a)
		}
		n := len(a.Lineage)
		if n < 4 {
			t.Fatalf("lineage too short: %+v", a.Lineage)
		}
		want := []uint32{uint32(tree.Reaper), uint32(launcher), uint32(middle), uint32(daemon)}
		for i, step := range a.Lineage[n-4:] {
			if step.PID != want[i] {
				t.Errorf("lineage step %d = %d, want %d (%+v)", i, step.PID, want[i], a.Lineage)
			}
		}
		if !a.Lineage[n-2].Setsid || a.Lineage[n-2].SID != uint32(middle) {
			t.Errorf("middle's setsid not shown: %+v", a.Lineage[n-2])
		}
		if a.Lineage[0].PID != 1 || !a.LineageComplete {
			t.Errorf("lineage should reach PID 1 through /proc: %+v", a.Lineage)
		}
		if code := c.stop(t); code != 0 {
			t.Errorf("exit status after SIGINT = %d, want 0; stderr:\n%s", code, c.stderr.Text())
		}
	})
}

func TestWatchText(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		c := startCLI(t, "--hook="+hook)
		c.waitReady(t)
		tree := testsupport.StartTree(t, "doublefork")
		launcher, middle, daemon := testsupport.DoubleFork(t, tree)
		head := fmt.Sprintf(" adopt %d aw-daemon from %d aw-middle to %d aw-reaper (subreaper) double-fork: ", daemon, middle, tree.Reaper)
		chain := fmt.Sprintf("aw-reaper[%d exec] > aw-launcher[%d exec] > aw-middle[%d exec setsid] > aw-daemon[%d]", tree.Reaper, launcher, middle, daemon)
		if _, ok := c.stdout.WaitFor(15*time.Second, func(s string) bool { return contains(s, head, chain) }); !ok {
			t.Errorf("no line with %q and %q:\n%s", head, chain, c.stdout.Text())
		}
	})
}

// TestWatchPIDFilter: --pid keeps one tree's adoptions and drops another's.
func TestWatchPIDFilter(t *testing.T) {
	testsupport.RequireBPF(t)
	// Both trees hold their daemon until their parent gets SIGUSR1.
	mine, other := testsupport.StartTree(t, "threadparent"), testsupport.StartTree(t, "threadparent")
	var parents, daemons [2]int
	for i, tree := range []*fixture.Tree{mine, other} {
		parents[i] = testsupport.Next(t, tree, "parent").Int(0)
		daemons[i] = testsupport.Next(t, tree, "daemon").Int(0)
		defer syscall.Kill(daemons[i], syscall.SIGKILL)
		testsupport.Next(t, tree, "forker-exited")
	}
	c := startCLI(t, "--json", "--pid", fmt.Sprint(mine.Reaper))
	c.waitReady(t)
	syscall.Kill(parents[1], syscall.SIGUSR1) // the other tree's adoption comes first
	time.Sleep(50 * time.Millisecond)
	syscall.Kill(parents[0], syscall.SIGUSR1)
	jsonAdoptionOf(t, c, daemons[0])
	if strings.Contains(c.stdout.Text(), fmt.Sprintf(`"pid":%d,`, daemons[1])) {
		t.Errorf("--pid %d printed the other tree's adoption:\n%s", mine.Reaper, c.stdout.Text())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"--hook=kprobe-ish"}, 2, `unknown hook "kprobe-ish"`},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--pid=-3"}, 2, "--pid -3: not a process id"},
		{[]string{"--help"}, 0, "Usage: adoptwatch"},
		{[]string{"--ring-size=5000"}, 2, "want a power of two"},
		{[]string{"features", "--nope"}, 2, "unknown flag: --nope"},
	} {
		c := startCLI(t, tc.args...)
		if code := c.exitCode(t, 10*time.Second); code != tc.code {
			t.Errorf("adoptwatch %v: exit %d, want %d", tc.args, code, tc.code)
		}
		if !strings.Contains(c.stderr.Text(), tc.want) {
			t.Errorf("adoptwatch %v: stderr %q lacks %q", tc.args, c.stderr.Text(), tc.want)
		}
		if strings.Contains(c.stderr.Text(), "goroutine") {
			t.Errorf("adoptwatch %v printed a stack trace", tc.args)
		}
	}
}

// TestNotRoot: without privileges, one clear line and exit status 1.
func TestNotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop to an unprivileged user")
	}
	// The test binary must be reachable by nobody.
	dir, err := os.MkdirTemp("", "adoptwatch-notroot-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "adoptwatch")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), envCLI+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit %d (%v), want 1; output:\n%s", code, err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "needs root") {
		t.Errorf("want one line saying root is needed, got:\n%s", out)
	}
}

func TestFeatures(t *testing.T) {
	testsupport.RequireBPF(t)
	c := startCLI(t, "features")
	if code := c.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("features: exit %d\n%s\n%s", code, c.stdout.Text(), c.stderr.Text())
	}
	out := c.stdout.Text()
	used := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[3] == "yes" {
			used++
		}
	}
	if !strings.Contains(out, "exit-walk") || !strings.Contains(out, "fentry") || used != 1 {
		t.Errorf("features output should list every hook and mark exactly one used:\n%s", out)
	}
	// The copies of the fork/exec/exit programs, as this kernel's preemption model needs.
	p := loader.DetectPreemption()
	if note := loader.CopiesNote(p); !slices.Contains(strings.Split(out, "\n"), note) {
		t.Errorf("features output should say %q:\n%s", note, out)
	}
	t.Logf("%s", loader.CopiesNote(p))
}

// TestWatchAll: --all adds forks, execs and exits, with exit statuses.
func TestWatchAll(t *testing.T) {
	testsupport.RequireBPF(t)
	c := startCLI(t, "--all", "--json")
	c.waitReady(t)
	tree := testsupport.StartTree(t, "doublefork")
	launcher, middle, daemon := testsupport.DoubleFork(t, tree)
	for _, want := range []struct {
		event string
		match func(output.TaskJSON) bool
	}{
		{"fork", func(e output.TaskJSON) bool {
			return e.PID == uint32(launcher) && e.Child != nil && e.Child.PID == uint32(middle)
		}},
		{"exec", func(e output.TaskJSON) bool { return e.PID == uint32(daemon) && e.Comm == "aw-daemon" }},
		{"exit", func(e output.TaskJSON) bool {
			return e.PID == uint32(launcher) && e.ProcessExit != nil && *e.ProcessExit && e.Status != nil && *e.Status == 0
		}},
	} {
		got := c.stdout.JSON(1, 10*time.Second, func(m map[string]any) bool {
			var e output.TaskJSON
			return m["event"] == want.event && testsupport.Decode(m, &e) == nil && want.match(e)
		})
		if len(got) == 0 {
			t.Errorf("no matching %s line:\n%s", want.event, c.stdout.Text())
		}
	}
	jsonAdoptionOf(t, c, daemon)
}

// TestWatchReportsLoss: adoptwatch stopped (SIGSTOP) while daemons are adopted
// says how many adoption records the full ring buffer lost, in JSON.
func TestWatchReportsLoss(t *testing.T) {
	const n = 100
	testsupport.RequireBPF(t)
	// Scoped to this test's tree, so that only its adoptions are counted.
	c := startCLI(t, "--json", "--ring-size=4096", "--pid", fmt.Sprint(os.Getpid()))
	c.waitReady(t)
	c.cmd.Process.Signal(syscall.SIGSTOP)
	tree := testsupport.StartTree(t, fmt.Sprintf("raw:%d", n))
	for i := 0; i < 2*n; i++ { // every middle and daemon reaped: all adopted
		testsupport.Next(t, tree, "reaped")
	}
	c.cmd.Process.Signal(syscall.SIGCONT)
	isLost := func(m map[string]any) bool { return m["event"] == "lost" && m["records"] == "adopt" }
	if got := c.stdout.JSON(1, 10*time.Second, isLost); len(got) == 0 {
		t.Fatalf("no lost line; stdout:\n%s", c.stdout.Text())
	}
	// Let every delivered line arrive, then count this tree's adoptions and losses.
	time.Sleep(300 * time.Millisecond)
	delivered := len(c.stdout.JSON(0, 0, func(m map[string]any) bool {
		return m["event"] == "adopt" && testsupport.PartyPID(m, "new_parent") == tree.Reaper
	}))
	lost := 0
	for _, m := range c.stdout.JSON(0, 0, isLost) {
		lost += testsupport.Num(m, "count")
	}
	t.Logf("%d delivered, %d reported lost", delivered, lost)
	if delivered+lost != n || lost == 0 {
		t.Errorf("%d delivered + %d lost: want %d adoptions accounted for, some lost", delivered, lost, n)
	}
}

// TestHelpListsSubcommands: --help names every subcommand dispatch knows.
func TestHelpListsSubcommands(t *testing.T) {
	var out, errOut strings.Builder
	if code := dispatch([]string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, sub := range []string{"features", "unwatch", "run"} {
		if !strings.Contains(errOut.String(), "\n  "+sub+" ") || !strings.Contains(errOut.String(), "adoptwatch "+sub) {
			t.Errorf("--help does not list %q:\n%s", sub, errOut.String())
		}
	}
}
