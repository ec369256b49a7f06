package supervise

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/loader"
)

// treeGuard makes the tree's fate explicit when run dies, however it dies
// (KillTreeOnExit). No process can act after its own SIGKILL, and the kernel
// kills a whole tree by itself only when a pid namespace's init dies, which
// would take the daemon's adoption away from run. So:
//   - CMD starts in a cgroup v2 of its own, below run's (clone3 with
//     CLONE_INTO_CGROUP), and everything it forks stays there;
//   - a guardian process, forked before CMD in a session of its own, asks the
//     kernel for SIGTERM when run dies (PR_SET_PDEATHSIG: delivered however
//     run dies), then kills the cgroup (cgroup.kill, Linux 5.14) and removes it.
//
// The guardian's parent thread is kept for run's whole life: the kernel sends
// the parent-death signal when the forking thread exits, not the process.
type treeGuard struct {
	dir      string // the cgroup directory
	fd       int    // open on dir, for clone3
	guardian int    // pid
}

// newTreeGuard makes the cgroup and starts the guardian.
func newTreeGuard() (*treeGuard, error) {
	mounts := loader.CgroupV2Mounts()
	if len(mounts) == 0 {
		return nil, errors.New("--kill-tree-on-exit needs cgroup v2, and none is mounted")
	}
	own, err := ownCgroup()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(mounts[0], own, fmt.Sprintf("adoptwatch-run-%d", os.Getpid()))
	os.Remove(dir) // an empty one left by an earlier run with this pid
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--kill-tree-on-exit: make cgroup: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		os.Remove(dir)
		return nil, errors.New("--kill-tree-on-exit needs cgroup.kill (Linux 5.14 or later)")
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("--kill-tree-on-exit: %w", err)
	}
	g := &treeGuard{dir: dir, fd: fd}
	type started struct {
		pid int
		err error
	}
	ch := make(chan started, 1)
	go func() {
		// Never unlocked: this thread must live as long as run (see treeGuard).
		runtime.LockOSThread()
		pid, err := startGuardian(os.Getpid(), dir)
		ch <- started{pid, err}
		select {}
	}()
	st := <-ch
	if st.err != nil {
		g.release()
		os.Remove(dir)
		return nil, fmt.Errorf("--kill-tree-on-exit: start the guardian: %w", st.err)
	}
	g.guardian = st.pid
	return g, nil
}

// release closes the directory once CMD is started (or could not be).
func (g *treeGuard) release() {
	if g != nil && g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
}

// ownCgroup is run's own cgroup v2 path, from /proc/self/cgroup ("0::/path").
func ownCgroup() (string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return path, nil
		}
	}
	return "", errors.New("--kill-tree-on-exit: run is in no cgroup v2 (/proc/self/cgroup has no 0:: line)")
}
