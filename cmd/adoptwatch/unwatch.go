package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/adoptwatch/adoptwatch/loader"
)

const unwatchUsage = `Usage: adoptwatch unwatch [--pin-dir DIR] PID...

Switch the trees of running processes off in a running adoptwatch: each PID,
its descendants and everything they fork from now on are no longer watched
(no adoption records, no fork/exec/exit records). The running adoptwatch must
have been started with --pin, which pins its watch maps under DIR
(default ` + loader.DefaultPinDir + `, on the BPF file system).

Flags:
`

// unwatchFlags defines unwatch's flags, for --help and the man page.
func unwatchFlags(pinDir *string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("adoptwatch unwatch", pflag.ContinueOnError)
	fs.StringVar(pinDir, "pin-dir", loader.DefaultPinDir, "where the running adoptwatch pinned its maps")
	return fs
}

// unwatchCommand is `adoptwatch unwatch PID...`: it reaches the running
// watcher's kernel maps through their pins; no socket, no daemon protocol.
func unwatchCommand(args []string, stdout, stderr io.Writer) int {
	var pinDir string
	fs := unwatchFlags(&pinDir)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, unwatchUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		for _, a := range args {
			if _, numErr := strconv.Atoi(a); numErr == nil && strings.HasPrefix(a, "-") {
				return usageError(stderr, "adoptwatch unwatch", "%q is not a pid", a) // not a flag either
			}
		}
		return usageError(stderr, "adoptwatch unwatch", "%v (see adoptwatch unwatch --help)", err)
	}
	if fs.NArg() == 0 {
		return usageError(stderr, "adoptwatch unwatch", "no PID given (see adoptwatch unwatch --help)")
	}
	if pinDir == "" {
		return usageError(stderr, "adoptwatch unwatch", "--pin-dir: empty path")
	}
	var pids []int
	for _, a := range fs.Args() {
		pid, err := strconv.Atoi(a)
		if err != nil || pid <= 0 {
			return usageError(stderr, "adoptwatch unwatch", "%q is not a pid", a)
		}
		pids = append(pids, pid)
	}
	status := 0
	for _, pid := range pids {
		if err := loader.UnwatchPinned(pinDir, pid); err != nil {
			fmt.Fprintf(stderr, "adoptwatch unwatch: %v\n", err)
			status = 1
			continue
		}
		if owner, err := loader.PinOwner(pinDir); err == nil && owner > 0 {
			fmt.Fprintf(stdout, "unwatched %d and its descendants in adoptwatch pid %d\n", pid, owner)
		} else {
			fmt.Fprintf(stdout, "unwatched %d and its descendants\n", pid)
		}
	}
	return status
}
