// Package journaltest is a stand-in journald for tests: a datagram socket
// that receives native journal entries and parses them field by field, and
// the private mount namespace that puts it where go-systemd's journal client
// always sends (/run/systemd/journal/socket) without touching the machine's
// /run or a real journal.
package journaltest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Parse parses one entry of journald's native protocol: "NAME=value\n", or,
// for values that may hold newlines, "NAME\n", a 64-bit little-endian
// length, the value, "\n". A field sent twice is an error.
func Parse(b []byte) (map[string]string, error) {
	fields := map[string]string{}
	for len(b) > 0 {
		i := bytes.IndexAny(b, "=\n")
		if i <= 0 {
			return nil, fmt.Errorf("no field name at %q", b)
		}
		name := string(b[:i])
		var value string
		if b[i] == '=' {
			end := bytes.IndexByte(b[i+1:], '\n')
			if end < 0 {
				return nil, fmt.Errorf("%s: no newline after the value", name)
			}
			value, b = string(b[i+1:i+1+end]), b[i+1+end+1:]
		} else {
			rest := b[i+1:]
			if len(rest) < 8 {
				return nil, fmt.Errorf("%s: short length", name)
			}
			n := binary.LittleEndian.Uint64(rest)
			if uint64(len(rest)-8) < n+1 || rest[8+n] != '\n' {
				return nil, fmt.Errorf("%s: value of %d bytes not followed by a newline", name, n)
			}
			value, b = string(rest[8:8+n]), rest[8+n+1:]
		}
		if _, dup := fields[name]; dup {
			return nil, fmt.Errorf("field %s twice", name)
		}
		fields[name] = value
	}
	return fields, nil
}

// Journal is the test's journald: a datagram socket named "socket" in Dir.
type Journal struct {
	Dir  string
	conn *net.UnixConn
}

// Listen creates the socket in a fresh temporary directory; it is closed when
// the test ends.
func Listen(t testing.TB) *Journal {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "socket"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Journal{Dir: dir, conn: conn}
}

// Next returns the next entry, parsed, and its bytes; ok=false if none came
// within timeout.
func (j *Journal) Next(t testing.TB, timeout time.Duration) (fields map[string]string, raw []byte, ok bool) {
	t.Helper()
	buf := make([]byte, 1<<16)
	j.conn.SetReadDeadline(time.Now().Add(timeout))
	n, err := j.conn.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, nil, false
	}
	if err != nil {
		t.Fatalf("journal socket: %v", err)
	}
	fields, err = Parse(buf[:n])
	if err != nil {
		t.Fatalf("not the native journal protocol: %v: %q", err, buf[:n])
	}
	return fields, buf[:n], true
}

// EnvPrivateRun, in a process's environment, asks PrivateRun (called at its
// start) to give it a private /run: "none" for an empty one (no journal),
// or a Journal's Dir to put at /run/systemd/journal.
const EnvPrivateRun = "ADOPTWATCH_TEST_PRIVATE_RUN"

// PrivateRun mounts, in this process's mount namespace (which must be a
// private one: start the process with Unshareflags CLONE_NEWNS), an empty
// tmpfs on /run, and the directory EnvPrivateRun names on
// /run/systemd/journal. It does nothing when EnvPrivateRun is unset.
func PrivateRun() error {
	dir := os.Getenv(EnvPrivateRun)
	if dir == "" {
		return nil
	}
	os.Unsetenv(EnvPrivateRun)
	if err := os.MkdirAll("/run", 0o755); err != nil { // an initramfs may have none
		return err
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("tmpfs on /run: %w", err)
	}
	if dir == "none" {
		return nil
	}
	if err := os.MkdirAll("/run/systemd/journal", 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dir, "/run/systemd/journal", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on /run/systemd/journal: %w", dir, err)
	}
	return nil
}
