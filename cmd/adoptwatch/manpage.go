package main

//go:generate sh -c "go run . gen-man > ../../dist/adoptwatch.8"

import (
	"fmt"
	"io"
	"strings"

	"github.com/adoptwatch/adoptwatch/internal/journal"
	"github.com/adoptwatch/adoptwatch/internal/manpage"
	"github.com/adoptwatch/adoptwatch/internal/supervise"
	"github.com/adoptwatch/adoptwatch/loader"
)

// genManCommand writes adoptwatch(8), as dist/adoptwatch.8 holds it.
func genManCommand(stdout, stderr io.Writer) int {
	if err := manpage.Render(stdout, manPage()); err != nil {
		fmt.Fprintf(stderr, "adoptwatch gen-man: %v\n", err)
		return 1
	}
	return 0
}

// manPage is adoptwatch(8). Its flags come from the constructors the
// commands parse with, and its prose from their --help texts, so the page
// says what --help says.
func manPage() manpage.Page {
	var wopts watchOptions
	var whook, rhook, pinDir string
	var rcfg supervise.Config
	var rsvc serviceFlags
	return manpage.Page{
		Name:    "adoptwatch",
		Section: "8",
		Summary: "report every process adopted by init, a child subreaper or a pid namespace reaper, with its lineage",
		Source:  "adoptwatch",
		Manual:  "System Administration",
		Synopsis: []string{
			"adoptwatch [flags]",
			"adoptwatch features",
			"adoptwatch unwatch [--pin-dir DIR] PID...",
			"adoptwatch run [flags] -- CMD [ARGS...]",
		},
		Description: helpProse(watchUsage),
		Commands: []manpage.Command{
			{Name: "adoptwatch", Usage: "adoptwatch [flags]", Flags: watchFlags(&wopts, &whook)},
			{Name: "adoptwatch features", Usage: "adoptwatch features", Text: helpProse(featuresUsage)},
			{Name: "adoptwatch unwatch", Usage: "adoptwatch unwatch [--pin-dir DIR] PID...", Text: helpProse(unwatchUsage), Flags: unwatchFlags(&pinDir)},
			{Name: "adoptwatch run", Usage: "adoptwatch run [flags] -- CMD [ARGS...]", Text: helpProse(runUsage), Flags: runFlags(&rcfg, &rhook, &rsvc)},
		},
		Sections: []manpage.Section{
			{Heading: "Service managers", Text: serviceText},
			{Heading: "Environment", Text: environmentText},
			{Heading: "Files", Text: fmt.Sprintf(filesText, journal.SocketPath, loader.DefaultPinDir)},
			{Heading: "Exit status", Text: exitText},
			{Heading: "See also", Text: "systemd.service(5), systemd.exec(5), sd_notify(3), journalctl(1), systemd.journal-fields(7), s6-supervise(8), prctl(2) (PR_SET_CHILD_SUBREAPER), pidfd_open(2). The README of the adoptwatch sources documents the JSON schema, the signal ABI and the subscriber protocol."},
		},
	}
}

// helpProse is a --help text without its usage lines and its closing "Flags:".
func helpProse(usage string) string {
	var out []string
	for i, l := range strings.Split(usage, "\n") {
		if strings.HasPrefix(l, "Usage:") || (i < 8 && strings.HasPrefix(l, "       adoptwatch")) || l == "Flags:" {
			continue
		}
		out = append(out, l)
	}
	return strings.Trim(strings.Join(out, "\n"), "\n")
}

const serviceText = `adoptwatch and adoptwatch run speak systemd's notification protocol when NOTIFY_SOCKET is set (Type=notify units), and s6's readiness convention with --notify-fd N (a newline written to descriptor N, which is then closed).

The watcher sends READY=1 once its programs are attached, STATUS= with the hook and the scope, WATCHDOG=1 every half WatchdogSec= when the unit sets one, and STOPPING=1 on SIGTERM or SIGINT. dist/adoptwatch.service is such a unit, with CAP_BPF and CAP_PERFMON only.

adoptwatch run sends STATUS=waiting for the daemon, then, once the daemon is identified, MAINPID= (the daemon), STATUS=following PID COMM and READY=1 in one message: with NotifyAccess=main (the default of Type=notify) systemd accepts it because run is still the main process when it sends it. Later messages (STOPPING=1, a second MAINPID= for a daemon that re-daemonised) come from a process that is no longer the main one: systemd takes them only with NotifyAccess=all. Note that systemd stops a unit as soon as its main process exits, so a daemon that re-daemonises (exits 0 after starting its successor) ends its unit before run can name the successor. NOTIFY_SOCKET is not passed on to CMD. Under systemd, use --no-subreaper: systemd then adopts and reaps the daemon and records its exit status.

A NOTIFY_SOCKET that cannot be reached is reported once on stderr; adoptwatch carries on.

With --journal each adoption is one journal entry (SYSLOG_IDENTIFIER=adoptwatch, PRIORITY=6) with the fields ADOPTWATCH_EVENT, ADOPTWATCH_PID, ADOPTWATCH_COMM, ADOPTWATCH_START, ADOPTWATCH_PREV_PARENT, ADOPTWATCH_PREV_PARENT_COMM, ADOPTWATCH_NEW_PARENT, ADOPTWATCH_NEW_PARENT_COMM, ADOPTWATCH_REAPER_KIND, ADOPTWATCH_PATTERN, ADOPTWATCH_HOOK and ADOPTWATCH_LINEAGE:

  journalctl -t adoptwatch ADOPTWATCH_REAPER_KIND=init`

const environmentText = `NOTIFY_SOCKET: the service manager's notification socket (set by systemd for Type=notify units).

WATCHDOG_USEC, WATCHDOG_PID: the watchdog period set by WatchdogSec=, for this process.`

const filesText = `%s: the journal's socket, for --journal.

%s: where --pin pins the watch maps (--pin-dir).

/run/adoptwatch/adoptwatch.sock: the subscriber socket of the shipped unit.`

const exitText = `0 once stopped by SIGINT or SIGTERM; 2 for bad flags (one line on stderr); 1 when privileges, kernel support or a resource named by a flag (--journal, --socket) is missing (one line on stderr). adoptwatch run exits with the daemon's status (see above).`
