//go:build linux

// Package systemdtest checks adoptwatch beside a real init: Debian's systemd
// as PID 1 of a vmtest VM, the tests themselves running as one of its
// services. Adoption by PID 1 is adoption by systemd here, units start
// daemons the way they do on users' machines, and the journal is systemd's.
// Outside such a VM (ADOPTWATCH_SYSTEMD unset) every test skips.
package systemdtest

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
)

func TestMain(m *testing.M) {
	fixture.Dispatch() // the daemons' roles, by the name they run under
	os.Exit(m.Run())
}

// TestSystemdIsPID1 proves the setting the other tests take for granted.
func TestSystemdIsPID1(t *testing.T) {
	needSystemd(t)
	comm, err := os.ReadFile("/proc/1/comm")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(comm)); got != "systemd" {
		t.Fatalf("PID 1 is %q, not systemd", got)
	}
	// is-system-running exits non-zero when degraded: its output says.
	state, _ := run(t, attachTimeout, "systemctl", "is-system-running", "--wait")
	switch state {
	case "running":
	case "degraded":
		failed, _ := run(t, 30*time.Second, "systemctl", "--failed", "--no-legend", "--no-pager")
		t.Logf("system degraded; failed units:\n%s", failed)
	default:
		jobs, _ := run(t, 30*time.Second, "systemctl", "list-jobs", "--no-pager")
		t.Fatalf("system state %q, want running or degraded; jobs:\n%s", state, jobs)
	}
	if v := show(t, "adoptwatch-vmtest.service", "ActiveState"); v != "active" {
		t.Errorf("the tests' own unit is %q, not active", v)
	}
	version, _ := run(t, 30*time.Second, "systemctl", "show", "--value", "-p", "Version")
	t.Logf("systemd %s, state %s", version, state)
}

// TestForkingUnitAdoptedBySystemd starts a classic double-forking daemon
// with a plain Type=forking unit: systemd runs the launcher, which waits for
// a middle process in a new session that starts the daemon and exits. The
// daemon is adopted by PID 1, and adoptwatch must say so: new parent 1
// "systemd", reaper init, from the middle, the whole lineage; and systemd
// must have found the same process as the unit's main PID.
func TestForkingUnitAdoptedBySystemd(t *testing.T) {
	needSystemd(t)
	sup, err := fixture.NewSupervised()
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	w := startWatcher(t)

	const unit = "aw-forking.service"
	installUnit(t, unit, `[Unit]
Description=a double-forking daemon, plain Type=forking (adoptwatch vmtest)

[Service]
Type=forking
ExecStart=`+sup.Path("launch")+` daemon
`+envLines(sup.Env()...))
	systemctl(t, "start", unit)
	d, err := sup.Reports.Next("daemon", eventTimeout)
	if err != nil {
		logUnit(t, unit)
		t.Fatal(err)
	}
	m, err := sup.Reports.Next("middle", eventTimeout)
	if err != nil {
		t.Fatal(err)
	}
	daemon, middle := d.Int(0), m.Int(0)

	a := w.adoptionOf(t, daemon)
	t.Logf("adoption: pid %d %s from %d %s to %d %s (%s, %s), lineage %v",
		a.Pid, a.Comm, a.PrevParent.Pid, a.PrevParent.Comm, a.NewParent.Pid, a.NewParent.Comm, a.Reaper, a.Pattern, a.lineageComms())
	if a.NewParent.Pid != 1 || a.NewParent.Comm != "systemd" {
		t.Errorf("new parent %d %q, want 1 \"systemd\"", a.NewParent.Pid, a.NewParent.Comm)
	}
	if a.Reaper != "init" {
		t.Errorf("reaper %q, want init", a.Reaper)
	}
	if a.Comm != "aw-sd-daemon" {
		t.Errorf("adopted comm %q, want aw-sd-daemon", a.Comm)
	}
	if a.PrevParent.Pid != middle || a.PrevParent.Comm != "aw-sd-middle" {
		t.Errorf("previous parent %d %q, want the middle %d aw-sd-middle", a.PrevParent.Pid, a.PrevParent.Comm, middle)
	}
	if a.Pattern != "double-fork" {
		t.Errorf("pattern %q, want double-fork", a.Pattern)
	}
	if l := a.lineageComms(); !slices.Contains(l, "aw-sd-launch") || !slices.Contains(l, "aw-sd-middle") || len(l) == 0 || l[len(l)-1] != "aw-sd-daemon" {
		t.Errorf("lineage %v lacks launcher > middle > daemon", l)
	}
	if got := show(t, unit, "MainPID"); got != strconv.Itoa(daemon) {
		t.Errorf("systemd's MainPID %s, want the daemon %d", got, daemon)
	}

	systemctl(t, "stop", unit)
	if !gone(daemon, eventTimeout) {
		t.Errorf("daemon %d still running after systemctl stop", daemon)
	}
	if st := show(t, unit, "ActiveState"); st != "inactive" {
		t.Errorf("%s is %q after stop, want inactive", unit, st)
		logUnit(t, unit)
	}
}

// journalEntries returns the journal's entries matching the journalctl
// match arguments, as field maps, waiting until there is at least one
// (journald writes asynchronously).
func journalEntries(t *testing.T, matches ...string) []map[string]string {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		out, err := run(t, 30*time.Second, "journalctl", append([]string{"--no-pager", "-o", "json"}, matches...)...)
		if err != nil {
			t.Fatalf("journalctl %v: %v\n%s", matches, err, out)
		}
		var entries []map[string]string
		for _, line := range strings.Split(out, "\n") {
			if strings.TrimSpace(line) == "" || line[0] != '{' {
				continue
			}
			var raw map[string]any
			if err := json.Unmarshal([]byte(line), &raw); err != nil {
				t.Fatalf("journalctl -o json line %q: %v", line, err)
			}
			e := map[string]string{}
			for k, v := range raw {
				e[k] = fmt.Sprint(v) // strings; arrays only for repeated or binary fields
			}
			entries = append(entries, e)
		}
		if len(entries) > 0 {
			return entries
		}
		if time.Now().After(deadline) {
			t.Fatalf("no journal entry matching %v within %v", matches, eventTimeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

var pidToken = regexp.MustCompile(`\d+`)

// mentionsPid reports whether a field's text names pid as a number of its own.
func mentionsPid(field string, pid int) bool {
	return slices.Contains(pidToken.FindAllString(field, -1), strconv.Itoa(pid))
}

// checkJournalAdoption checks the structured fields of the journal entry
// for the fixture daemon's adoption by systemd.
func checkJournalAdoption(t *testing.T, e map[string]string, daemon, middle int) {
	t.Helper()
	var fields []string
	for k, v := range e {
		if strings.HasPrefix(k, "ADOPTWATCH_") {
			fields = append(fields, fmt.Sprintf("%s=%q", k, v))
		}
	}
	slices.Sort(fields)
	t.Logf("journal entry: MESSAGE=%q %s", e["MESSAGE"], strings.Join(fields, " "))
	want := map[string]string{
		"ADOPTWATCH_PID":         strconv.Itoa(daemon),
		"ADOPTWATCH_COMM":        "aw-sd-daemon",
		"ADOPTWATCH_REAPER_KIND": "init",
		"ADOPTWATCH_PATTERN":     "double-fork",
	}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s=%q, want %q", k, e[k], v)
		}
	}
	// A parent's pid is in ADOPTWATCH_*_PARENT, its name there too or in a
	// field of its own (*_PARENT_COMM).
	if p := e["ADOPTWATCH_NEW_PARENT"]; !mentionsPid(p, 1) {
		t.Errorf("ADOPTWATCH_NEW_PARENT=%q, want PID 1", p)
	}
	if c := e["ADOPTWATCH_NEW_PARENT_COMM"] + " " + e["ADOPTWATCH_NEW_PARENT"]; !strings.Contains(c, "systemd") {
		t.Errorf("neither ADOPTWATCH_NEW_PARENT_COMM nor ADOPTWATCH_NEW_PARENT names systemd (%q)", c)
	}
	if p := e["ADOPTWATCH_PREV_PARENT"]; !mentionsPid(p, middle) {
		t.Errorf("ADOPTWATCH_PREV_PARENT=%q, want the middle %d", p, middle)
	}
	if c := e["ADOPTWATCH_PREV_PARENT_COMM"] + " " + e["ADOPTWATCH_PREV_PARENT"]; !strings.Contains(c, "aw-sd-middle") {
		t.Errorf("neither ADOPTWATCH_PREV_PARENT_COMM nor ADOPTWATCH_PREV_PARENT names aw-sd-middle (%q)", c)
	}
	if l := e["ADOPTWATCH_LINEAGE"]; !strings.Contains(l, "aw-sd-middle") || !strings.Contains(l, "aw-sd-daemon") {
		t.Errorf("ADOPTWATCH_LINEAGE=%q lacks the middle and the daemon", l)
	}
	if e["MESSAGE"] == "" {
		t.Error("entry without MESSAGE")
	}
}

// TestJournal: `adoptwatch --journal` writes each adoption as a native
// journal entry with structured fields, so journalctl can select them.
func TestJournal(t *testing.T) {
	needSystemd(t)
	if !helpMentions(t, "--journal") {
		t.Skip("needs adoptwatch --journal (issue 14, branch sdgo): not in adoptwatch --help yet")
	}
	sup, err := fixture.NewSupervised()
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	w := startWatcher(t, "--journal")
	daemon, middle := launchDaemon(t, sup)
	e := journalEntries(t, "ADOPTWATCH_REAPER_KIND=init", "ADOPTWATCH_PID="+strconv.Itoa(daemon))
	if len(e) != 1 {
		t.Errorf("%d journal entries for the adoption of %d, want 1", len(e), daemon)
	}
	checkJournalAdoption(t, e[0], daemon, middle)
	if e[0]["_PID"] != strconv.Itoa(w.cmd.Process.Pid) {
		t.Errorf("entry from _PID %s, want the watcher %d", e[0]["_PID"], w.cmd.Process.Pid)
	}
}

// TestShippedUnit starts the repository's dist/adoptwatch.service, which
// vmtest installs in /etc/systemd/system when it exists: Type=notify, so
// `systemctl start` returns once adoptwatch said READY=1, which it must say
// only once attached: an adoption right after the start is in its journal,
// with the structured fields.
func TestShippedUnit(t *testing.T) {
	needSystemd(t)
	const unit = "adoptwatch.service"
	if _, err := os.Stat("/etc/systemd/system/" + unit); err != nil {
		t.Skip("needs dist/adoptwatch.service in the repository (issue 14, branch sdgo): vmtest installs it when it exists")
	}
	if typ := show(t, unit, "Type"); typ != "notify" && typ != "notify-reload" {
		t.Errorf("%s is Type=%s, want notify (active only once attached)", unit, typ)
	}
	sup, err := fixture.NewSupervised()
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	t.Cleanup(func() { run(t, attachTimeout, "systemctl", "stop", unit) })
	if out, err := run(t, attachTimeout, "systemctl", "start", unit); err != nil {
		logUnit(t, unit)
		t.Fatalf("systemctl start %s: %v\n%s", unit, err, out)
	}
	if st := show(t, unit, "ActiveState"); st != "active" {
		logUnit(t, unit)
		t.Fatalf("%s is %q after start, want active", unit, st)
	}
	watcherPid := show(t, unit, "MainPID")

	// At once: a watcher that reported ready before attaching misses it.
	daemon, middle := launchDaemon(t, sup)
	e := journalEntries(t, "_SYSTEMD_UNIT="+unit, "ADOPTWATCH_REAPER_KIND=init", "ADOPTWATCH_PID="+strconv.Itoa(daemon))
	checkJournalAdoption(t, e[0], daemon, middle)
	if e[0]["_PID"] != watcherPid {
		t.Errorf("entry from _PID %s, want the unit's main PID %s", e[0]["_PID"], watcherPid)
	}

	systemctl(t, "stop", unit)
	if st, res := show(t, unit, "ActiveState"), show(t, unit, "Result"); st != "inactive" || res != "success" {
		logUnit(t, unit)
		t.Errorf("%s after stop: %s, result %s; want inactive, success", unit, st, res)
	}
}

// TestRunNotifyUnit: a Type=notify unit whose command is `adoptwatch run --
// <a double-forking daemon>` becomes active once run has identified the
// daemon (MAINPID=, READY=1), with systemd's MainPID on the daemon itself, no
// PID file and no guessing; `systemctl stop` stops the daemon, and the
// daemon's exit status is what systemd records for the service.
func TestRunNotifyUnit(t *testing.T) {
	needSystemd(t)
	if !helpMentions(t, "--notify-fd", "run") {
		t.Skip("needs adoptwatch run with sd_notify support (issue 14, branch sdgo): --notify-fd not in adoptwatch run --help yet")
	}
	sup, err := fixture.NewSupervised()
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	const unit = "aw-run-notify.service"
	const termCode = 7 // the daemon's exit code on SIGTERM
	// NotifyAccess=all: once MAINPID names the daemon, run's own later
	// messages (STOPPING=1) come from a process that is not the main one.
	installUnit(t, unit, `[Unit]
Description=adoptwatch run with a double-forking daemon, Type=notify (adoptwatch vmtest)

[Service]
Type=notify
NotifyAccess=all
ExecStart=`+adoptwatch+` run -- `+sup.Path("launch")+` daemon
TimeoutStartSec=`+strconv.Itoa(int(attachTimeout.Seconds()))+`
SuccessExitStatus=`+strconv.Itoa(termCode)+`
`+envLines(append(sup.Env(), fmt.Sprintf("%s=%d", fixture.EnvSDTermCode, termCode))...))

	if out, err := run(t, attachTimeout+10*time.Second, "systemctl", "start", unit); err != nil {
		logUnit(t, unit)
		t.Fatalf("systemctl start %s: %v\n%s", unit, err, out)
	}
	// The daemon reported before run could identify it: the report is
	// there once the unit is active, or the unit was active too early.
	d, err := sup.Reports.Next("daemon", time.Second)
	if err != nil {
		t.Fatalf("%s active, but the daemon has not reported: %v", unit, err)
	}
	daemon := d.Int(0)
	if st := show(t, unit, "ActiveState"); st != "active" {
		logUnit(t, unit)
		t.Fatalf("%s is %q after start, want active", unit, st)
	}
	if got := show(t, unit, "MainPID"); got != strconv.Itoa(daemon) {
		logUnit(t, unit)
		t.Errorf("systemd's MainPID %s, want the daemon %d", got, daemon)
	}

	systemctl(t, "stop", unit)
	if r, err := sup.Reports.Next("term", eventTimeout); err != nil || r.Int(0) != daemon {
		t.Errorf("the daemon %d got no SIGTERM from systemctl stop (report %v, %v)", daemon, r, err)
	}
	if !gone(daemon, eventTimeout) {
		t.Errorf("daemon %d still running after systemctl stop", daemon)
	}
	if st := show(t, unit, "ActiveState"); st != "inactive" {
		t.Errorf("%s is %q after stop, want inactive", unit, st)
	}
	// A subtest of its own, so that the table names what is missing.
	t.Run("exit-status-reaches-systemd", func(t *testing.T) {
		// systemd reads exit statuses of its own children only; the daemon
		// is run's (or init's) child. run has to hand systemd a status it
		// can read, e.g. take MAINPID back before it exits with the
		// daemon's code.
		code, status := show(t, unit, "ExecMainCode"), show(t, unit, "ExecMainStatus")
		if code != "1" || status != strconv.Itoa(termCode) { // 1: CLD_EXITED
			logUnit(t, unit)
			t.Errorf("systemd recorded ExecMainCode=%s ExecMainStatus=%s, want 1 (exited) and the daemon's %d", code, status, termCode)
		}
	})
}
