package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

// TestPinTwoWatchers: with a watcher running on a pin directory, a second one
// refuses to start and unwatch reaches the first; once the first is killed
// (no cleanup at all), unwatch says the pins are stale, and the next watcher
// takes them over and says so.
func TestPinTwoWatchers(t *testing.T) {
	testsupport.RequireBPF(t)
	fs := t.TempDir()
	if err := unix.Mount("bpf", fs, "bpf", 0, ""); err != nil {
		t.Skipf("cannot mount a BPF file system: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(fs, unix.MNT_DETACH) })
	dir := filepath.Join(fs, "aw")
	unwatch := func() (int, string, string) {
		var out, errb bytes.Buffer
		code := dispatch([]string{"unwatch", "--pin-dir", dir, itoa(os.Getpid())}, &out, &errb)
		return code, out.String(), errb.String()
	}

	first := startCLI(t, "--pin", "--pin-dir", dir)
	first.waitReady(t)
	second := startCLI(t, "--pin", "--pin-dir", dir)
	if code := second.exitCode(t, 30*time.Second); code != 1 {
		t.Errorf("second watcher exited %d, want 1", code)
	}
	errText := strings.TrimSpace(second.stderr.Text())
	if strings.Contains(errText, "\n") || !strings.Contains(errText, "another adoptwatch is running") ||
		!strings.Contains(errText, "pid "+itoa(first.cmd.Process.Pid)) {
		t.Errorf("second watcher said %q, want one line naming pid %d", errText, first.cmd.Process.Pid)
	}
	code, out, errOut := unwatch()
	if code != 0 || !strings.Contains(out, "in adoptwatch pid "+itoa(first.cmd.Process.Pid)) {
		t.Errorf("unwatch with the first watcher running: %d %q %q", code, out, errOut)
	}

	first.cmd.Process.Signal(unix.SIGKILL) // leaves its pins behind
	first.exitCode(t, 10*time.Second)
	if _, err := os.Stat(filepath.Join(dir, "lineages")); err != nil {
		t.Fatalf("the killed watcher's pins are gone: %v", err)
	}
	code, out, errOut = unwatch()
	if code != 1 || !strings.Contains(errOut, "stale pins") || out != "" {
		t.Errorf("unwatch on stale pins: %d %q %q, want 1 and a word on stale pins", code, out, errOut)
	}

	third := startWatching(t, "--pin", "--pin-dir", dir)
	if !hasStderr(third, "replaced stale pins at "+dir, 5*time.Second) {
		t.Errorf("the takeover of stale pins was not reported:\n%s", third.stderr.Text())
	}
	code, out, errOut = unwatch()
	if code != 0 || !strings.Contains(out, "in adoptwatch pid "+itoa(third.cmd.Process.Pid)) {
		t.Errorf("unwatch after the takeover: %d %q %q", code, out, errOut)
	}
	if code := third.stop(t); code != 0 {
		t.Errorf("third watcher exited %d", code)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pins left after the watcher exited: %v", err)
	}
}
