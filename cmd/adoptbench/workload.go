package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/bench"
)

// Workloads, each one "cycle" repeated for a fixed time.
const (
	wlFork   = "fork"   // (a) fork + exit + wait
	wlExec   = "exec"   // (b) fork + exec of a tiny static binary + exit + wait
	wlDouble = "double" // (c) double-fork daemonisation (one adoption) + reaping both
)

var workloads = []string{wlFork, wlExec, wlDouble}

var workloadTitle = map[string]string{
	wlFork:   "(a) fork+exit+wait",
	wlExec:   "(b) fork+exec+exit+wait",
	wlDouble: "(c) double fork (1 adoption)",
}

// workloadResult is what a workload process prints when done.
type workloadResult struct {
	PID      int     `json:"pid"`
	Cycles   int     `json:"cycles"`
	Seconds  float64 `json:"seconds"`
	CPUNanos int64   `json:"cpu_ns"` // user+sys of the workload and its reaped children
	Err      string  `json:"err,omitempty"`
}

// runWorkload is the workload process: pinned to one CPU, a child subreaper
// (so daemons are reaped here, never by PID 1), it waits for "go" on stdin,
// runs kind for the given time (as fast as it can, or paced at rate cycles
// per second if rate > 0) and prints one JSON result.
func runWorkload(kind string, dur time.Duration, cpu, rate int) error {
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", cpu, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return err
	}
	var cycle func() error
	switch kind {
	case wlFork:
		cycle = func() error {
			pid, err := bench.ForkExit()
			if err != nil {
				return err
			}
			return reap(pid)
		}
	case wlExec:
		dir, err := os.MkdirTemp("", "adoptbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "tiny")
		if err := os.WriteFile(path, bench.TinyELF(), 0o755); err != nil {
			return err
		}
		ex, err := bench.NewExecer(path)
		if err != nil {
			return err
		}
		cycle = func() error {
			pid, err := ex.ForkExec()
			if err != nil {
				return err
			}
			return reap(pid)
		}
	case wlDouble:
		cycle = func() error {
			middle, err := bench.DoubleFork()
			if err != nil {
				return err
			}
			if err := reap(middle); err != nil {
				return err
			}
			return reap(-1) // the adopted daemon
		}
	default:
		return fmt.Errorf("unknown workload %q", kind)
	}
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		return errors.New("no go")
	}
	res := workloadResult{PID: os.Getpid()}
	start := time.Now()
	deadline := start.Add(dur)
	for n := 0; ; n++ {
		if rate > 0 {
			next := start.Add(time.Duration(n) * time.Second / time.Duration(rate))
			if next.After(deadline) {
				break
			}
			time.Sleep(time.Until(next))
		} else if n%16 == 0 && time.Now().After(deadline) {
			break
		}
		if err := cycle(); err != nil {
			res.Err = err.Error()
			break
		}
		res.Cycles++
	}
	res.Seconds = time.Since(start).Seconds()
	res.CPUNanos = rusageCPU(unix.RUSAGE_SELF) + rusageCPU(unix.RUSAGE_CHILDREN)
	return json.NewEncoder(os.Stdout).Encode(res)
}

// reap waits for pid (or any child with -1), retrying on EINTR.
func reap(pid int) error {
	for {
		_, err := unix.Wait4(pid, nil, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err
	}
}

func rusageCPU(who int) int64 {
	var ru unix.Rusage
	if unix.Getrusage(who, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
