package subscribe

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SocketFile is a listening Unix socket file made by ListenSocket, shared by
// the subscriber socket and the control socket so both create and remove
// their files by the same rules.
type SocketFile struct {
	ln       *net.UnixListener
	path     string
	ino, dev uint64 // the file we made, so Close removes only ours
}

// ListenSocket creates a socket file at path: mode 0600 owned by root, or
// 0660 with group gid (gid < 0: root only). An existing path is replaced only
// if it is a stale socket (nobody accepts on it; log says it was removed); a
// live socket or another kind of file is refused.
func ListenSocket(path string, gid int, log func(string, ...any)) (*SocketFile, error) {
	if err := clearStale(path, log); err != nil {
		return nil, err
	}
	// The umask makes bind create the file 0600 at once: no window in which
	// it is more open than intended. It is process-wide, so restore it now.
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // Close removes it only if it is still ours
	mode, owner := os.FileMode(0o600), 0
	if gid >= 0 {
		mode, owner = 0o660, gid
	}
	var st unix.Stat_t
	for _, step := range []func() error{
		func() error { return os.Chown(path, 0, owner) },
		func() error { return os.Chmod(path, mode) },
		func() error { return unix.Stat(path, &st) },
	} {
		if err := step(); err != nil {
			ln.Close()
			os.Remove(path)
			return nil, err
		}
	}
	return &SocketFile{ln: ln, path: path, ino: st.Ino, dev: st.Dev}, nil
}

// Accept waits for the next connection.
func (f *SocketFile) Accept() (*net.UnixConn, error) { return f.ln.AcceptUnix() }

// Close stops listening and removes the file if it is still the one
// ListenSocket made (not one a later adoptwatch put at the same path).
func (f *SocketFile) Close() {
	f.ln.Close()
	var st unix.Stat_t
	if unix.Stat(f.path, &st) == nil && st.Ino == f.ino && st.Dev == f.dev {
		os.Remove(f.path)
	}
}

// probeLine is what clearStale sends: a live adoptwatch closes such a
// connection quietly and does not count it as a subscriber or a request.
const probeLine = "probe"

func clearStale(path string, log func(string, ...any)) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket: refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte(probeLine + "\n"))
		c.Close()
		return fmt.Errorf("%s: a server is accepting connections there (another adoptwatch?): refusing to replace it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether the socket is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	log("removed stale socket %s", path)
	return nil
}
