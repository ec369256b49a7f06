package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestBadInput: every bad flag or argument exits 2 with one line on stderr
// saying what is wrong, before anything is loaded; nothing on stdout.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, nil, 0o644)
	missing := filepath.Join(dir, "missing", "x")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--hook", "magic"}, "magic"},
		{[]string{"--pid", "0"}, "--pid 0: not a process id"},
		{[]string{"--pid", "abc"}, "invalid argument"},
		{[]string{"--notify-signal", "garbage", "--notify-pid", "1"}, "--notify-signal garbage"},
		{[]string{"--notify-pid", "abc", "--notify-signal", "RTMIN+1"}, `--notify-pid "abc": not a process id`},
		{[]string{"--notify-pid", "1"}, "come in pairs"},
		{[]string{"--notify-signal", "RTMIN+1"}, "come in pairs"},
		{[]string{"--notify-pid", "1", "--notify-signal", "KILL"}, "--notify-signal KILL"},
		{[]string{"--socket", filepath.Join(dir, "s"), "--socket-queue", "0"}, "--socket-queue 0: must be at least 1"},
		{[]string{"--socket-queue", "-5"}, "--socket-queue -5: must be at least 1"},
		{[]string{"--socket", filepath.Join(dir, "s"), "--socket-max-subscribers", "0"}, "--socket-max-subscribers 0"},
		{[]string{"--socket", filepath.Join(dir, "s"), "--socket-max-per-uid", "0"}, "--socket-max-per-uid 0"},
		{[]string{"--socket", ""}, "--socket: empty path"},
		{[]string{"--socket-group", "0"}, "--socket-group needs --socket"},
		{[]string{"--socket", filepath.Join(dir, "s"), "--socket-group", "4000000000"}, "--socket-group 4000000000"},
		{[]string{"--socket", filepath.Join(dir, "s"), "--socket-group", "no-such-group-here"}, "--socket-group no-such-group-here"},
		{[]string{"--cgroup", ""}, "--cgroup: empty path"},
		{[]string{"--cgroup", "/tmp"}, "/tmp is on "},
		{[]string{"--cgroup", "/no/such/cgroup"}, "no such cgroup"},
		{[]string{"--unit", ""}, "--unit: empty unit pattern"},
		{[]string{"--unit", "system.slice/cron.service"}, "unit names have no '/'"},
		{[]string{"--unit", "cron[.service"}, "syntax error in pattern"},
		{[]string{"--container", ""}, "--container: empty container id prefix"},
		{[]string{"--container", "3f6c*"}, `'*' is not an id character`},
		{[]string{"--container", strings.Repeat("a", 65)}, "longer than an id"},
		{[]string{"--container", "a\x1b[2J"}, `\\x1b[2J`},
		{[]string{"--pin-dir", ""}, "--pin-dir: empty path"},
		{[]string{"--pin", "--pin-dir", missing}, "its parent " + filepath.Dir(missing) + " does not exist"},
		{[]string{"--ready-file", ""}, "--ready-file: empty path"},
		{[]string{"--ready-file", missing}, "directory " + filepath.Dir(missing) + " does not exist"},
		{[]string{"--ready-file", filepath.Join(plain, "x")}, "directory " + plain + " does not exist"},
		{[]string{"--ring-size", "2147483648"}, "want a power of two from 4096 to 1073741824 (1 GiB)"},
		{[]string{"--ring-size", "5000"}, "want a power of two"},
		{[]string{"--ring-size", "1024"}, "want a power of two"},
		{[]string{"unwatch", "--bogus"}, "adoptwatch unwatch: unknown flag: --bogus"},
		{[]string{"unwatch", "-1"}, `adoptwatch unwatch: "-1" is not a pid`},
		{[]string{"unwatch", "abc"}, `"abc" is not a pid`},
		{[]string{"unwatch"}, "no PID given"},
		{[]string{"unwatch", "--pin-dir", "", "1"}, "--pin-dir: empty path"},
		{[]string{"features", "--nope"}, "adoptwatch features: unknown flag: --nope"},
		{[]string{"features", "extra"}, `adoptwatch features: unexpected argument "extra"`},
		{[]string{"run"}, "no command given"},
		{[]string{"run", "--kill-tree-on-exit=maybe", "--", "true"}, "invalid argument"},
		{[]string{"run", "--bogus", "--", "true"}, "unknown flag: --bogus"},
		{[]string{"run", "--timeout", "0", "--", "true"}, "--timeout must be positive"},
		{[]string{"run", "--hook", "magic", "--", "true"}, "magic"},
	}
	// A cgroup v1 hierarchy is refused as such: one mounted here, if any.
	if v1 := cgroupV1Mount(t); v1 != "" {
		cases = append(cases, struct {
			args []string
			want string
		}{[]string{"--cgroup", v1}, v1 + " is on a cgroup v1 hierarchy, not cgroup v2"})
	} else {
		t.Log("no cgroup v1 hierarchy is mounted here: the --cgroup case for one is left out")
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := dispatch(tc.args, &out, &errb)
		msg := errb.String()
		if code != 2 || strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") || !strings.Contains(msg, tc.want) || out.Len() != 0 {
			t.Errorf("adoptwatch %q: exit %d, stderr %q, stdout %q; want exit 2 and one line with %q",
				tc.args, code, msg, out.String(), tc.want)
		}
	}
}

// cgroupV1Mount is the mount point of a cgroup v1 hierarchy from
// /proc/self/mountinfo, or "" if none is mounted.
func cgroupV1Mount(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		before, after, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(before), strings.Fields(after)
		if ok && len(f) >= 5 && len(g) >= 1 && g[0] == "cgroup" {
			return unescapeMountinfo(f[4])
		}
	}
	return ""
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
