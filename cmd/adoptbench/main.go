// Command adoptbench measures what watching adoptions costs, side by side with
// the alternatives, on this machine: fork, fork+exec and double-fork workloads
// under no observer, adoptwatch (everything, or an unrelated tree only), a
// proc-connector listener, a ptrace follower and (if installed) bpftrace or
// forkstat; then a fork storm (loss, duplicates, latency) and the memory
// adoptwatch needs for 10,000 and 100,000 watched processes. It prints one
// table and PASS/MISS lines for the project's targets. Needs root.
//
// Every measurement runs in child processes (workload pinned to one CPU, the
// observer in its own process), configurations alternate within each round so
// noise hits them alike, and ratios are taken per round before the median.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	// Child roles: the same binary, re-executed.
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "__") {
		if err := child(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "adoptbench %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	var cfg benchConfig
	flag.IntVar(&cfg.rounds, "rounds", 5, "rounds of all configurations (median and spread over rounds)")
	flag.DurationVar(&cfg.measure, "measure", 600*time.Millisecond, "duration of one workload under one configuration")
	flag.DurationVar(&cfg.storm, "storm", 10*time.Second, "fork storm duration (0: skip)")
	flag.StringVar(&cfg.memory, "memory", "10000", "watched live processes for the memory test, e.g. 10000,100000 (empty: skip)")
	flag.IntVar(&cfg.cpu, "cpu", 1, "CPU to pin workloads to (-1: no pinning)")
	flag.StringVar(&cfg.only, "only", "", "comma-separated configurations to run (default: all available)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "adoptbench: needs root (BPF, ptrace, the proc connector, sysctls)")
		os.Exit(1)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "adoptbench: %v\n", err)
		os.Exit(1)
	}
}

func child(role string, args []string) error {
	switch role {
	case "__workload":
		if len(args) != 3 {
			return fmt.Errorf("usage: __workload KIND DURATION CPU")
		}
		d, err := time.ParseDuration(args[1])
		if err != nil {
			return err
		}
		cpu, _ := strconv.Atoi(args[2])
		return runWorkload(args[0], d, cpu)
	case "__observer":
		if len(args) < 1 {
			return fmt.Errorf("usage: __observer MODE [ARGS]")
		}
		return runObserver(args[0], args[1:])
	case "__ptrace":
		return runPtracer(args)
	case "__idle":
		return runIdle()
	case "__sleepers":
		n, err := strconv.Atoi(args[0])
		if err != nil {
			return err
		}
		return runSleepers(n)
	}
	return fmt.Errorf("unknown role %s", role)
}
