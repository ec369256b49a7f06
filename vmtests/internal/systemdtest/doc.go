// Package systemdtest holds only tests: see systemd_test.go. vmtest runs them
// in the VMs where Debian's systemd is PID 1 (ADOPTWATCH_SYSTEMD=1), as a
// service of that systemd; everywhere else they skip.
package systemdtest
