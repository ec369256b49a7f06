package pidns

// The /proc readers below belong in internal/procfs (the one /proc reader,
// being created on the arch branch); they move there when arch merges.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Inode returns the inode of pid's pid namespace (/proc/PID/ns/pid), the
// number bpf reads as task's pid namespace ns.inum.
func Inode(pid int) (uint64, error) {
	var st unix.Stat_t
	p := "/proc/" + strconv.Itoa(pid) + "/ns/pid"
	if err := unix.Stat(p, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	return st.Ino, nil
}

// NSpids returns pid's pids from the outermost namespace our /proc shows to
// its own (the NSpid line of /proc/PID/status): [host pid, ..., pid inside].
func NSpids(pid int) ([]uint32, error) {
	p := "/proc/" + strconv.Itoa(pid) + "/status"
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
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// Exe returns the target of /proc/PID/exe ("" for a kernel thread or a
// process whose exe we may not read).
func Exe(pid int) (string, error) {
	return os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
}

// Reaper describes pid's namespace reaper: the kind of program it is, read
// from its comm and exe.
func Reaper(pid int) (string, error) {
	comm, err := Comm(pid)
	if err != nil {
		return "", err
	}
	exe, _ := Exe(pid) // unreadable exe: decide by comm alone
	if comm == "busybox" {
		// "busybox sh" and the like: the applet is the program.
		if applet := busyboxApplet(pid); applet != "" {
			comm = applet
		}
	}
	return ReaperKind(comm, exe), nil
}

// busyboxApplet returns the applet a busybox process runs, from its argv:
// argv[0]'s base name unless that is busybox itself, else argv[1].
func busyboxApplet(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	if name := path.Base(args[0]); name != "busybox" && name != "." && name != "/" {
		return name
	}
	if len(args) > 1 {
		return path.Base(args[1])
	}
	return ""
}
