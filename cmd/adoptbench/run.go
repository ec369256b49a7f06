package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/bench"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/loader"
)

type benchConfig struct {
	rounds  int
	measure time.Duration
	storm   time.Duration
	memory  string
	cpu     int
	only    string
}

// observerKind names a configuration of the comparison.
type observerKind struct {
	name  string // column label
	mode  string // __observer mode; "" for special kinds
	ptr   bool   // ptrace follower
	ext   []string
	ready string // external tools: a line on stderr/stdout that means attached
}

// measurement is one workload under one configuration in one round.
type measurement struct {
	rate        float64 // cycles per second
	cpuPerCycle float64 // ns of CPU (workload + children + observer) per cycle
	seg         segment
	err         error
}

func run(cfg benchConfig) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := loader.CheckPrerequisites(); err != nil {
		return err
	}
	idle := exec.Command(exe, "__idle")
	idleIn, _ := idle.StdinPipe()
	if err := idle.Start(); err != nil {
		return err
	}
	defer func() { idleIn.Close(); idle.Wait() }()

	kinds := []observerKind{
		{name: "baseline", mode: "none"},
		{name: "adoptwatch all", mode: "aw-all"},
		{name: "adoptwatch other tree", mode: "aw-pids " + strconv.Itoa(idle.Process.Pid)},
		{name: "proc connector", mode: "cnproc"},
		{name: "ptrace follow", ptr: true},
	}
	if p, err := exec.LookPath("bpftrace"); err == nil {
		kinds = append(kinds, observerKind{name: "bpftrace count", ready: "Attaching",
			ext: []string{p, "-e", "tracepoint:sched:sched_process_fork,tracepoint:sched:sched_process_exit { @[probe] = count(); }"}})
	}
	if p, err := exec.LookPath("forkstat"); err == nil {
		kinds = append(kinds, observerKind{name: "forkstat", ext: []string{p, "-e", "all"}})
	}
	missing := []string{}
	for _, tool := range []string{"bpftrace", "forkstat"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if cfg.only != "" {
		want := map[string]bool{"baseline": true}
		for _, n := range strings.Split(cfg.only, ",") {
			want[n] = true
		}
		var kept []observerKind
		for _, k := range kinds {
			if want[k.name] {
				kept = append(kept, k)
			}
		}
		kinds = kept
	}

	fmt.Printf("adoptbench: %d rounds × %d configurations × %d workloads, %v each; workload pinned to CPU %d\n",
		cfg.rounds, len(kinds), len(workloads), cfg.measure, cfg.cpu)
	if len(missing) > 0 {
		fmt.Printf("not installed, not measured: %s\n", strings.Join(missing, ", "))
	}
	// results[kind][workload] = one measurement per round
	results := map[string]map[string][]measurement{}
	for _, k := range kinds {
		results[k.name] = map[string][]measurement{}
	}
	for r := 0; r < cfg.rounds; r++ {
		fmt.Fprintf(os.Stderr, "round %d/%d\n", r+1, cfg.rounds)
		for i := range kinds {
			k := kinds[(i+r)%len(kinds)] // rotate the order each round
			ms, err := measureKind(exe, k, cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", k.name, err)
			}
			for wl, m := range ms {
				results[k.name][wl] = append(results[k.name][wl], m)
			}
		}
	}
	targets := printComparison(kinds, results)

	if cfg.storm > 0 {
		targets = append(targets, runStorm(exe, cfg)...)
	}
	if cfg.memory != "" {
		targets = append(targets, runMemory(exe, cfg)...)
	}
	fmt.Println()
	fmt.Println("Targets")
	for _, t := range targets {
		fmt.Println("  " + t.String())
	}
	return nil
}

// proc is a child process we talk to by lines.
type proc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startProc(name string, args []string, extra ...*os.File) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = extra
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &proc{cmd: cmd, in: in, out: bufio.NewReader(out)}, nil
}

func (p *proc) send(line string) error {
	_, err := io.WriteString(p.in, line+"\n")
	return err
}

func (p *proc) line() (string, error) {
	s, err := p.out.ReadString('\n')
	return strings.TrimSpace(s), err
}

func (p *proc) json(v any) error {
	s, err := p.line()
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(s), v)
}

func (p *proc) stop() error {
	p.in.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill() // our own child, by pid
		return <-done
	}
}

// startObserver runs an observer process and waits until it is attached.
func startObserver(exe, mode string) (*proc, error) {
	args := append([]string{"__observer"}, strings.Fields(mode)...)
	p, err := startProc(exe, args)
	if err != nil {
		return nil, err
	}
	if l, err := p.line(); err != nil || l != "ready" {
		p.stop()
		return nil, fmt.Errorf("observer %s did not start (%q, %v)", mode, l, err)
	}
	return p, nil
}

// runOnce runs one workload, with obs (may be nil) recording a segment.
func runOnce(exe string, wl string, d time.Duration, cpu int, obs *proc, traced bool) (measurement, workloadResult, error) {
	args := []string{"__workload", wl, d.String(), strconv.Itoa(cpu)}
	var report *os.File
	var reportR *os.File
	name := exe
	if traced {
		var err error
		reportR, report, err = os.Pipe()
		if err != nil {
			return measurement{}, workloadResult{}, err
		}
		defer reportR.Close()
		args = append([]string{"__ptrace"}, args...)
	}
	var extra []*os.File
	if report != nil {
		extra = []*os.File{report}
	}
	w, err := startProc(name, args, extra...)
	if report != nil {
		report.Close()
	}
	if err != nil {
		return measurement{}, workloadResult{}, err
	}
	if obs != nil {
		if err := obs.send(fmt.Sprintf("begin %d", w.cmd.Process.Pid)); err != nil {
			return measurement{}, workloadResult{}, err
		}
		if l, err := obs.line(); err != nil || l != "ok" {
			return measurement{}, workloadResult{}, fmt.Errorf("observer: %q %v", l, err)
		}
	}
	w.send("go")
	var res workloadResult
	if err := w.json(&res); err != nil {
		w.stop()
		return measurement{}, res, fmt.Errorf("workload %s: %w", wl, err)
	}
	w.stop()
	if res.Err != "" {
		return measurement{}, res, fmt.Errorf("workload %s: %s", wl, res.Err)
	}
	m := measurement{rate: float64(res.Cycles) / res.Seconds}
	cpuNs := res.CPUNanos
	if obs != nil {
		obs.send("end")
		if err := obs.json(&m.seg); err != nil {
			return m, res, fmt.Errorf("observer end: %w", err)
		}
		cpuNs += m.seg.CPUNanos
	}
	if traced {
		var tr struct {
			CPU int64 `json:"cpu_ns"`
		}
		if err := json.NewDecoder(reportR).Decode(&tr); err == nil {
			cpuNs += tr.CPU
		}
	}
	if res.Cycles > 0 {
		m.cpuPerCycle = float64(cpuNs) / float64(res.Cycles)
	}
	return m, res, nil
}

func measureKind(exe string, k observerKind, cfg benchConfig) (map[string]measurement, error) {
	out := map[string]measurement{}
	var obs *proc
	var ext *exec.Cmd
	switch {
	case k.mode != "":
		var err error
		if obs, err = startObserver(exe, k.mode); err != nil {
			return nil, err
		}
		defer obs.stop()
	case len(k.ext) > 0:
		var err error
		if ext, err = startExternal(k); err != nil {
			return nil, err
		}
		defer func() { ext.Process.Signal(unix.SIGINT); ext.Wait() }()
	}
	for _, wl := range workloads {
		cpu0 := procCPU(ext)
		m, _, err := runOnce(exe, wl, cfg.measure, cfg.cpu, obs, k.ptr)
		if err != nil {
			return nil, err
		}
		if ext != nil && m.rate > 0 {
			cycles := m.rate * cfg.measure.Seconds()
			m.cpuPerCycle += float64(procCPU(ext)-cpu0) / cycles
		}
		out[wl] = m
	}
	return out, nil
}

// startExternal runs bpftrace or forkstat and waits until it is attached.
func startExternal(k observerKind) (*exec.Cmd, error) {
	cmd := exec.Command(k.ext[0], k.ext[1:]...)
	cmd.Stdout = io.Discard
	stderr, _ := cmd.StderrPipe()
	if k.ready != "" {
		cmd.Stdout = nil
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		go io.Copy(io.Discard, stderr)
		r := bufio.NewReader(stdout)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			l, err := r.ReadString('\n')
			if err != nil {
				return cmd, errors.New("did not attach")
			}
			if strings.Contains(l, k.ready) {
				break
			}
		}
		go io.Copy(io.Discard, r)
		return cmd, nil
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go io.Copy(io.Discard, stderr)
	time.Sleep(time.Second)
	return cmd, nil
}

// procCPU is a process's user+sys time in ns (USER_HZ precision).
func procCPU(cmd *exec.Cmd) int64 {
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	st, err := procfs.ReadStat(cmd.Process.Pid)
	if err != nil {
		return 0
	}
	return st.CPU.Nanoseconds()
}

func printComparison(kinds []observerKind, results map[string]map[string][]measurement) []bench.Target {
	var targets []bench.Target
	base := results["baseline"]
	cpuPer := map[string]map[string]float64{}
	ratioOf := map[string]map[string]bench.Summary{}
	for _, wl := range workloads {
		fmt.Println()
		fmt.Println(workloadTitle[wl])
		var t bench.Table
		t.Header = []string{"configuration", "rate (median)", "rate vs baseline", "CPU/cycle", "CPU vs baseline", "observer saw"}
		var baseRates, baseCPU []float64
		for _, m := range base[wl] {
			baseRates = append(baseRates, m.rate)
			baseCPU = append(baseCPU, m.cpuPerCycle)
		}
		for _, k := range kinds {
			var rates, cpus []float64
			var events uint64
			for _, m := range results[k.name][wl] {
				rates = append(rates, m.rate)
				cpus = append(cpus, m.cpuPerCycle)
				events += m.seg.Events
			}
			rs := bench.Summarize(rates)
			ratio := bench.Summarize(bench.Ratios(rates, baseRates))
			cs := bench.Summarize(cpus)
			cratio := bench.Summarize(bench.Ratios(cpus, baseCPU))
			if cpuPer[k.name] == nil {
				cpuPer[k.name], ratioOf[k.name] = map[string]float64{}, map[string]bench.Summary{}
			}
			cpuPer[k.name][wl] = cs.Median
			ratioOf[k.name][wl] = ratio
			saw := "-"
			switch {
			case k.mode == "cnproc":
				saw = fmt.Sprintf("%d msgs", events)
			case strings.HasPrefix(k.mode, "aw-"):
				saw = fmt.Sprintf("%d records", events)
			}
			t.Add(k.name, bench.FormatRate(rs.Median), bench.FormatRatio(ratio),
				fmt.Sprintf("%.1f µs", cs.Median/1000), fmt.Sprintf("%.3f×", cratio.Median), saw)
		}
		t.Write(os.Stdout)
	}
	ratioTarget := func(kind, wl string, min float64) {
		r, ok := ratioOf[kind][wl]
		if !ok {
			return
		}
		targets = append(targets, bench.Target{
			Name:  fmt.Sprintf("%s, %s: rate ≥ %.0f%% of baseline", kind, workloadTitle[wl], min*100),
			Known: r.N > 0, Pass: r.Median >= min, Detail: fmt.Sprintf("%.3f×", r.Median)})
	}
	ratioTarget("adoptwatch all", wlFork, 0.97)
	ratioTarget("adoptwatch all", wlDouble, 0.95)
	for _, wl := range workloads {
		ratioTarget("adoptwatch other tree", wl, 0.99)
	}
	if _, ok := cpuPer["proc connector"]; ok {
		for _, wl := range workloads {
			aw, cn := cpuPer["adoptwatch all"][wl], cpuPer["proc connector"][wl]
			ar, cr := ratioOf["adoptwatch all"][wl].Median, ratioOf["proc connector"][wl].Median
			targets = append(targets, bench.Target{
				Name:  fmt.Sprintf("adoptwatch all cheaper than the proc connector, %s", workloadTitle[wl]),
				Known: aw > 0 && cn > 0, Pass: aw < cn && ar >= cr,
				Detail: fmt.Sprintf("CPU/cycle %.1f vs %.1f µs, rate %.3f× vs %.3f×", aw/1000, cn/1000, ar, cr)})
		}
	}
	return targets
}

// runIdle is the unrelated tree's root: it sleeps until its stdin closes.
func runIdle() error {
	io.Copy(io.Discard, os.Stdin)
	return nil
}
