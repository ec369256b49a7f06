package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/adoptwatch/adoptwatch/loader"
)

const featuresUsage = `Usage: adoptwatch features

Loads and attaches each adoption hook briefly and says which this kernel supports
and which ` + "`adoptwatch --hook=auto`" + ` will use.
`

// featuresCommand prints, for each hook, whether this kernel supports it and
// which one `adoptwatch` (auto) will use. Each is tried for real.
func featuresCommand(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("adoptwatch features", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, featuresUsage)
	}
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return 0
		}
		fmt.Fprintf(stderr, "adoptwatch features: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "adoptwatch features", "unexpected argument %q", fs.Arg(0))
	}
	if err := loader.CheckPrerequisites(); err != nil {
		return fail(stderr, "%v", err)
	}
	results := loader.Probe()
	chosen := -1
	for i, r := range results {
		if r.Err == nil {
			chosen = i
			break
		}
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "HOOK\tMECHANISM\tSUPPORTED\tUSED\tDETAIL")
	for i, r := range results {
		supported, detail := "yes", ""
		if r.Err != nil {
			supported, detail = "no", r.Err.Error()
		}
		used := ""
		if i == chosen {
			used = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Hook, r.Name, supported, used, detail)
	}
	w.Flush()
	// How many copies of the fork/exec/exit programs any hook runs with here.
	fmt.Fprintln(stdout, loader.CopiesNote(loader.DetectPreemption()))
	if chosen < 0 {
		return fail(stderr, "no adoption hook works on this kernel")
	}
	return 0
}
