package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/notify"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/subscribe"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

// execCLI runs `adoptwatch ARGS...` to the end and returns its output and status.
func execCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), envCLI+"=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("adoptwatch %v did not end within 60s", args)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// oneLineExit checks a command that must fail at once with one line on stderr.
func oneLineExit(t *testing.T, want int, args ...string) string {
	t.Helper()
	stdout, stderr, code := execCLI(t, args...)
	// A flag the parser itself refuses gets the usage hint as well.
	msg := strings.TrimSuffix(strings.TrimSpace(stderr), "\nRun 'adoptwatch --help' for usage.")
	if code != want || stdout != "" || msg == "" || strings.Contains(msg, "\n") {
		t.Errorf("adoptwatch %v: exit %d (want %d), stdout %q, stderr %q: want one line", args, code, want, stdout, stderr)
	}
	return stderr
}

func TestReapingFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--zombie-after", "0"},
		{"--zombie-after", "-1s"},
		{"--zombie-after", "soon"},
		{"--metrics", "nonsense"},
		{"--metrics", "127.0.0.1:99999"},
		{"--metrics", "127.0.0.1:http"},
		{"--metrics", ""},
		{"--control-socket", ""},
		{"--metrics-context-labels"},
		{"ps", "--bogus"},
		{"ps", "extra"},
	} {
		oneLineExit(t, 2, args...)
	}
}

// An address in use is the machine's problem, not a flag error: exit 1, one line.
func TestMetricsAddressInUse(t *testing.T) {
	testsupport.RequireBPF(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	msg := oneLineExit(t, 1, "--metrics", busy.Addr().String())
	if !strings.Contains(msg, "address already in use") {
		t.Errorf("in use: %q", msg)
	}
}

// ps without a watcher says so, exit 1.
func TestPsWithoutWatcher(t *testing.T) {
	msg := oneLineExit(t, 1, "ps", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if !strings.Contains(msg, "--control-socket") {
		t.Errorf("does not say how to start a watcher that answers: %q", msg)
	}
}

// ps lists a live adopted daemon with its lineage, and no longer once it has
// exited and been reaped.
func TestPsListsAdoptedDaemon(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		sock := filepath.Join(t.TempDir(), "ctl.sock")
		c := startCLI(t, "--json", "--hook="+hook, "--control-socket", sock)
		c.waitReady(t)
		tree := testsupport.StartTree(t, "doublefork")
		launcher, middle, daemon := testsupport.DoubleFork(t, tree)
		jsonAdoptionOf(t, c, daemon)

		out, errOut, code := execCLI(t, "ps", "--socket", sock)
		if code != 0 {
			t.Fatalf("ps: exit %d: %s", code, errOut)
		}
		row := lineWith(out, fmt.Sprintf("%d ", daemon))
		lineage := regexp.MustCompile(fmt.Sprintf(`aw-reaper\[%d[^]]*\] > aw-launcher\[%d[^]]*\] > aw-middle\[%d[^]]*setsid\] > aw-daemon\[%d\]$`,
			tree.Reaper, launcher, middle, daemon))
		if !contains(row, "aw-daemon", "alive", fmt.Sprintf("%d aw-reaper (subreaper)", tree.Reaper),
			fmt.Sprintf("%d aw-middle", middle), "double-fork") || !lineage.MatchString(row) {
			t.Fatalf("ps row of daemon %d: %q\nps:\n%s", daemon, row, out)
		}
		out, _, _ = execCLI(t, "ps", "--json", "--socket", sock)
		if !strings.Contains(out, fmt.Sprintf(`"pid":%d,"comm":"aw-daemon"`, daemon)) {
			t.Fatalf("ps --json does not list daemon %d:\n%s", daemon, out)
		}

		// The fixture's reaper reaps at once: the daemon leaves the list.
		if err := killPid(daemon); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, _, _ = execCLI(t, "ps", "--socket", sock)
			if lineWith(out, fmt.Sprintf("%d ", daemon)) == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("daemon %d still listed 10s after it was killed and reaped:\n%s", daemon, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// lineWith returns the first line of out that starts with prefix.
func lineWith(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

var metricsAt = regexp.MustCompile(`metrics at http://(\S+)/metrics`)

// metricsAddr reads where the watcher serves its metrics.
func metricsAddr(t *testing.T, c *cli) string {
	t.Helper()
	line, ok := c.stderr.WaitFor(10*time.Second, metricsAt.MatchString)
	if !ok {
		t.Fatalf("no metrics address on stderr:\n%s", c.stderr.Text())
	}
	return metricsAt.FindStringSubmatch(line)[1]
}

// scrape fetches the metrics over HTTP and parses them as Prometheus does.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return fams
}

// metricValue is the value of name's series with these labels (0 if none).
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// histogramBucket is the cumulative count of the bucket le of name's series with labels.
func histogramBucket(fams map[string]*dto.MetricFamily, name string, labels map[string]string, le float64) uint64 {
	f := fams[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.Metric {
		for _, l := range m.Label {
			if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		for _, b := range m.GetHistogram().GetBucket() {
			if b.GetUpperBound() == le {
				return b.GetCumulativeCount()
			}
		}
	}
	return 0
}

// adoptionSeries counts the printed adoption lines by the labels of
// adoptwatch_adoptions_total, waiting for at least n lines adopted by pid.
func adoptionSeries(t *testing.T, c *cli, pid, n int) map[[3]string]int {
	t.Helper()
	lines := c.stdout.JSON(n, 60*time.Second, adoptedBy(pid))
	if len(lines) < n {
		t.Fatalf("only %d adoptions by %d printed, want %d", len(lines), pid, n)
	}
	out := map[[3]string]int{}
	for _, m := range lines {
		out[[3]string{m["reaper"].(string), m["pattern"].(string), m["hook"].(string)}]++
	}
	return out
}

// waitMetrics scrapes until check passes (the sinks run after the printer,
// so a line may be out before it is counted) or 30s have passed.
func waitMetrics(t *testing.T, addr string, check func(map[string]*dto.MetricFamily) string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		msg := check(scrape(t, addr))
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sameAdoptions compares adoptwatch_adoptions_total with what was printed.
func sameAdoptions(printed map[[3]string]int) func(map[string]*dto.MetricFamily) string {
	return func(fams map[string]*dto.MetricFamily) string {
		total := 0
		for k, n := range printed {
			total += n
			labels := map[string]string{"reaper_kind": k[0], "pattern": k[1], "hook": k[2]}
			if got := metricValue(fams, "adoptwatch_adoptions_total", labels); got != float64(n) {
				return fmt.Sprintf("adoptions_total%v = %v, printed %d", labels, got, n)
			}
		}
		var all float64
		for _, m := range fams["adoptwatch_adoptions_total"].GetMetric() {
			all += m.Counter.GetValue()
		}
		if all != float64(total) {
			return fmt.Sprintf("adoptions_total sums to %v, printed %d", all, total)
		}
		// The kernel counts every adoption it sees; those outside the watched
		// trees it does not send.
		seen := metricValue(fams, "adoptwatch_kernel_adoptions_total", nil) - metricValue(fams, "adoptwatch_kernel_unwatched_adoptions_total", nil)
		if seen != float64(total) {
			return fmt.Sprintf("the kernel saw %v watched adoptions, %d printed", seen, total)
		}
		return ""
	}
}

// The metrics endpoint counts what the test produced, also after a burst of
// 1,000 adoptions (100 under -short, as in the test VMs).
func TestMetricsCountAdoptions(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		tree, err := fixture.Start("idle")
		if err != nil {
			t.Fatal(err)
		}
		testsupport.StopAtEnd(t, tree)
		c := startCLI(t, "--json", "--hook="+hook, "--pid", fmt.Sprint(tree.Reaper), "--metrics", "127.0.0.1:0")
		c.waitReady(t)
		addr := metricsAddr(t, c)
		fams := scrape(t, addr)
		if _, ok := fams["adoptwatch_adoptions_total"]; ok {
			t.Fatalf("adoptions counted before any")
		}
		if got := metricValue(fams, "adoptwatch_build_info", map[string]string{"hook": hook}); got != 1 {
			t.Errorf("build info does not name the hook %s", hook)
		}

		// One double fork: two adoptions (the middle, then the daemon).
		if err := tree.Run("doublefork"); err != nil {
			t.Fatal(err)
		}
		_, _, daemon := testsupport.DoubleFork(t, tree)
		jsonAdoptionOf(t, c, daemon)
		printed := adoptionSeries(t, c, tree.Reaper, 2)
		if printed[[3]string{"subreaper", "double-fork", hook}] != 1 {
			t.Fatalf("printed %v", printed)
		}
		waitMetrics(t, addr, sameAdoptions(printed))

		burst := 1000
		if testing.Short() {
			burst = 100 // emulated CPUs in the test VMs are 10-50x slower
		}
		if err := tree.Run(fmt.Sprintf("raw:%d", burst)); err != nil {
			t.Fatal(err)
		}
		printed = adoptionSeries(t, c, tree.Reaper, burst+2)
		waitMetrics(t, addr, sameAdoptions(printed))
		// The fixture's reaper reaps at once: every adopted process but the
		// live daemon is seen reaped, and none is reported. A process adopted
		// while exiting has no exit record, so no delay: counted apart.
		waitMetrics(t, addr, func(f map[string]*dto.MetricFamily) string {
			kind := map[string]string{"reaper_kind": "subreaper"}
			delays := metricValue(f, "adoptwatch_reaped_after_seconds", kind)
			unseen := metricValue(f, "adoptwatch_followed_exit_unseen_total", nil)
			unfollowed := metricValue(f, "adoptwatch_followed_unfollowed_total", nil)
			vanished := metricValue(f, "adoptwatch_followed_vanished_total", nil)
			if want := float64(burst + 1); delays+unseen+unfollowed+vanished != want || delays < 0.95*want {
				return fmt.Sprintf("%v reap delays, %v reaps with the exit unseen, %v reaped before the kernel followed them, %v with the reap record missing: want %d in all (every adoptee but the live daemon), nearly all delays (followed %v, zombies %v; kernel: adoptee records lost %v, adoptees map full %v, unseen events %v)",
					delays, unseen, unfollowed, vanished, burst+1, metricValue(f, "adoptwatch_followed_processes", nil), metricValue(f, "adoptwatch_followed_zombies", nil),
					metricValue(f, "adoptwatch_records_lost_total", map[string]string{"records": "adoptee"}),
					metricValue(f, "adoptwatch_kernel_adoptees_map_full_total", nil), metricValue(f, "adoptwatch_kernel_unseen_events_total", nil))
			}
			if n := metricValue(f, "adoptwatch_unreaped_zombies", kind); n != 0 {
				return fmt.Sprintf("unreaped_zombies %v, want 0", n)
			}
			for _, name := range []string{"adoptwatch_unreaped_events_total", "adoptwatch_followed_evicted_total"} {
				if n := metricValue(f, name, nil); n != 0 {
					return fmt.Sprintf("%s %v, want 0", name, n)
				}
			}
			return ""
		})
		fams = scrape(t, addr)
		if got := metricValue(fams, "adoptwatch_records_lost_total", map[string]string{"records": "adopt"}); got != 0 {
			t.Errorf("records lost: %v", got)
		}
	})
}

// killPid ends a daemon this test started, by its pid.
func killPid(pid int) error { return unix.Kill(pid, unix.SIGKILL) }

// A child subreaper that never calls wait() adopts a double-forked daemon
// that exits: one "unreaped" record after --zombie-after, with the right
// reaper and count; when the test has it reap, "reaped" with a plausible
// delay. The metrics, scraped over HTTP, say the same.
func TestUnreapedThenReaped(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		const after = time.Second
		// Scoped to this test binary's tree: the fixture's processes, nothing else.
		c := startCLI(t, "--json", "--hook="+hook, "--pid", fmt.Sprint(os.Getpid()),
			"--zombie-after", after.String(), "--metrics", "127.0.0.1:0")
		c.waitReady(t)
		addr := metricsAddr(t, c)
		tree, err := fixture.StartLazyReaper()
		if err != nil {
			t.Fatal(err)
		}
		testsupport.StopAtEnd(t, tree)
		middle := testsupport.Next(t, tree, "middle").Int(0)
		adopted := c.stdout.JSON(1, 15*time.Second, func(m map[string]any) bool {
			return m["event"] == "adopt" && testsupport.PartyPID(m, "prev_parent") == middle
		})
		if len(adopted) == 0 {
			t.Fatalf("no adoption from middle %d:\n%s", middle, c.stdout.Text())
		}
		daemon := testsupport.Num(adopted[0], "pid")
		adoptedSeen := time.Now()
		// The daemon pauses once adopted: end it; it stays a zombie.
		if err := killPid(daemon); err != nil {
			t.Fatal(err)
		}

		// One unreaped record.
		got := c.stdout.JSON(1, 15*time.Second, eventOf("unreaped", daemon))
		if len(got) != 1 {
			t.Fatalf("no unreaped record for %d:\n%s", daemon, c.stdout.Text())
		}
		var u output.UnreapedJSON
		testsupport.Decode(got[0], &u)
		if u.NewParent.PID != uint32(tree.Reaper) || u.NewParent.Comm != "aw-lazyreaper" || u.Reaper != "subreaper" ||
			u.Held != 1 || u.Waited < after.Seconds() || u.Waited > after.Seconds()+15 || u.PrevParent == nil ||
			u.PrevParent.PID != uint32(middle) || u.Pattern != "double-fork" || len(u.Lineage) == 0 {
			t.Errorf("unreaped record: %+v", u)
		}
		if since := time.Since(adoptedSeen); since < after-100*time.Millisecond {
			t.Errorf("unreaped after %v, before --zombie-after %v", since, after)
		}
		waitMetrics(t, addr, func(f map[string]*dto.MetricFamily) string {
			kind := map[string]string{"reaper_kind": "subreaper"}
			if v := metricValue(f, "adoptwatch_unreaped_zombies", kind); v != 1 {
				return fmt.Sprintf("unreaped_zombies %v, want 1", v)
			}
			if v := metricValue(f, "adoptwatch_unreaped_events_total", kind); v != 1 {
				return fmt.Sprintf("unreaped_events_total %v, want 1", v)
			}
			return ""
		})
		// Once only, however long it waits.
		time.Sleep(2 * after)
		if n := len(c.stdout.JSON(0, 0, eventOf("unreaped", daemon))); n != 1 {
			t.Errorf("%d unreaped records for %d, want 1", n, daemon)
		}
		if n := len(c.stdout.JSON(0, 0, eventOf("reaped", daemon))); n != 0 {
			t.Fatalf("reaped record before the reaper reaped")
		}

		reapAt := time.Now()
		if err := tree.Reap(); err != nil {
			t.Fatal(err)
		}
		for testsupport.Next(t, tree, "reaped").Int(0) != daemon {
		}
		got = c.stdout.JSON(1, 15*time.Second, eventOf("reaped", daemon))
		if len(got) != 1 {
			t.Fatalf("no reaped record for %d:\n%s", daemon, c.stdout.Text())
		}
		var r output.ReapedJSON
		testsupport.Decode(got[0], &r)
		exited, _ := time.Parse(time.RFC3339Nano, r.Exited)
		lower := reapAt.Sub(exited).Seconds() - 0.5
		if r.NewParent.PID != uint32(tree.Reaper) || r.Held != 0 || r.Waited < lower || r.Waited > lower+5 ||
			r.Waited < 3*after.Seconds() {
			t.Errorf("reaped record: %+v (reaped about %v after the exit)", r, reapAt.Sub(exited))
		}
		waitMetrics(t, addr, func(f map[string]*dto.MetricFamily) string {
			kind := map[string]string{"reaper_kind": "subreaper"}
			if v := metricValue(f, "adoptwatch_unreaped_zombies", kind); v != 0 {
				return fmt.Sprintf("unreaped_zombies %v after the reap, want 0", v)
			}
			if v := metricValue(f, "adoptwatch_reaped_events_total", kind); v != 1 {
				return fmt.Sprintf("reaped_events_total %v, want 1", v)
			}
			if v := metricValue(f, "adoptwatch_reaped_after_seconds", kind); v != 1 {
				return fmt.Sprintf("reaped_after_seconds count %v, want 1", v)
			}
			return ""
		})
	})
}

// A reaper that reaps produces neither record: the fixture's reaper reaps at
// once a daemon the test kills.
func TestPromptReaperNoRecords(t *testing.T) {
	eachHook(t, func(t *testing.T, hook string) {
		// Long enough that a reaper which reaps at once does so in time even
		// on a loaded machine (other test packages run beside this one).
		const after = 2 * time.Second
		c := startCLI(t, "--json", "--hook="+hook, "--pid", fmt.Sprint(os.Getpid()), "--zombie-after", after.String(),
			"--metrics", "127.0.0.1:0")
		c.waitReady(t)
		addr := metricsAddr(t, c)
		tree := testsupport.StartTree(t, "doublefork")
		_, _, daemon := testsupport.DoubleFork(t, tree)
		jsonAdoptionOf(t, c, daemon)
		if err := killPid(daemon); err != nil {
			t.Fatal(err)
		}
		for testsupport.Next(t, tree, "reaped").Int(0) != daemon {
		}
		time.Sleep(after + time.Second)
		for _, ev := range []string{"unreaped", "reaped"} {
			if got := c.stdout.JSON(0, 0, eventOf(ev, daemon)); len(got) != 0 {
				t.Errorf("a reaper that reaps got %s records: %v", ev, got)
			}
		}
		// Its reap was seen (not guessed from /proc): a prompt delay in the histogram.
		fams := scrape(t, addr)
		kind := map[string]string{"reaper_kind": "subreaper"}
		if n := histogramBucket(fams, "adoptwatch_reaped_after_seconds", kind, after.Seconds()); n < 1 {
			t.Errorf("no reap within %v in the histogram", after)
		}
		for name, want := range map[string]float64{"adoptwatch_unreaped_events_total": 0, "adoptwatch_reaped_events_total": 0} {
			if got := metricValue(fams, name, nil); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
	})
}

func eventOf(event string, pid int) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["event"] == event && testsupport.Num(m, "pid") == pid }
}

// The signal sink's and the subscriber socket's counts reach the metrics.
func TestMetricsNotifyAndSocket(t *testing.T) {
	testsupport.RequireBPF(t)
	ok := startNotified(t, notify.RTMin+3, "sigwait", "doublefork")
	full := startNotified(t, notify.RTMin+5, "full", "doublefork")
	sock := filepath.Join(t.TempDir(), "sub.sock")
	c := startWatching(t, "--json", "--metrics", "127.0.0.1:0", "--socket", sock,
		"--notify-pid", itoa(ok.Reaper), "--notify-signal", "RTMIN+3",
		"--notify-pid", itoa(full.Reaper), "--notify-signal", "RTMIN+5")
	addr := metricsAddr(t, c)
	sub, err := subscribe.Dial(sock, "all")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if rec, err := sub.Next(); err != nil || rec.Fields["event"] != "subscribed" {
		t.Fatalf("subscribing: %v %v", rec.Fields, err)
	}
	for _, tree := range []*fixture.Tree{ok, full} {
		if err := tree.Go(); err != nil {
			t.Fatal(err)
		}
		testsupport.KillAtEnd(t, testsupport.Next(t, tree, "daemon").Int(0))
	}
	testsupport.Next(t, ok, "sig")
	testsupport.Next(t, ok, "sig")
	c.stdout.JSON(2, 10*time.Second, func(m map[string]any) bool { return m["event"] == "notify-failed" })
	waitMetrics(t, addr, func(f map[string]*dto.MetricFamily) string {
		for name, want := range map[string]float64{
			"adoptwatch_notify_deliveries_total": 2,
			"adoptwatch_socket_subscribers":      1,
			"adoptwatch_socket_accepted_total":   1,
		} {
			if got := metricValue(f, name, nil); got != want {
				return fmt.Sprintf("%s = %v, want %v", name, got, want)
			}
		}
		if got := metricValue(f, "adoptwatch_notify_failures_total", map[string]string{"errno": "EAGAIN"}); got != 2 {
			return fmt.Sprintf("notify_failures_total{errno=EAGAIN} = %v, want 2", got)
		}
		return ""
	})
	sub.Close()
	waitMetrics(t, addr, func(f map[string]*dto.MetricFamily) string {
		if got := metricValue(f, "adoptwatch_socket_subscribers", nil); got != 0 {
			return fmt.Sprintf("socket_subscribers %v after the subscriber left, want 0", got)
		}
		if got := metricValue(f, "adoptwatch_socket_disconnects_total", map[string]string{"reason": "closed-by-peer"}); got != 1 {
			return fmt.Sprintf("disconnects{closed-by-peer} %v, want 1", got)
		}
		return ""
	})
}
