package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/control"
)

const psUsage = `Usage: adoptwatch ps [--json] [--socket PATH]

List what a running adoptwatch follows: every adopted process still alive or
exited and not yet reaped, with when and by whom it was adopted, from whom, how
it escaped (pattern) and its lineage. Processes that were already children of a
reaper when adoptwatch started are listed as such, origin unknown.

The running adoptwatch must have been started with --control-socket [PATH].

Flags:
`

// psFlags defines ps's flags (for --help and the man page).
func psFlags(jsonOut *bool, path *string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("adoptwatch ps", pflag.ContinueOnError)
	fs.BoolVar(jsonOut, "json", false, "one JSON object per process")
	fs.StringVar(path, "socket", control.DefaultPath, "the running adoptwatch's control socket (its --control-socket `PATH`)")
	return fs
}

// psCommand is `adoptwatch ps`: one request on the watcher's control socket.
func psCommand(args []string, stdout, stderr io.Writer) int {
	var jsonOut bool
	var path string
	fs := psFlags(&jsonOut, &path)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, psUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "adoptwatch ps: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "adoptwatch ps: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if path == "" {
		fmt.Fprintf(stderr, "adoptwatch ps: --socket must name a socket\n")
		return 2
	}
	err := control.Query(path, control.Request{JSON: jsonOut}, stdout, 10*time.Second)
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ECONNREFUSED):
		fmt.Fprintf(stderr, "adoptwatch ps: no adoptwatch answers on %s (start one with --control-socket %s)\n", path, path)
		return 1
	case errors.Is(err, unix.EACCES):
		fmt.Fprintf(stderr, "adoptwatch ps: %s: permission denied (the control socket is root's)\n", path)
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "adoptwatch ps: %v\n", err)
		return 1
	}
	return 0
}
