package main

// The command's tests run adoptwatch as a real process: the test binary
// re-executes itself with envCLI set, and TestMain hands its arguments to
// dispatch, exactly as main would. No separately built binary is needed, so the
// same tests run inside the test VMs from a `go test -c` binary.

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/loader"
)

const envCLI = "ADOPTWATCH_TEST_CLI"

func TestMain(m *testing.M) {
	fixture.Dispatch()
	if os.Getenv(envCLI) != "" {
		os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// cli is a running adoptwatch.
type cli struct {
	cmd    *exec.Cmd
	stdout *lines
	stderr *lines
	done   chan struct{}
	err    error // from Wait, once done is closed
}

// lines collects what a stream printed, line by line.
type lines struct {
	mu   sync.Mutex
	cond *sync.Cond
	all  []string
	eof  bool
}

func newLines(r io.Reader) *lines {
	l := &lines{}
	l.cond = sync.NewCond(&l.mu)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l.mu.Lock()
			l.all = append(l.all, sc.Text())
			l.cond.Broadcast()
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.eof = true
		l.cond.Broadcast()
		l.mu.Unlock()
	}()
	return l
}

// waitFor returns the first line for which match is true, waiting up to timeout.
func (l *lines) waitFor(timeout time.Duration, match func(string) bool) (string, bool) {
	deadline := time.Now().Add(timeout)
	wake := time.AfterFunc(timeout, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer wake.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		for _, s := range l.all {
			if match(s) {
				return s, true
			}
		}
		if l.eof || time.Now().After(deadline) {
			return "", false
		}
		l.cond.Wait()
	}
}

func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

// startCLI runs `adoptwatch ARGS...` and, unless it is expected to fail, waits
// for its ready line. The process is interrupted and waited for when the test ends.
func startCLI(t *testing.T, args ...string) *cli {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &cli{cmd: exec.Command(exe, args...), done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), envCLI+"=1")
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.stdout, c.stderr = newLines(out), newLines(errOut)
	go func() {
		// Wait only after both streams are drained (exec.Cmd's rule for pipes).
		c.stdout.waitFor(time.Hour, func(string) bool { return false })
		c.stderr.waitFor(time.Hour, func(string) bool { return false })
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// waitReady waits for the line that says adoptwatch is attached.
func (c *cli) waitReady(t *testing.T) string {
	t.Helper()
	line, ok := c.stderr.waitFor(30*time.Second, func(s string) bool { return strings.Contains(s, "ready") })
	if !ok {
		t.Fatalf("adoptwatch never said it was ready; stderr:\n%s", c.stderr.text())
	}
	return line
}

// stop interrupts adoptwatch (SIGINT, as a user would) and returns its exit status.
func (c *cli) stop(t *testing.T) int {
	t.Helper()
	select {
	case <-c.done:
	default:
		c.cmd.Process.Signal(unix.SIGINT)
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
			t.Errorf("adoptwatch ignored SIGINT for 15s; killed")
		}
	}
	return c.cmd.ProcessState.ExitCode()
}

// exitCode waits for adoptwatch to exit by itself.
func (c *cli) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("adoptwatch still running after %v", timeout)
		return -1
	}
}

func requireBPF(t *testing.T) {
	t.Helper()
	if err := loader.CheckPrerequisites(); err != nil {
		t.Skipf("cannot load BPF programs here: %v", err)
	}
}

// hooks lists the --hook values to test, as subtest names hook=NAME.
var hooks = []string{"exact", "exit-walk"}

// eachHook runs test under adoptwatch --hook=NAME for each hook this kernel
// supports; an unsupported one is skipped, saying why.
func eachHook(t *testing.T, test func(t *testing.T, hook string)) {
	requireBPF(t)
	for _, hook := range hooks {
		t.Run("hook="+hook, func(t *testing.T) {
			obs, err := loader.Open(loader.Options{Hook: loader.Hook(hook)})
			if err != nil {
				t.Skipf("this kernel cannot attach the %s hook: %v", hook, err)
			}
			obs.Close()
			test(t, hook)
		})
	}
}

func startTree(t *testing.T, scenario string) *fixture.Tree {
	t.Helper()
	tree, err := fixture.Start(scenario)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Stop() })
	return tree
}

func mustNext(t *testing.T, tree *fixture.Tree, key string) fixture.Report {
	t.Helper()
	rep, err := tree.Next(key, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
