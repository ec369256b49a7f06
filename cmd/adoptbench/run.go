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
	rounds    int
	measure   time.Duration
	storm     time.Duration
	quiet     time.Duration
	quietRate int
	memory    string
	cpu       int
	only      string
	highRate  bool   // adoptwatch's CPU per adoption with the double fork on every CPU
	watcher   string // the adoptwatch binary measured
	compare   string // another adoptwatch binary, measured alongside (e.g. before a change)
}

// observerKind names a configuration of the comparison.
type observerKind struct {
	name    string // column label
	mode    string // __observer mode; "" for special kinds
	ptr     bool   // ptrace follower
	ext     []string
	ready   string       // external tools: a line on stderr/stdout that means attached
	watcher *watcherSpec // the adoptwatch command
	judged  bool         // the targets apply (the -compare binary is shown, not judged)
}

// measurement is one workload under one configuration in one round.
type measurement struct {
	rate        float64 // cycles per second
	cycles      int
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

	if _, err := os.Stat(cfg.watcher); err != nil {
		return fmt.Errorf("-adoptwatch %s: %w (build it first: make build)", cfg.watcher, err)
	}
	// The workload gets its CPU; everything else (this process, the
	// observers it starts) the others.
	if err := leaveCPU(cfg.cpu); err != nil {
		return err
	}
	other := []string{"--pid", strconv.Itoa(idle.Process.Pid)}
	kinds := []observerKind{{name: "none", mode: "none"}}
	bpftrace, err := exec.LookPath("bpftrace")
	if err == nil {
		umount, terr := ensureTracefs()
		defer umount()
		if terr != nil {
			fmt.Printf("bpftrace not measured: %v\n", terr)
			bpftrace = ""
		}
	}
	if bpftrace != "" {
		p := bpftrace
		kinds = append(kinds, observerKind{name: "bpftrace count", ready: "Attaching",
			ext: []string{p, "-e", "tracepoint:sched:sched_process_fork,tracepoint:sched:sched_process_exit { @[probe] = count(); }"}})
	}
	watchers := func(prefix, path string, judged bool) []observerKind {
		return []observerKind{
			{name: prefix + "adoptwatch all text", watcher: &watcherSpec{path: path}, judged: judged},
			{name: prefix + "adoptwatch all json", watcher: &watcherSpec{path: path, json: true}, judged: judged},
			{name: prefix + "adoptwatch other tree", watcher: &watcherSpec{path: path, args: other}, judged: judged},
		}
	}
	kinds = append(kinds, watchers("", cfg.watcher, true)...)
	if cfg.compare != "" {
		kinds = append(kinds, watchers("compare: ", cfg.compare, false)...)
	}
	kinds = append(kinds, observerKind{name: "proc connector", mode: "cnproc"})
	if p, err := exec.LookPath("forkstat"); err == nil {
		kinds = append(kinds, observerKind{name: "forkstat", ext: []string{p, "-e", "all"}})
	}
	kinds = append(kinds, observerKind{name: "ptrace follow", ptr: true})
	missing := []string{}
	for _, tool := range []string{"bpftrace", "forkstat"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if cfg.only != "" {
		want := map[string]bool{"none": true}
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
	fmt.Printf("adoptwatch: %s", cfg.watcher)
	if cfg.compare != "" {
		fmt.Printf("; compared with %s", cfg.compare)
	}
	fmt.Println()
	if len(missing) > 0 {
		fmt.Printf("not installed, not measured: %s (optional: sudo make bench-deps)\n", strings.Join(missing, ", "))
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
	targets, noisy := printComparison(kinds, results)
	if cfg.highRate {
		targets = append(targets, runHighRate(exe, cfg, kinds)...)
	}

	if cfg.storm > 0 {
		targets = append(targets, runStorm(exe, cfg)...)
	}
	if cfg.quiet > 0 {
		targets = append(targets, runQuiet(exe, cfg)...)
	}
	if cfg.memory != "" {
		targets = append(targets, runMemory(exe, cfg)...)
	}
	fmt.Println()
	fmt.Println("Targets")
	for _, n := range noisy {
		fmt.Println("  NOISY: " + n)
	}
	if len(noisy) > 0 {
		fmt.Println("  This run was noisy (an observer cannot make the workload faster): its ratios are not a result.")
	}
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

// runOnce runs one workload (rate > 0: paced at rate cycles per second), with
// obs (may be nil) recording a segment.
func runOnce(exe string, wl string, d time.Duration, rate int, cpu int, obs observer, traced bool) (measurement, workloadResult, error) {
	args := []string{"__workload", wl, d.String(), strconv.Itoa(cpu), strconv.Itoa(rate)}
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
		if err := obs.begin(w.cmd.Process.Pid); err != nil {
			w.stop()
			return measurement{}, workloadResult{}, err
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
	m := measurement{rate: float64(res.Cycles) / res.Seconds, cycles: res.Cycles}
	cpuNs := res.CPUNanos
	if obs != nil {
		if m.seg, err = obs.end(res.Cycles); err != nil {
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

// startKind starts a configuration's observer (nil for none needed).
func startKind(exe string, k observerKind) (observer, error) {
	switch {
	case k.watcher != nil:
		return startWatcher(*k.watcher)
	case k.mode != "":
		p, err := startObserver(exe, k.mode)
		if err != nil {
			return nil, err
		}
		return procObserver{p}, nil
	case len(k.ext) > 0:
		cmd, err := startExternal(k)
		if err != nil {
			if cmd != nil {
				cmd.Process.Kill() // our own child, by pid
				cmd.Wait()
			}
			return nil, err
		}
		return &extObserver{cmd: cmd}, nil
	}
	return nil, nil
}

func measureKind(exe string, k observerKind, cfg benchConfig) (map[string]measurement, error) {
	out := map[string]measurement{}
	obs, err := startKind(exe, k)
	if err != nil {
		return nil, err
	}
	if obs != nil {
		defer obs.stop()
	}
	for _, wl := range workloads {
		m, _, err := runOnce(exe, wl, cfg.measure, 0, cfg.cpu, obs, k.ptr)
		if err != nil {
			return nil, err
		}
		out[wl] = m
	}
	if w, ok := obs.(*watcherObserver); ok {
		if s := w.warnings(); s != "" {
			fmt.Fprintf(os.Stderr, "%s said:\n%s", k.name, s)
		}
	}
	return out, nil
}

// leaveCPU keeps this process (and so the observers it starts) off the
// workload's CPU, when there is another.
func leaveCPU(cpu int) error {
	if cpu < 0 {
		return nil
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return err
	}
	if !set.IsSet(cpu) {
		return fmt.Errorf("-cpu %d: not a CPU this process may use", cpu)
	}
	set.Clear(cpu)
	if set.Count() == 0 {
		return nil // one CPU: everything shares it
	}
	return unix.SchedSetaffinity(0, &set)
}

// ensureTracefs mounts tracefs where bpftrace looks for tracepoints, if it is
// not there; the returned function unmounts what this mounted.
func ensureTracefs() (func(), error) {
	const dir = "/sys/kernel/tracing"
	if _, err := os.Stat(dir + "/events/sched"); err == nil {
		return func() {}, nil
	}
	if err := unix.Mount("nodev", dir, "tracefs", 0, ""); err != nil {
		return func() {}, fmt.Errorf("tracefs is not mounted and mounting it on %s failed: %w", dir, err)
	}
	fmt.Printf("mounted tracefs on %s for bpftrace (unmounted at the end)\n", dir)
	return func() { unix.Unmount(dir, 0) }, nil
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

// watchingAll is the adoptwatch configurations that watch every process:
// those whose own CPU per adoption the tables show.
func watchingAll(kinds []observerKind) []observerKind {
	var out []observerKind
	for _, k := range kinds {
		if k.watcher != nil && !strings.Contains(k.name, "other tree") {
			out = append(out, k)
		}
	}
	return out
}

// writeWatcherCPU prints the table of adoptwatch's own CPU per adoption, one
// row per configuration in watchers with measurements in ms (by name).
func writeWatcherCPU(watchers []observerKind, ms map[string][]measurement, rateHeader string) {
	var t bench.Table
	t.Header = []string{"configuration", rateHeader, "µs/adoption (median of rounds)", "spread", "pooled over rounds"}
	for _, k := range watchers {
		per, pooled, rate := watcherCPU(ms[k.name])
		if per.N == 0 {
			continue
		}
		t.Add(k.name, bench.FormatRate(rate), fmt.Sprintf("%.1f", per.Median/1000), fmt.Sprintf("±%.0f%%", 50*per.Spread()), fmt.Sprintf("%.1f", pooled/1000))
	}
	t.Write(os.Stdout)
}

// watcherCPU is adoptwatch's own CPU per adoption over one configuration's
// double-fork runs: per round, and pooled (all CPU over all adoptions).
func watcherCPU(ms []measurement) (perRound bench.Summary, pooled float64, rate float64) {
	var xs, rates []float64
	var cpu, n float64
	for _, m := range ms {
		if m.seg.Adoptions > 0 {
			xs = append(xs, float64(m.seg.CPUNanos)/float64(m.seg.Adoptions))
			cpu += float64(m.seg.CPUNanos)
			n += float64(m.seg.Adoptions)
		}
		rates = append(rates, m.rate)
	}
	if n > 0 {
		pooled = cpu / n
	}
	return bench.Summarize(xs), pooled, bench.Summarize(rates).Median
}

func printComparison(kinds []observerKind, results map[string]map[string][]measurement) (targets []bench.Target, noisy []string) {
	base := results["none"]
	cpuPer := map[string]map[string]float64{}
	ratioOf := map[string]map[string]bench.Summary{}
	for _, wl := range workloads {
		fmt.Println()
		fmt.Println(workloadTitle[wl])
		var t bench.Table
		t.Header = []string{"configuration", "rate (median)", "rate vs none", "CPU/cycle", "CPU vs none", "observer saw"}
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
			// An observer cannot speed the workload up: a ratio above 1 by
			// more than its own spread is noise.
			if k.name != "none" && ratio.N > 0 && ratio.Median-1 > ratio.Spread()/2 {
				noisy = append(noisy, fmt.Sprintf("%s, %s: %s of none", k.name, workloadTitle[wl], bench.FormatRatio(ratio)))
			}
			saw := "-"
			switch {
			case k.mode == "cnproc":
				saw = fmt.Sprintf("%d msgs", events)
			case k.watcher != nil && k.watcher.json:
				saw = fmt.Sprintf("%d adoptions", events)
			}
			t.Add(k.name, bench.FormatRate(rs.Median), bench.FormatRatio(ratio),
				fmt.Sprintf("%.1f µs", cs.Median/1000), fmt.Sprintf("%.3f×", cratio.Median), saw)
		}
		t.Write(os.Stdout)
	}

	fmt.Println()
	fmt.Println("adoptwatch's own CPU per adoption, (c) double fork: utime+stime of the adoptwatch process (/proc/PID/stat,")
	fmt.Println("clock ticks) over each run, divided by the adoptions it reported (JSON: lines counted; text: the workload's cycles)")
	watchers := watchingAll(kinds)
	double := map[string][]measurement{}
	for _, k := range watchers {
		double[k.name] = results[k.name][wlDouble]
	}
	writeWatcherCPU(watchers, double, "rate (median)")

	ratioTarget := func(kind, wl string, min float64) {
		r, ok := ratioOf[kind][wl]
		if !ok {
			return
		}
		detail := fmt.Sprintf("%.3f×", r.Median)
		if floor, ok := ratioOf["bpftrace count"][wl]; ok {
			detail += fmt.Sprintf("; bpftrace floor %.3f×", floor.Median)
		}
		targets = append(targets, bench.Target{
			Name:  fmt.Sprintf("%s, %s: rate ≥ %.2f× none", kind, workloadTitle[wl], min),
			Known: r.N > 0, Pass: r.Median >= min, Detail: detail})
	}
	for _, k := range kinds {
		if !k.judged {
			continue
		}
		switch {
		case strings.Contains(k.name, "other tree"):
			ratioTarget(k.name, wlDouble, 0.98)
		default:
			ratioTarget(k.name, wlDouble, 0.95)
			ratioTarget(k.name, wlFork, 0.97)
		}
	}
	const aw = "adoptwatch all text"
	if _, ok := cpuPer["proc connector"]; ok {
		for _, wl := range workloads {
			a, cn := cpuPer[aw][wl], cpuPer["proc connector"][wl]
			ar, cr := ratioOf[aw][wl].Median, ratioOf["proc connector"][wl].Median
			targets = append(targets, bench.Target{
				Name:  fmt.Sprintf("%s cheaper than the proc connector, %s", aw, workloadTitle[wl]),
				Known: a > 0 && cn > 0, Pass: a < cn && ar >= cr,
				Detail: fmt.Sprintf("CPU/cycle %.1f vs %.1f µs, rate %.3f× vs %.3f×", a/1000, cn/1000, ar, cr)})
		}
	}
	return targets, noisy
}

// runIdle is the unrelated tree's root: it sleeps until its stdin closes.
func runIdle() error {
	io.Copy(io.Discard, os.Stdin)
	return nil
}
