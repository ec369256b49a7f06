// Command vmtest runs the project's test suites inside VMs booted on real
// Debian kernels (5.10, 6.1, 6.12, 7.x by default), so the BPF side is tested
// on the kernels users run rather than only on the development machine's.
//
//	go run ./vmtests/cmd/vmtest [--kernel /path/to/vmlinuz ...] [--cache DIR] [--timeout 1200s] [--json]
//
// Kernels come from Debian's archive through a private apt configuration in
// the cache directory; test binaries and the guest's /init are built fresh
// on each run. Full console logs are kept in <cache>/logs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/vmtests/internal/debian"
	"github.com/adoptwatch/adoptwatch/vmtests/internal/guestlog"
	"github.com/adoptwatch/adoptwatch/vmtests/internal/qemu"
	"github.com/adoptwatch/adoptwatch/vmtests/internal/rootfs"
)

type options struct {
	kernels  []string
	cache    string
	timeout  time.Duration
	json     bool
	parallel int
	retry    bool
	refresh  bool
	run      string
	count    int
	short    bool
	accel    string
	verbose  bool
	systemd  string // "auto", "off" or a suite
	busybox  bool
}

// guestMemMB is each VM's memory. loader's TestManyChildren holds 4,096 and
// then 4,396 live shell children at once (the exit-walk bound and past it),
// about 80 KiB each in the kernel; with the initramfs in RAM, 1 GiB ran out
// (the OOM killer ended loader.test on 5.10 and 6.1). 3 GiB was tried
// against a stall starting 5,000 children on 6.1 and did not stop it (that
// case now has fewer children in the VMs); the runs since used 3 GiB, and
// qemu only takes from the host what the guest uses.
const guestMemMB = 3072

func main() {
	var o options
	flag.Func("kernel", "boot this vmlinuz instead of the Debian matrix (repeatable)", func(s string) error {
		o.kernels = append(o.kernels, s)
		return nil
	})
	flag.StringVar(&o.cache, "cache", defaultCache(), "where kernels, apt lists, builds and logs are kept")
	flag.DurationVar(&o.timeout, "timeout", 1200*time.Second, "deadline for each VM, boot to power-off (a bound on hangs: the test binaries run one after another in it)")
	flag.BoolVar(&o.json, "json", false, "print results as JSON instead of a table")
	// Single-threaded TCG keeps one host core busy per VM.
	flag.BoolVar(&o.retry, "retry", true, "boot a kernel whose tests failed once more, running only the failed tests twice each: all passing, it is reported as flaky, with the first run's failures")
	flag.IntVar(&o.parallel, "parallel", min(runtime.NumCPU(), 4), "VMs to run at once")
	flag.BoolVar(&o.refresh, "refresh", false, "update the apt lists even if they are recent")
	flag.StringVar(&o.run, "run", "", "pass -test.run=REGEX to every test binary in the guests")
	flag.IntVar(&o.count, "count", 1, "pass -test.count=N to the test binaries (with -run: repeat a flaky test in one boot)")
	flag.BoolVar(&o.short, "short", true, "pass -test.short to the test binaries (emulated CPUs are slow)")
	flag.StringVar(&o.accel, "accel", qemu.DefaultAccel, "qemu -accel value")
	flag.BoolVar(&o.verbose, "v", false, "copy every guest console to stderr as it runs")
	flag.StringVar(&o.systemd, "systemd", "auto", "boot Debian's systemd as PID 1 too: auto (6.1 with bookworm's, 6.12 with trixie's; none with --kernel), off, or a suite for every kernel")
	flag.BoolVar(&o.busybox, "busybox", true, "boot every kernel with vmtest's own init (the main matrix)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vmtest: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if o.systemd == "" || strings.ContainsAny(o.systemd, " /\t") {
		fmt.Fprintf(os.Stderr, "vmtest: --systemd %q: want auto, off or a suite name\n", o.systemd)
		os.Exit(2)
	}
	if !o.busybox && o.systemd == "off" {
		fmt.Fprintln(os.Stderr, "vmtest: --busybox=false with --systemd=off leaves nothing to boot")
		os.Exit(2)
	}
	if strings.ContainsAny(o.run, " \t\"") {
		fmt.Fprintln(os.Stderr, "vmtest: --run cannot contain spaces or quotes (it travels on the kernel command line)")
		os.Exit(2)
	}
	if o.count < 1 {
		fmt.Fprintln(os.Stderr, "vmtest: --count must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

func defaultCache() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "adoptwatch-vmtest")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "adoptwatch-vmtest")
	}
	return filepath.Join(os.TempDir(), "adoptwatch-vmtest")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vmtest: "+format+"\n", args...)
}

// kernelResult is one row of the report.
type kernelResult struct {
	Label    string   `json:"label"`
	Source   string   `json:"source"`
	Kernel   string   `json:"kernel,omitempty"`  // uname -r in the guest
	Status   string   `json:"status"`            // ok, flaky, failed, timeout, skipped
	Systemd  string   `json:"systemd,omitempty"` // "<suite> <version>" when systemd was PID 1
	Hooks    string   `json:"hooks,omitempty"`
	Pass     int      `json:"passed"`
	Fail     int      `json:"failed"`
	Skip     int      `json:"skipped"`
	Seconds  float64  `json:"seconds"`
	Problems []string `json:"problems,omitempty"`
	// FailedTests names the failed top-level tests (all binaries).
	FailedTests []string `json:"failed_tests,omitempty"`
	Notes       []string `json:"guest_notes,omitempty"` // what /init could not set up
	// onlyTestsFailed: the guest ran to its end and nothing but tests failed.
	onlyTestsFailed bool
	Log             string `json:"log,omitempty"`
}

type report struct {
	Kernels      []kernelResult `json:"kernels"`
	BuildFailed  []buildFailure `json:"build_failures,omitempty"`
	Binaries     []string       `json:"binaries"`
	TotalSeconds float64        `json:"total_seconds"`
	OK           bool           `json:"ok"`
	Why          []string       `json:"why_not_ok,omitempty"`
}

func run(ctx context.Context, o options) (bool, error) {
	start := time.Now()
	goBin, err := exec.LookPath("go")
	if err != nil {
		return false, err
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return false, fmt.Errorf("%v (vmtests/install-deps.sh installs it)", err)
	}
	root, module, err := moduleRoot(ctx, goBin)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(o.cache, 0o755); err != nil {
		return false, err
	}
	unlock, err := lockDir(o.cache)
	if err != nil {
		return false, err
	}
	defer unlock()

	// Fetching kernels and building root filesystems (network, dpkg) and
	// compiling (CPU) overlap.
	matrix := len(o.kernels) == 0
	var kernels []debian.Kernel
	var busybox string
	var kerr error
	var suites map[string]string
	var roots map[string]*rootfs.Rootfs
	var rootErrs map[string]error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var apt *debian.Apt
		kernels, busybox, apt, kerr = findKernels(ctx, o)
		if kerr != nil {
			return
		}
		suites = systemdSuites(o.systemd, kernels, matrix)
		if len(suites) > 0 && apt == nil {
			kerr = fmt.Errorf("no apt for the systemd root filesystems")
			return
		}
		roots, rootErrs = buildRootfs(ctx, apt, suites, o.cache)
	}()
	buildDir := filepath.Join(o.cache, "build")
	b, err := buildTests(ctx, goBin, root, module, buildDir, logf)
	var parts *systemdParts
	if err == nil && o.systemd != "off" && (matrix || o.systemd != "auto") {
		parts, err = buildSystemdParts(ctx, goBin, root, module, filepath.Join(buildDir, "systemd"))
	}
	wg.Wait()
	if err != nil {
		return false, err
	}
	if kerr != nil {
		return false, kerr
	}
	if err := writeInitramfs(b, busybox); err != nil {
		return false, err
	}
	logf("built %d test binaries (%s), initramfs %s", len(b.Binaries), strings.Join(b.Binaries, " "), sizeOf(b.Initrd))

	var boots []boot
	if o.busybox {
		for _, k := range kernels {
			boots = append(boots, boot{Label: k.Label, Kernel: k, Initrd: b.Initrd})
		}
	}
	for _, k := range kernels {
		suite, ok := suites[k.Label]
		if !ok {
			continue
		}
		bt := boot{Label: k.Label + "+systemd", Kernel: k, Append: systemdExtra, Systemd: suite}
		switch r := roots[suite]; {
		case r == nil:
			bt.Skipped = fmt.Sprintf("no %s root filesystem: %v", suite, rootErrs[suite])
		case parts == nil:
			bt.Skipped = "the systemd guest's binaries were not built"
		default:
			bt.Systemd = suite + " " + r.Version("systemd")
			bt.Initrd = filepath.Join(buildDir, "systemd-"+suite+".cpio")
			if _, err := os.Stat(bt.Initrd); err != nil {
				if err := writeSystemdInitrd(bt.Initrd, r.Cpio, parts); err != nil {
					return false, err
				}
				logf("systemd initramfs for %s (systemd %s): %s", suite, r.Version("systemd"), sizeOf(bt.Initrd))
			}
		}
		boots = append(boots, bt)
	}

	results := bootAll(ctx, o, boots)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	rep := report{Kernels: results, BuildFailed: b.Failed, Binaries: b.Binaries}
	wantKernels, wantSystemd := 0, 0
	if matrix && o.busybox {
		wantKernels = len(debian.DefaultTargets)
	}
	if matrix && o.systemd == "auto" {
		wantSystemd = len(systemdTargets)
	}
	rep.Why = verdict(rep, wantKernels, wantSystemd)
	rep.OK = len(rep.Why) == 0
	rep.TotalSeconds = time.Since(start).Seconds()
	if o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printReport(os.Stdout, rep)
	}
	return rep.OK, nil
}

// verdict lists why the run failed, if it did: a build failure, a boot that
// failed, or fewer boots than the matrix wants (of each kind: with vmtest's
// init, with systemd) that ran. With neither wanted, at least one must run.
func verdict(rep report, wantKernels, wantSystemd int) []string {
	var why []string
	for _, f := range rep.BuildFailed {
		why = append(why, "tests of "+f.Package+" do not build")
	}
	if len(rep.Binaries) == 0 {
		why = append(why, "no test binaries")
	}
	ran, ranSystemd := 0, 0
	for _, k := range rep.Kernels {
		if k.Status != "skipped" && k.Systemd == "" {
			ran++
		}
		if k.Status != "skipped" && k.Systemd != "" {
			ranSystemd++
		}
		if k.Status != "ok" && k.Status != "flaky" && k.Status != "skipped" {
			why = append(why, k.Label+": "+k.Status)
		}
	}
	if ran < wantKernels {
		why = append(why, fmt.Sprintf("only %d of the %d kernels of the matrix ran", ran, wantKernels))
	}
	if ranSystemd < wantSystemd {
		why = append(why, fmt.Sprintf("only %d of the %d systemd boots ran", ranSystemd, wantSystemd))
	}
	if wantKernels == 0 && wantSystemd == 0 && ran+ranSystemd == 0 {
		why = append(why, "no kernel ran")
	}
	return why
}

func moduleRoot(ctx context.Context, goBin string) (root, module string, err error) {
	out, err := exec.CommandContext(ctx, goBin, "list", "-m", "-f", "{{.Dir}} {{.Path}}").Output()
	if err != nil {
		return "", "", fmt.Errorf("run vmtest inside the module: go list -m: %v", err)
	}
	root, module, _ = strings.Cut(strings.TrimSpace(string(out)), " ")
	return root, module, nil
}

// lockDir keeps two vmtest runs from sharing one cache (apt lists, build).
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another vmtest is using %s", dir)
	}
	return func() { f.Close() }, nil
}

func sizeOf(p string) string {
	st, err := os.Stat(p)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MB", float64(st.Size())/1e6)
}

// findKernels returns the explicit --kernel files, or resolves the Debian
// matrix. A target that cannot be had comes back skipped, with the reason.
// It also finds the static busybox the guests use as /bin/sh (empty if none
// could be had: tests then find no shell, and the run says so).
func findKernels(ctx context.Context, o options) (ks []debian.Kernel, busybox string, apt *debian.Apt, err error) {
	for _, p := range o.kernels {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, "", nil, err
		}
		k := debian.Kernel{Label: filepath.Base(p), Path: abs}
		if _, err := os.Stat(abs); err != nil {
			k.Skipped = err.Error()
		}
		ks = append(ks, k)
	}
	// With explicit kernels and no systemd root filesystem to build, a
	// busybox from an earlier run spares apt.
	if len(o.kernels) > 0 && (o.systemd == "off" || o.systemd == "auto") {
		if m, _ := filepath.Glob(filepath.Join(o.cache, "tools", debian.BusyboxPackage+"_*", "busybox")); len(m) > 0 {
			return ks, m[len(m)-1], nil, nil
		}
	}

	apt, err = privateApt(ctx, o)
	if err != nil {
		if len(o.kernels) > 0 {
			logf("no busybox for the guests: %v", err)
			return ks, "", nil, nil
		}
		return nil, "", nil, err
	}
	if len(o.kernels) == 0 {
		ks = apt.Resolve(ctx, debian.DefaultTargets, o.cache)
		for _, k := range ks {
			if k.Skipped != "" {
				logf("kernel %s skipped: %s", k.Label, k.Skipped)
			}
		}
	}
	busybox, err = apt.FetchBusybox(ctx, o.cache)
	if err != nil {
		logf("no busybox for the guests: %v", err)
	}
	return ks, busybox, apt, nil
}

// privateApt sets up and refreshes the private apt configuration.
func privateApt(ctx context.Context, o options) (*debian.Apt, error) {
	srcs, err := debian.ReadSystemSources("/etc/apt")
	if err != nil {
		return nil, err
	}
	mirror, err := debian.PickMirror(srcs)
	if err != nil {
		return nil, err
	}
	apt := &debian.Apt{
		Dir:    filepath.Join(o.cache, "apt"),
		Mirror: mirror,
		Suites: aptSuites(o.systemd),
		Log:    os.Stderr,
	}
	maxAge := 6 * time.Hour
	if o.refresh {
		maxAge = 0
	}
	if err := apt.Update(ctx, maxAge); err != nil {
		// Lists that did download (or older ones) may still serve: the
		// kernels that cannot be resolved are reported as skipped.
		logf("%v", err)
	}
	return apt, nil
}

// aptSuites are the suites of the kernel matrix and, if --systemd names
// one, that suite.
func aptSuites(systemd string) []string {
	suites := debian.Suites(debian.DefaultTargets)
	if systemd != "auto" && systemd != "off" && !slices.Contains(suites, systemd) {
		suites = append(suites, systemd)
	}
	return suites
}

// boot is one VM of the run: a kernel, the initramfs it boots, and for the
// systemd boots the extra kernel command line and what systemd it is.
type boot struct {
	Label   string
	Kernel  debian.Kernel
	Initrd  string
	Append  string
	Systemd string // "<suite> <version>"; empty: vmtest's own init
	Skipped string
}

func (b boot) source() string {
	if b.Systemd == "" {
		return b.Kernel.Source()
	}
	return b.Kernel.Source() + " + systemd " + b.Systemd
}

// bootAll boots each VM, o.parallel at a time, longest first (see
// startOrder); the results keep the order of boots.
func bootAll(ctx context.Context, o options, boots []boot) []kernelResult {
	logDir := filepath.Join(o.cache, "logs")
	os.MkdirAll(logDir, 0o755)
	results := make([]kernelResult, len(boots))
	todo := make(chan int, len(boots))
	for _, i := range startOrder(boots) {
		b := boots[i]
		results[i] = kernelResult{Label: b.Label, Source: b.source(), Systemd: b.Systemd}
		why := b.Kernel.Skipped
		if why == "" {
			why = b.Skipped
		}
		if why != "" {
			results[i].Status = "skipped"
			results[i].Problems = []string{why}
			continue
		}
		todo <- i
	}
	close(todo)
	var wg sync.WaitGroup
	for range max(o.parallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range todo {
				if ctx.Err() != nil {
					return
				}
				b := boots[i]
				log := filepath.Join(logDir, safeName(b.Label)+".log")
				results[i] = bootOne(ctx, o, b, log)
				if o.retry && results[i].Status == "failed" && results[i].Fail > 0 && ctx.Err() == nil {
					results[i] = retry(ctx, o, b, log, results[i])
				}
			}
		}()
	}
	wg.Wait()
	return results
}

// startOrder is the order in which bootAll starts the boots: the longest
// first, so that the last one to finish is a short one and no core idles
// while one VM runs on alone. A boot with vmtest's init runs every test
// binary and takes minutes; a systemd boot runs one package in about 90 s.
// Among the former, the newer kernel first (boots lists the matrix oldest
// first): 7.x took 650 s where 5.10 took 350 s, as it verifies three copies
// of the programs (it preempts them) and verifying costs more there.
func startOrder(boots []boot) []int {
	var order []int
	for _, systemd := range []bool{false, true} {
		for i := len(boots) - 1; i >= 0; i-- {
			if (boots[i].Systemd != "") == systemd {
				order = append(order, i)
			}
		}
	}
	return order
}

// retryCount is how often the second boot runs each failed test: all of
// them must pass for the first failure to count as flaky.
const retryCount = 2

// retry boots a kernel whose tests failed once more. Emulated CPUs are slow
// and their timing is unlike any real machine's: a test that fails once and
// then passes is reported as flaky, never hidden; one that fails again fails.
// The second boot runs only the failed tests, retryCount times each (a whole
// second run costs minutes of CI), unless the first boot's problems were more
// than failed tests (a panic, a binary that never finished).
func retry(ctx context.Context, o options, b boot, log string, first kernelResult) kernelResult {
	what := "all tests"
	if run, ok := retryRun(first); ok {
		o.run, o.count = run, retryCount
		what = fmt.Sprintf("%s, %d times each", strings.Join(first.FailedTests, ", "), retryCount)
	}
	logf("%s: %d failed; booting it once more (%s) to tell a flaky test from a failure", b.Label, first.Fail, what)
	again := bootOne(ctx, o, b, strings.TrimSuffix(log, ".log")+".retry.log")
	first.Seconds += again.Seconds
	if again.Status != "ok" {
		first.Problems = append(first.Problems, fmt.Sprintf("failed again on a second boot running %s (log %s)", what, again.Log))
		return first
	}
	first.Status = "flaky"
	first.Problems = append([]string{fmt.Sprintf("first boot failed (log %s); a second boot running %s passed (log %s):", first.Log, what, again.Log)}, first.Problems...)
	return first
}

// retryRun is the -run pattern that repeats just the failed tests, when
// failed tests are all that went wrong and the pattern fits on the kernel
// command line.
func retryRun(first kernelResult) (string, bool) {
	if !first.onlyTestsFailed || len(first.FailedTests) == 0 {
		return "", false
	}
	run := "^(" + strings.Join(first.FailedTests, "|") + ")$"
	return run, len(run) < 1000 && !strings.ContainsAny(run, " \t\"")
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._+-]`)

func safeName(s string) string { return unsafeChars.ReplaceAllString(s, "_") }

// guestTimeout is what each test binary gets in the guest: the VM's deadline
// less room for booting and for the binary's own timeout report.
func guestTimeout(vm time.Duration) time.Duration {
	return max(vm-45*time.Second, 30*time.Second)
}

func bootOne(ctx context.Context, o options, b boot, logPath string) kernelResult {
	k := b.Kernel
	res := kernelResult{Label: b.Label, Source: b.source(), Systemd: b.Systemd, Log: logPath}
	cmdline := fmt.Sprintf("console=ttyS0 panic=-1 quiet VMTEST_TIMEOUT=%s", guestTimeout(o.timeout))
	if b.Append != "" {
		cmdline += " " + b.Append
	}
	if o.run != "" {
		cmdline += " VMTEST_RUN=" + o.run
	}
	if o.count > 1 {
		cmdline += fmt.Sprintf(" VMTEST_COUNT=%d", o.count)
	}
	if o.short {
		cmdline += " VMTEST_SHORT=1"
	}
	var tee io.Writer
	if o.verbose {
		tee = &prefixWriter{prefix: "[" + b.Label + "] ", w: os.Stderr}
	}
	logf("booting %s (%s)", b.Label, res.Source)
	r := qemu.Boot(ctx, qemu.Config{
		Accel: o.accel, Kernel: k.Path, Initrd: b.Initrd, Append: cmdline,
		MemMB: guestMemMB, CPUs: 2, Timeout: o.timeout, LogPath: logPath, Tee: tee,
	})
	res.Seconds = r.Duration.Seconds()
	g := guestlog.Parse(r.Console)
	c := g.Counts()
	res.Kernel, res.Hooks = g.Kernel, g.Hooks()
	res.Pass, res.Fail, res.Skip = c.Pass, c.Fail, c.Skip
	res.Problems = g.Problems()
	res.Notes = g.Notes
	for _, bin := range g.Binaries {
		res.FailedTests = append(res.FailedTests, bin.Failed()...)
	}
	res.onlyTestsFailed = r.Err == nil && !r.TimedOut && g.OnlyTestsFailed()
	switch {
	case r.Err != nil && !errors.Is(r.Err, context.Canceled):
		res.Status = "failed"
		res.Problems = append([]string{r.Err.Error()}, res.Problems...)
	case r.TimedOut:
		res.Status = "timeout"
		res.Problems = append([]string{fmt.Sprintf("killed after %s", o.timeout)}, res.Problems...)
	case len(g.Binaries) == 0:
		res.Status = "failed"
		res.Problems = append(res.Problems, "no test binary ran in the guest")
	case len(res.Problems) > 0:
		res.Status = "failed"
	default:
		res.Status = "ok"
	}
	logf("%s: %s in %.0fs (%d passed, %d failed, %d skipped) log %s", b.Label, res.Status, res.Seconds, c.Pass, c.Fail, c.Skip, logPath)
	return res
}

// prefixWriter labels each line of a live console copy with its kernel.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	mid    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []byte
	for _, c := range b {
		if !p.mid {
			out = append(out, p.prefix...)
			p.mid = true
		}
		if c == '\r' {
			continue
		}
		out = append(out, c)
		if c == '\n' {
			p.mid = false
		}
	}
	_, err := p.w.Write(out)
	return len(b), err
}

func printReport(w io.Writer, rep report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tSOURCE\tSTATUS\tHOOKS\tPASS\tFAIL\tSKIP\tSECONDS")
	for _, k := range rep.Kernels {
		kernel := k.Kernel
		if kernel == "" {
			kernel = "(" + k.Label + ")"
		} else if k.Systemd != "" {
			kernel += " +systemd"
		}
		hooks := k.Hooks
		if hooks == "" {
			hooks = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.0f\n", kernel, k.Source, k.Status, hooks, k.Pass, k.Fail, k.Skip, k.Seconds)
	}
	tw.Flush()
	for _, k := range rep.Kernels {
		for _, p := range k.Problems {
			fmt.Fprintf(w, "%s: %s\n", k.Label, p)
		}
		for _, n := range k.Notes {
			fmt.Fprintf(w, "%s: guest: %s\n", k.Label, n)
		}
		if k.Status != "ok" && k.Status != "skipped" && k.Log != "" {
			fmt.Fprintf(w, "%s: full console log in %s\n", k.Label, k.Log)
		}
	}
	for _, f := range rep.BuildFailed {
		fmt.Fprintf(w, "build failed: %s\n%s\n", f.Package, indent(f.Output))
	}
	status := "ok"
	if !rep.OK {
		status = "FAILED: " + strings.Join(rep.Why, "; ")
	}
	fmt.Fprintf(w, "vmtest %s (%d binaries, %.0fs total)\n", status, len(rep.Binaries), rep.TotalSeconds)
	// Last, the plain totals line that CI log readers recognise.
	var pass, fail, skip int
	for _, k := range rep.Kernels {
		pass, fail, skip = pass+k.Pass, fail+k.Fail, skip+k.Skip
	}
	fmt.Fprintf(w, "vmtest: %d passed, %d failed, %d skipped\n", pass, fail, skip)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
