package loader_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/bench"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"github.com/adoptwatch/adoptwatch/loader"
)

// TestCopiesCost measures what one copy of the fork/exec/exit programs saves
// against three, side by side in one run, configurations alternated in each
// round: the time to open an Observer with the exit-walk hook (loading and
// verifying dominate it), and the kernel-side cost of a fork+exit+wait
// cycle, summed over the programs from the kernel's run statistics
// (BPF_ENABLE_STATS, off again at the end). It prints figures and asserts
// nothing timed; it runs only when ADOPTWATCH_COPIES_COST=1 (it takes a while):
//
//	ADOPTWATCH_COPIES_COST=1 go test -count=1 -run CopiesCost -v ./loader/
func TestCopiesCost(t *testing.T) {
	if os.Getenv("ADOPTWATCH_COPIES_COST") != "1" {
		t.Skip("a measurement: set ADOPTWATCH_COPIES_COST=1 to run it")
	}
	testsupport.RequireBPF(t)
	const rounds, cycles = 7, 5000
	configs := []int{1, 3}

	opens := map[int][]float64{} // ms
	perCycle := map[int][]float64{}
	taskPerCycle := map[int][]float64{}
	programs := map[int]map[string][2]float64{} // per config: runs and ns per cycle, last round

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Skipf("cannot enable BPF run statistics: %v", err)
	}
	defer stats.Close()

	for round := range rounds {
		order := slices.Clone(configs)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, copies := range order {
			start := time.Now()
			obs, err := loader.Open(loader.Options{Hook: events.HookExitWalk, Copies: copies})
			if err != nil {
				t.Fatal(err)
			}
			opens[copies] = append(opens[copies], float64(time.Since(start).Microseconds())/1000)

			before, err := obs.ProgramStats()
			if err != nil {
				obs.Close()
				t.Fatal(err)
			}
			for range cycles {
				pid, err := bench.ForkExit()
				if err != nil {
					obs.Close()
					t.Fatal(err)
				}
				var ws unix.WaitStatus
				if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
					obs.Close()
					t.Fatal(err)
				}
			}
			after, err := obs.ProgramStats()
			obs.Close()
			if err != nil {
				t.Fatal(err)
			}
			var total, task float64
			per := map[string][2]float64{}
			for i, a := range after {
				b := before[i]
				ns := float64(a.RunTime-b.RunTime) / cycles
				per[a.Name] = [2]float64{float64(a.RunCount-b.RunCount) / cycles, ns}
				total += ns
				if strings.HasPrefix(a.Name, "on_fork") || strings.HasPrefix(a.Name, "on_exit") || a.Name == "on_free" {
					task += ns
				}
			}
			perCycle[copies] = append(perCycle[copies], total)
			taskPerCycle[copies] = append(taskPerCycle[copies], task)
			programs[copies] = per
		}
	}

	var out strings.Builder
	fmt.Fprintf(&out, "%d rounds, configurations alternated; %d fork+exit+wait cycles per round and configuration\n", rounds, cycles)
	fmt.Fprintf(&out, "%-8s %14s %22s %30s\n", "copies", "open ms", "ns/cycle all programs", "ns/cycle fork+exit+free progs")
	for _, c := range configs {
		o, a, k := bench.Summarize(opens[c]), bench.Summarize(perCycle[c]), bench.Summarize(taskPerCycle[c])
		fmt.Fprintf(&out, "%-8d %8.0f ±%3.0f%% %16.0f ±%3.0f%% %24.0f ±%3.0f%%\n", c,
			o.Median, 50*o.Spread(), a.Median, 50*a.Spread(), k.Median, 50*k.Spread())
	}
	o1, o3 := bench.Summarize(opens[1]).Median, bench.Summarize(opens[3]).Median
	a1, a3 := bench.Summarize(perCycle[1]).Median, bench.Summarize(perCycle[3]).Median
	k1, k3 := bench.Summarize(taskPerCycle[1]).Median, bench.Summarize(taskPerCycle[3]).Median
	fmt.Fprintf(&out, "ratio 1/3: open %.2f, all programs %.2f, fork+exit+free programs %.2f\n", o1/o3, a1/a3, k1/k3)
	fmt.Fprintf(&out, "opens (ms), in round order: 1 copy %v; 3 copies %v\n", roundAll(opens[1]), roundAll(opens[3]))
	for _, c := range configs {
		fmt.Fprintf(&out, "per program, %d cop%s, last round (runs/cycle, ns/cycle):", c, map[bool]string{true: "y", false: "ies"}[c == 1])
		names := make([]string, 0, len(programs[c]))
		for n := range programs[c] {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			if p := programs[c][n]; p[0] > 0 {
				fmt.Fprintf(&out, " %s %.2f %.0f;", n, p[0], p[1])
			}
		}
		out.WriteString("\n")
	}
	t.Log("\n" + out.String())
}

func roundAll(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(int(x + 0.5))
	}
	return out
}
