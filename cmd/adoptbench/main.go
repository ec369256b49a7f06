// Command adoptbench measures what watching adoptions costs, side by side with
// the alternatives, on this machine: fork, fork+exec and double-fork workloads
// (the workload its own child subreaper) under no observer, bpftrace counting
// forks and exits in the kernel (the floor for any BPF observer, if
// installed), the adoptwatch command (everything watched with text to
// /dev/null or JSON to a pipe, or an unrelated tree only), a proc-connector
// listener, forkstat (if installed) and a ptrace follower; adoptwatch's own CPU
// per adoption; then a fork storm (loss, duplicates, latency), a quiet run
// (latency at a low rate) and the memory adoptwatch needs for many watched
// processes. It prints tables and PASS/MISS lines for the project's targets.
// Needs root.
//
// Every measurement runs in child processes (the workload pinned to one CPU,
// the observers kept to the others), configurations alternate within each
// round so noise hits them alike, and ratios are taken per round before the
// median. -compare runs a second adoptwatch binary in the same rounds.
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
	flag.DurationVar(&cfg.quiet, "quiet", 10*time.Second, "duration of the quiet latency test (0: skip)")
	flag.IntVar(&cfg.quietRate, "quiet-rate", 50, "adoptions per second in the quiet latency test")
	flag.StringVar(&cfg.memory, "memory", "10000", "watched live processes for the memory test, e.g. 10000,100000 (empty: skip)")
	flag.IntVar(&cfg.cpu, "cpu", 1, "CPU to pin workloads to (-1: no pinning)")
	flag.BoolVar(&cfg.highRate, "high-rate", true, "also measure adoptwatch's CPU per adoption with the double fork on every CPU (the highest rate here)")
	flag.StringVar(&cfg.only, "only", "", "comma-separated configurations to run (default: all available)")
	flag.StringVar(&cfg.watcher, "adoptwatch", "./adoptwatch", "the adoptwatch binary to measure (make build)")
	flag.StringVar(&cfg.compare, "compare", "", "another adoptwatch `binary` to measure side by side (e.g. a build from before a change); shown, not judged")
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
		if len(args) != 4 {
			return fmt.Errorf("usage: __workload KIND DURATION CPU RATE")
		}
		d, err := time.ParseDuration(args[1])
		if err != nil {
			return err
		}
		cpu, _ := strconv.Atoi(args[2])
		rate, _ := strconv.Atoi(args[3])
		return runWorkload(args[0], d, cpu, rate)
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
