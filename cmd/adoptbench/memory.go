package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/bench"
)

// runSleepers forks n children that pause, says "ready N", and when its stdin
// closes kills them (its own children, by pid) and reaps them. The children
// also die with it (PR_SET_PDEATHSIG).
func runSleepers(n int) error {
	unix.Setrlimit(unix.RLIMIT_NPROC, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})
	pids := make([]int, 0, n)
	var ferr error
	for i := 0; i < n; i++ {
		pid, err := bench.ForkPause()
		if err != nil {
			ferr = err
			break
		}
		pids = append(pids, pid)
	}
	if ferr != nil {
		fmt.Printf("ready %d %v\n", len(pids), ferr)
	} else {
		fmt.Printf("ready %d\n", len(pids))
	}
	io.Copy(io.Discard, os.Stdin)
	for _, pid := range pids {
		unix.Kill(pid, unix.SIGKILL)
	}
	for range pids {
		if _, err := unix.Wait4(-1, nil, 0, nil); errors.Is(err, unix.ECHILD) {
			break
		}
	}
	return nil
}

func runMemory(exe string, cfg benchConfig) []bench.Target {
	fmt.Println()
	fmt.Println("Memory: adoptwatch (watching all) with many live processes in watched trees")
	var counts []int
	maxN := 0
	for _, s := range strings.Split(cfg.memory, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err == nil && n > 0 {
			counts = append(counts, n)
			maxN = max(maxN, n)
		}
	}
	// Room for the sleepers plus what the machine runs.
	restorePid, err := raiseSysctl("kernel.pid_max", maxN+65536)
	if err != nil {
		fmt.Printf("  cannot raise kernel.pid_max: %v\n", err)
	}
	defer restorePid()
	restoreThreads, _ := raiseSysctl("kernel.threads-max", maxN+65536)
	defer restoreThreads()

	// The lineage map is preallocated: size it for the largest test.
	mapSize := 65536
	for mapSize < maxN+16384 {
		mapSize *= 2
	}
	obs, err := startObserver(exe, "aw-all "+strconv.Itoa(mapSize))
	if err != nil {
		fmt.Printf("  cannot start adoptwatch: %v\n", err)
		return []bench.Target{{Name: "memory"}}
	}
	defer obs.stop()
	var before memReport
	obs.send("mem")
	if err := obs.json(&before); err != nil {
		fmt.Printf("  observer: %v\n", err)
		return []bench.Target{{Name: "memory"}}
	}
	var t bench.Table
	t.Header = []string{"live processes", "lineage entries", "refused (map full)", "adoptwatch RSS", "BPF maps (memlock)", "lineage map", "start+stop"}
	row := func(label string, m memReport, took string) (lin, total uint64) {
		for _, mm := range m.Maps {
			total += mm.Bytes
			if mm.Name == "lineages" {
				lin = mm.Bytes
			}
		}
		t.Add(label, fmt.Sprint(m.Entries), fmt.Sprint(m.LineageFull), fmt.Sprintf("%.1f MiB", float64(m.RSSKiB)/1024),
			fmt.Sprintf("%.1f MiB", float64(total)/(1<<20)), fmt.Sprintf("%.1f MiB", float64(lin)/(1<<20)), took)
		return lin, total
	}
	linBytes, _ := row("idle machine", before, "-")
	bounded := true
	var ok []int
	for _, n := range counts {
		start := time.Now()
		sl, err := startProc(exe, []string{"__sleepers", strconv.Itoa(n)})
		if err != nil {
			fmt.Printf("  sleepers: %v\n", err)
			continue
		}
		l, _ := sl.line()
		var m memReport
		obs.send("mem")
		obs.json(&m)
		sl.stop()
		took := time.Since(start).Round(100 * time.Millisecond).String()
		f := strings.Fields(l)
		label := fmt.Sprint(n)
		if len(f) < 2 || f[1] != strconv.Itoa(n) {
			label = fmt.Sprintf("%d (only %s: %s)", n, strings.Join(f[1:2], ""), strings.Join(f[min(2, len(f)):], " "))
		} else {
			ok = append(ok, n)
		}
		row(label, m, took)
		if m.RSSKiB > before.RSSKiB+64*1024 {
			bounded = false
		}
	}
	t.Write(indent{os.Stdout})
	perEntry := float64(linBytes) / float64(mapSize)
	fmt.Printf("  Per tracked process: %.0f bytes of kernel memory (the lineage map is preallocated: %d entries × %.0f B = %.1f MiB, fixed\n"+
		"  whatever the load); adoptwatch's user space keeps nothing per process here (RSS does not grow with processes).\n"+
		"  Beyond the map's bound (loader.Options.MaxProcesses, default 65536) new processes are refused and counted.\n",
		perEntry, mapSize, perEntry, float64(linBytes)/(1<<20))
	return []bench.Target{{
		Name: "memory bounded and stated per process", Known: len(ok) > 0, Pass: bounded && len(ok) == len(counts),
		Detail: fmt.Sprintf("%.0f B/process in the kernel, fixed %.1f MiB map for %d; measured at %v live processes", perEntry, float64(linBytes)/(1<<20), mapSize, ok),
	}}
}

// raiseSysctl raises an integer sysctl to at least v; restore puts it back.
func raiseSysctl(name string, v int) (func(), error) {
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	old, err := os.ReadFile(path)
	if err != nil {
		return func() {}, err
	}
	cur, _ := strconv.Atoi(strings.TrimSpace(string(old)))
	if cur >= v {
		return func() {}, nil
	}
	return sysctl(name, strconv.Itoa(v))
}
