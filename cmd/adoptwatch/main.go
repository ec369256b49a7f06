// Command adoptwatch reports every process adopted by init, a child subreaper
// or a pid namespace's reaper, with the lineage that explains where it came
// from, as it happens. See `adoptwatch --help`.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch picks the subcommand; without one, adoptwatch watches.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "features":
			return featuresCommand(args[1:], stdout, stderr)
		case "run":
			return runCommand(args[1:], stdout, stderr)
		case "unwatch":
			return unwatchCommand(args[1:], stdout, stderr)
		case "gen-man": // hidden: writes adoptwatch(8) for dist/ (go generate)
			return genManCommand(stdout, stderr)
		case "help":
			return watchCommand([]string{"--help"}, stdout, stderr)
		}
	}
	return watchCommand(args, stdout, stderr)
}

// fail prints one line and returns the exit status for errors.
func fail(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "adoptwatch: "+format+"\n", args...)
	return 1
}
