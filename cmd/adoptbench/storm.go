package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/bench"
)

// sysctl sets a /proc/sys value and returns a function that restores it.
func sysctl(name, value string) (restore func(), err error) {
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	old, err := os.ReadFile(path)
	if err != nil {
		return func() {}, err
	}
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		return func() {}, err
	}
	restore = func() { os.WriteFile(path, old, 0) }
	restoreOnSignal(restore)
	return restore, nil
}

var (
	restoreMu sync.Mutex
	restores  []func()
	sigOnce   sync.Once
)

// restoreOnSignal makes SIGINT/SIGTERM put changed sysctls back before exiting
// (deferred restores do not run then).
func restoreOnSignal(f func()) {
	restoreMu.Lock()
	restores = append(restores, f)
	restoreMu.Unlock()
	sigOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			<-ch
			restoreMu.Lock()
			for _, r := range restores {
				r()
			}
			os.Exit(130)
		}()
	})
}

// runStorm: double forks as fast as possible under adoptwatch watching all.
func runStorm(exe string, cfg benchConfig) []bench.Target {
	fmt.Println()
	fmt.Printf("Fork storm: double-fork daemonisations as fast as possible for %v, adoptwatch watching all\n", cfg.storm)
	return latencyRun(exe, cfg, "storm", cfg.storm, 0, time.Millisecond, true)
}

// runQuiet: a few adoptions a second, each alone: the latency a reaper sees
// when nothing else is going on.
func runQuiet(exe string, cfg benchConfig) []bench.Target {
	fmt.Println()
	fmt.Printf("Quiet: %d double-fork daemonisations a second for %v, adoptwatch watching all\n", cfg.quietRate, cfg.quiet)
	return latencyRun(exe, cfg, "quiet", cfg.quiet, cfg.quietRate, 100*time.Microsecond, false)
}

// latencyRun runs the double fork under adoptwatch's reader (loader.Observer
// in an observer process) and checks loss, duplicates and the p99 latency.
func latencyRun(exe string, cfg benchConfig, name string, dur time.Duration, rate int, p99Max time.Duration, progStats bool) []bench.Target {
	restore, err := sysctl("kernel.bpf_stats_enabled", "1")
	defer restore()
	statsOK := err == nil && progStats
	p, err := startObserver(exe, "aw-all")
	if err != nil {
		fmt.Printf("  cannot start adoptwatch: %v\n", err)
		return []bench.Target{{Name: name}}
	}
	obs := procObserver{p}
	defer obs.stop()
	m, res, err := runOnce(exe, wlDouble, dur, rate, cfg.cpu, obs, false)
	if err != nil {
		fmt.Printf("  %s failed: %v\n", name, err)
		return []bench.Target{{Name: name}}
	}
	seg := m.seg
	var t bench.Table
	t.Header = []string{"expected", "reported", "duplicates", "lost (kernel)", "rate", "latency p50", "p99", "max"}
	t.Add(fmt.Sprint(res.Cycles), fmt.Sprint(seg.Adoptions), fmt.Sprint(seg.Dupes), fmt.Sprint(seg.Lost),
		bench.FormatRate(m.rate), time.Duration(seg.P50).String(), time.Duration(seg.P99).String(), time.Duration(seg.Max).String())
	t.Write(os.Stdout)
	fmt.Println("  latency: from the kernel's adoption timestamp (CLOCK_BOOTTIME, converted once to wall time) to the reader goroutine")
	var mem memReport
	if statsOK && p.send("mem") == nil && p.json(&mem) == nil {
		fmt.Printf("  BPF programs during the %s (kernel.bpf_stats_enabled=1, restored after):\n", name)
		var pt bench.Table
		pt.Header = []string{"program", "runs", "ns/run", "total ms", "µs per adoption"}
		for _, p := range mem.Programs {
			per := 0.0
			if p.RunCount > 0 {
				per = float64(p.RunTime) / float64(p.RunCount)
			}
			pt.Add(p.Name, fmt.Sprint(p.RunCount), fmt.Sprintf("%.0f", per), fmt.Sprintf("%.1f", float64(p.RunTime)/1e6),
				fmt.Sprintf("%.2f", float64(p.RunTime)/1e3/float64(max(res.Cycles, 1))))
		}
		pt.Write(indent{os.Stdout})
	}
	return []bench.Target{
		{Name: name + ": zero adoptions lost", Known: true, Pass: seg.Lost == 0, Detail: fmt.Sprintf("%d lost", seg.Lost)},
		{Name: name + ": each adoption reported exactly once", Known: true,
			Pass:   seg.Adoptions == res.Cycles && seg.Dupes == 0,
			Detail: fmt.Sprintf("%d of %d, %d duplicates", seg.Adoptions, res.Cycles, seg.Dupes)},
		{Name: fmt.Sprintf("%s: p99 kernel→user latency < %v", name, p99Max), Known: seg.Adoptions > 0,
			Pass: time.Duration(seg.P99) < p99Max, Detail: time.Duration(seg.P99).String()},
	}
}

type indent struct{ w *os.File }

func (i indent) Write(p []byte) (int, error) {
	s := strings.ReplaceAll(string(p), "\n", "\n    ")
	if strings.HasSuffix(s, "    ") {
		s = s[:len(s)-4]
	}
	_, err := i.w.WriteString("    " + s)
	return len(p), err
}
