package procfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PidNS returns the inode of pid's pid namespace (/proc/PID/ns/pid), the
// number the kernel side reads as the namespace's ns.inum.
func PidNS(pid int) (uint64, error) {
	var st unix.Stat_t
	p := fmt.Sprintf("%s/%d/ns/pid", dir, pid)
	if err := unix.Stat(p, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	return st.Ino, nil
}

// NSpids returns pid's pids from the outermost namespace our /proc shows to
// its own (the NSpid line of /proc/PID/status): [host pid, ..., pid inside].
func NSpids(pid int) ([]uint32, error) {
	p := fmt.Sprintf("%s/%d/status", dir, pid)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "NSpid:"); ok {
			return ParseNSpid(rest)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%s: no NSpid line (kernel before 4.1)", p)
}

// ParseNSpid parses the values of a status NSpid line ("\t4242\t7\t1").
func ParseNSpid(s string) ([]uint32, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, errors.New("empty NSpid line")
	}
	pids := make([]uint32, len(fields))
	for i, f := range fields {
		v, err := strconv.ParseUint(f, 10, 32)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("bad NSpid value %q", f)
		}
		pids[i] = uint32(v)
	}
	return pids, nil
}

// Comm returns /proc/PID/comm without its newline.
func Comm(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/comm", dir, pid))
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// Exe returns the target of /proc/PID/exe, as seen from pid's own root.
func Exe(pid int) (string, error) {
	return os.Readlink(fmt.Sprintf("%s/%d/exe", dir, pid))
}

// Cmdline returns pid's arguments (/proc/PID/cmdline).
func Cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/cmdline", dir, pid))
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), nil
}

// ErrNoCgroupV2 says /proc/PID/cgroup has no cgroup v2 ("0::") line.
var ErrNoCgroupV2 = errors.New("no cgroup v2 line")

// Cgroup returns pid's cgroup v2 path (the "0::" line of /proc/PID/cgroup),
// in our cgroup namespace.
func Cgroup(pid int) (string, error) {
	p := fmt.Sprintf("%s/%d/cgroup", dir, pid)
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "0::"); ok {
			return rest, nil
		}
	}
	return "", fmt.Errorf("%s: %w", p, ErrNoCgroupV2)
}
