//go:build linux

package systemdtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/adoptwatch/adoptwatch/internal/syncbuf"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
)

// adoptwatch is where vmtest installs the command in the systemd guests.
const adoptwatch = "/usr/local/bin/adoptwatch"

// Emulated CPUs are slow: BPF programs take seconds to load and verify.
const (
	attachTimeout = 120 * time.Second
	eventTimeout  = 60 * time.Second
)

func needSystemd(t *testing.T) {
	t.Helper()
	if os.Getenv("ADOPTWATCH_SYSTEMD") != "1" {
		t.Skip("needs Debian's systemd as PID 1 in a vmtest VM (ADOPTWATCH_SYSTEMD=1: make vmtest boots one)")
	}
}

// run runs a command and returns its combined output, failing the test
// only if it cannot be started; callers check the error.
func run(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: no answer within %v", name, strings.Join(args, " "), timeout)
	}
	return strings.TrimSpace(string(out)), err
}

// systemctl runs systemctl and fails the test if it fails.
func systemctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, attachTimeout, "systemctl", args...)
	if err != nil {
		t.Fatalf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// show returns one property of a unit.
func show(t *testing.T, unit, prop string) string {
	t.Helper()
	return systemctl(t, "show", "--value", "-p", prop, unit)
}

// logUnit puts a unit's state and journal into the test log.
func logUnit(t *testing.T, unit string) {
	t.Helper()
	st, _ := run(t, 30*time.Second, "systemctl", "status", "--no-pager", "-l", unit)
	t.Logf("systemctl status %s:\n%s", unit, st)
}

// installUnit writes a unit under /run/systemd/system (gone at power-off)
// and has systemd read it; cleanup stops and removes it.
func installUnit(t *testing.T, name, text string) {
	t.Helper()
	path := filepath.Join("/run/systemd/system", name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	systemctl(t, "daemon-reload")
	t.Cleanup(func() {
		run(t, attachTimeout, "systemctl", "stop", name)
		os.Remove(path)
		run(t, attachTimeout, "systemctl", "daemon-reload")
		run(t, attachTimeout, "systemctl", "reset-failed", name)
	})
}

// envLines renders KEY=VALUE pairs as unit Environment= lines.
func envLines(env ...string) string {
	var b strings.Builder
	for _, kv := range env {
		fmt.Fprintf(&b, "Environment=%s\n", strconv.Quote(kv))
	}
	return b.String()
}

// adoption is the part of adoptwatch's --json adoption line the tests check.
type adoption struct {
	Event      string `json:"event"`
	Pid        int    `json:"pid"`
	Comm       string `json:"comm"`
	PrevParent struct {
		Pid  int    `json:"pid"`
		Comm string `json:"comm"`
	} `json:"prev_parent"`
	NewParent struct {
		Pid  int    `json:"pid"`
		Comm string `json:"comm"`
	} `json:"new_parent"`
	Reaper  string `json:"reaper"`
	Pattern string `json:"pattern"`
	Lineage []struct {
		Pid  int    `json:"pid"`
		Comm string `json:"comm"`
	} `json:"lineage"`
}

func (a adoption) lineageComms() []string {
	var out []string
	for _, s := range a.Lineage {
		out = append(out, s.Comm)
	}
	return out
}

// watcher is `adoptwatch --json` (plus extra flags) run by the test.
type watcher struct {
	cmd    *exec.Cmd
	events chan adoption
	stderr *syncbuf.Buffer
}

// startWatcher starts adoptwatch and waits until it has attached.
func startWatcher(t *testing.T, extra ...string) *watcher {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	args := append([]string{"--json", "--ready-file", ready}, extra...)
	cmd := exec.Command(adoptwatch, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{cmd: cmd, events: make(chan adoption, 1024), stderr: &syncbuf.Buffer{}}
	cmd.Stderr = w.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			var a adoption
			if json.Unmarshal(sc.Bytes(), &a) == nil && a.Event == "adopt" {
				select {
				case w.events <- a:
				default: // the tests look for one adoption; others may be dropped
				}
			}
		}
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(attachTimeout)
	for {
		if _, err := os.Stat(ready); err == nil {
			return w
		}
		select {
		case <-exited:
			t.Fatalf("adoptwatch %s exited before it was ready: %s", strings.Join(args, " "), w.stderr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("adoptwatch not ready after %v: %s", attachTimeout, w.stderr)
		}
	}
}

// adoptionOf waits for the adoption of pid.
func (w *watcher) adoptionOf(t *testing.T, pid int) adoption {
	t.Helper()
	timeout := time.After(eventTimeout)
	for {
		select {
		case a := <-w.events:
			if a.Pid == pid {
				return a
			}
		case <-timeout:
			t.Fatalf("adoptwatch reported no adoption of %d within %v; stderr: %s", pid, eventTimeout, w.stderr)
		}
	}
}

// helpMentions reports whether adoptwatch's --help (of a subcommand, if
// given) names flag: how the tests tell whether a feature has landed.
func helpMentions(t *testing.T, flag string, sub ...string) bool {
	t.Helper()
	out, _ := run(t, 30*time.Second, adoptwatch, append(sub, "--help")...)
	return strings.Contains(out, flag)
}

// launchDaemon runs the fixture's launcher directly (a child of this test,
// in no service of its own): it double-forks the daemon and exits once the
// middle has; the daemon is adopted by PID 1. It returns the daemon's and
// the middle's pids; cleanup ends the daemon.
func launchDaemon(t *testing.T, sup *fixture.Supervised) (daemon, middle int) {
	t.Helper()
	cmd := exec.Command(sup.Path("launch"), "daemon")
	cmd.Env = append(os.Environ(), sup.Env()...)
	// Not captured: the daemon inherits stderr and keeps it open for ever.
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s daemon: %v", sup.Path("launch"), err)
	}
	m, err := sup.Reports.Next("middle", eventTimeout)
	if err != nil {
		t.Fatal(err)
	}
	d, err := sup.Reports.Next("daemon", eventTimeout)
	if err != nil {
		t.Fatal(err)
	}
	daemon, middle = d.Int(0), m.Int(0)
	t.Cleanup(func() { stopDaemon(daemon) })
	return daemon, middle
}

// stopDaemon sends SIGTERM to a fixture daemon this test started, through a
// pidfd opened while /proc still names it so.
func stopDaemon(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || !strings.HasPrefix(string(comm), "aw-sd-") {
		return
	}
	unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0)
}

// gone waits until pid no longer exists (or is a zombie no one reaped yet).
func gone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		s := string(data)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && strings.HasPrefix(s[i+1:], " Z") {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
