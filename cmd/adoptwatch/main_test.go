package main

// The command's tests run adoptwatch as a real process: the test binary
// re-executes itself with envCLI set, and TestMain hands its arguments to
// dispatch, exactly as main would. No separately built binary is needed, so the
// same tests run inside the test VMs from a `go test -c` binary.

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/journal/journaltest"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

const envCLI = "ADOPTWATCH_TEST_CLI"

func TestMain(m *testing.M) {
	fixture.Dispatch()
	if os.Getenv(envCLI) != "" {
		if err := journaltest.PrivateRun(); err != nil { // only where a test asked for it
			fmt.Fprintf(os.Stderr, "test setup: %v\n", err)
			os.Exit(125)
		}
		os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// cli is a running adoptwatch.
type cli struct {
	cmd    *exec.Cmd
	stdout *testsupport.Lines
	stderr *testsupport.Lines
	done   chan struct{}
	err    error // from Wait, once done is closed
	start  time.Time
}

// startCLI runs `adoptwatch ARGS...` and, unless it is expected to fail, waits
// for its ready line. The process is interrupted and waited for when the test ends.
func startCLI(t *testing.T, args ...string) *cli {
	t.Helper()
	return startCLIWith(t, cliOptions{}, args...)
}

// cliOptions adjust how startCLIWith starts adoptwatch.
type cliOptions struct {
	env        []string   // added to the environment
	files      []*os.File // descriptors 3, 4, ... (closed here once started)
	privateRun string     // a private /run in a mount namespace of its own: see journaltest.PrivateRun
}

func startCLIWith(t *testing.T, o cliOptions, args ...string) *cli {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &cli{cmd: exec.Command(exe, args...), done: make(chan struct{})}
	c.cmd.Env = append(append(os.Environ(), envCLI+"=1"), o.env...)
	c.cmd.ExtraFiles = o.files
	if o.privateRun != "" {
		c.cmd.Env = append(c.cmd.Env, journaltest.EnvPrivateRun+"="+o.privateRun)
		c.cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.start = time.Now()
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range o.files {
		f.Close() // the child has its copy: its end of a pipe must be its alone
	}
	c.stdout, c.stderr = testsupport.NewLines(out), testsupport.NewLines(errOut)
	go func() {
		// Wait only after both streams are drained (exec.Cmd's rule for pipes).
		c.stdout.WaitEOF(time.Hour)
		c.stderr.WaitEOF(time.Hour)
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// waitReady waits for the line that says adoptwatch is attached.
func (c *cli) waitReady(t *testing.T) string {
	t.Helper()
	line, ok := c.stderr.WaitFor(30*time.Second, func(s string) bool { return strings.Contains(s, "ready") })
	if !ok {
		t.Fatalf("adoptwatch never said it was ready; stderr:\n%s", c.stderr.Text())
	}
	// Loading the programs (mostly BPF verification) is the fixed cost of
	// each run under emulation: the VM logs show what it costs there.
	t.Logf("adoptwatch ready in %v", time.Since(c.start).Round(time.Millisecond))
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

// eachHook runs test under adoptwatch --hook=NAME for each hook this kernel
// supports; an unsupported one is skipped, saying why.
func eachHook(t *testing.T, test func(t *testing.T, hook string)) {
	testsupport.EachHook(t, func(t *testing.T, hook events.Hook) {
		testsupport.RequireHook(t, hook)
		test(t, string(hook))
	})
}

func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
