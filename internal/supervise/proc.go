package supervise

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// openIfSame opens a pidfd on pid if it is still the process id names. Once
// open, the pidfd refers to that process even if the pid is reused later.
func openIfSame(id procfs.ID) (int, bool) {
	fd, err := unix.PidfdOpen(int(id.PID), 0)
	if err != nil {
		return -1, false
	}
	if !procfs.Running(id) {
		unix.Close(fd)
		return -1, false
	}
	return fd, true
}

// readPidfile returns the pid a pid file names (0 if missing or malformed).
func readPidfile(path string) uint32 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// exitCode turns a wait(2) status into run's exit code, as shells do:
// the exit code, or 128+N for a process killed by signal N.
func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// resolveCommand finds CMD as a shell would: a name without a slash in $PATH.
// It returns the exit code for failures: 127 not found, 126 not executable.
func resolveCommand(name string) (string, int, error) {
	path := name
	if !strings.Contains(name, "/") {
		for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
			if dir == "" {
				dir = "."
			}
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && unix.Access(p, unix.X_OK) == nil {
				return p, 0, nil
			}
		}
		return "", ExitNotFound, fmt.Errorf("%s: command not found", name)
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", ExitNotFound, fmt.Errorf("%s: no such file", name)
	case err != nil:
		return "", ExitNotExecutable, err
	case st.IsDir() || unix.Access(path, unix.X_OK) != nil:
		return "", ExitNotExecutable, fmt.Errorf("%s: not executable", name)
	}
	return path, 0, nil
}
