package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/supervise"
)

const runUsage = `Usage: adoptwatch run [flags] -- CMD [ARGS...]

Starts CMD (for example "apachectl start"), follows its process tree through
forks and setsid, identifies the daemon it leaves behind, and stays in the
foreground as long as that daemon lives: a forking daemon becomes supervisable
by anything that expects a foreground process (an init, a container runtime).

The daemon is the adopted process that is still alive once CMD has exited and
its process tree has been quiet (no process adopted, none exited) for --settle;
if several are, the first adopted. With --pidfile, the pid file must name it.
Processes the daemon forks are its workers, not new daemons. If the daemon exits
with code 0 without having been asked to stop, and a process it forked was
adopted and is still alive --settle later (it re-daemonised), run follows that
one and says so; a daemon that re-executes itself keeps its pid and is followed.

By default run is a child subreaper: the daemon and every other orphan of the
tree are adopted by run, which reaps them (no zombies remain). When run exits,
it sends SIGTERM to the processes still adopted by it (SIGKILL after
--stop-timeout). With --no-subreaper, the daemon is adopted by init (or a
subreaper above run) and run follows it through a pidfd, learning its exit
status from the kernel's exit record.

If run itself is killed with SIGKILL it can do nothing: the daemon and its
workers live on, adopted by the next reaper up (init), unsupervised. With
--kill-tree-on-exit, CMD starts in a cgroup v2 of its own, and a guardian
process that the kernel signals when run dies (PR_SET_PDEATHSIG) kills that
cgroup (cgroup.kill) and removes it: whatever CMD started dies with run,
however run exits. A process that moves itself to another cgroup escapes it.

SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2 and SIGQUIT go to the daemon. Before
it is identified, SIGTERM, SIGINT and SIGQUIT go to CMD and the processes
adopted so far; the others wait for the daemon.

run prints on stderr one line when it has identified the daemon (pid, comm,
lineage) and one when the daemon ends. Under systemd (a Type=notify unit:
NOTIFY_SOCKET is set) it sends MAINPID=<daemon>, STATUS= and READY=1 in one
message once the daemon is identified, and STOPPING=1 when asked to stop;
CMD does not inherit NOTIFY_SOCKET. --notify-fd is s6's readiness instead.

Exit status: the daemon's (128+N if killed by signal N); CMD's, if it failed
and left no daemon; 128+N if stopped by signal N before a daemon was identified; 127 if CMD is not found, 126 if it cannot be executed;
1 if no daemon was identified within --timeout, if CMD succeeded but left no
daemon, or if adoptwatch itself cannot run (needs root and a BTF kernel).

Flags:
`

// runFlags defines run's flags: the one definition that --help and the man
// page (gen-man) both print.
func runFlags(cfg *supervise.Config, hook *string, svc *serviceFlags) *pflag.FlagSet {
	fs := pflag.NewFlagSet("adoptwatch run", pflag.ContinueOnError)
	fs.SortFlags = false
	// Flags stop at CMD: its own flags are not run's.
	fs.SetInterspersed(false)
	fs.DurationVar(&cfg.Settle, "settle", supervise.DefaultSettle, "quiet time after CMD exits before the daemon is chosen")
	fs.DurationVar(&cfg.Timeout, "timeout", supervise.DefaultTimeout, "give up if no daemon is identified within this time")
	fs.StringVar(&cfg.PIDFile, "pidfile", "", "the daemon's pid `FILE`: the daemon is the adopted process it names")
	fs.BoolVar(&cfg.NoSubreaper, "no-subreaper", false, "let init adopt the daemon; follow it through a pidfd (for pairing with an existing init)")
	fs.BoolVar(&cfg.KillTreeOnExit, "kill-tree-on-exit", false, "when run exits, however it exits (even SIGKILL), SIGKILL what CMD started (a cgroup v2 of its own; Linux 5.14+)")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", supervise.DefaultStopTimeout, "when run exits, SIGKILL leftover processes that ignore SIGTERM this long")
	fs.StringVar(hook, "hook", "auto", "adoption hook: auto, exact or exit-walk")
	fs.BoolVarP(&cfg.Verbose, "verbose", "v", false, "also print every adoption, reaped process and forwarded signal")
	svc.add(fs, "the daemon is identified")
	return fs
}

// runCommand is `adoptwatch run [flags] -- CMD [ARGS...]`: supervise a forking
// daemon in the foreground (internal/supervise).
func runCommand(args []string, stdout, stderr io.Writer) int {
	cfg := supervise.Config{}
	var hook string
	var svc serviceFlags
	fs := runFlags(&cfg, &hook, &svc)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stdout, runUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return usageError(stderr, "adoptwatch run", "%v (see adoptwatch run --help)", err)
	}
	if fs.NArg() == 0 {
		return usageError(stderr, "adoptwatch run", "no command given (see adoptwatch run --help)")
	}
	var err error
	if cfg.Hook, err = events.ParseHook(hook); err != nil {
		return usageError(stderr, "adoptwatch run", "%v", err)
	}
	if cfg.Settle < 0 || cfg.Timeout <= 0 || cfg.StopTimeout < 0 {
		return usageError(stderr, "adoptwatch run", "--settle and --stop-timeout must not be negative, --timeout must be positive")
	}
	if cfg.Notify, err = svc.notifier(fs, stderr); err != nil {
		fmt.Fprintf(stderr, "adoptwatch run: %v\n", err)
		return 2
	}
	cfg.Command = fs.Args()
	cfg.Stdin, cfg.Stdout, cfg.Stderr = os.Stdin, os.Stdout, os.Stderr
	cfg.Log = stderr
	code := supervise.Run(cfg)
	cfg.Notify.Flush(time.Second) // STOPPING=1 and what else is queued, if the manager takes it
	return code
}
