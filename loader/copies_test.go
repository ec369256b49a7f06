package loader_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"github.com/adoptwatch/adoptwatch/loader"
)

// TestCopiesEveryEventOfOneTask: with one copy of the fork, exec and exit
// programs (and with three), every event about the same task is handled: a
// process that execs twice more after its first exec, forks several children
// that exec and exit, then exits. With one copy the primary is also the last
// copy: a claim it left in the per-CPU slot would hide the next event about
// that task. Only the copies asked for are loaded.
func TestCopiesEveryEventOfOneTask(t *testing.T) {
	const forks = 6
	for _, copies := range []int{1, 3} {
		t.Run(map[int]string{1: "copies=1", 3: "copies=3"}[copies], func(t *testing.T) {
			testsupport.EachHook(t, func(t *testing.T, hook events.Hook) {
				obs := testsupport.Open(t, loader.Options{Hook: hook, TaskRecords: true, WatchPIDs: []int{os.Getpid()}, Copies: copies})
				if obs.Copies != copies {
					t.Fatalf("Observer.Copies = %d, want %d", obs.Copies, copies)
				}
				stats, err := obs.ProgramStats()
				if err != nil {
					t.Fatal(err)
				}
				spares := 0
				for _, s := range stats {
					if strings.Contains(s.Name, "_spare") {
						spares++
					}
				}
				if wantLoaded := copies > 1; (spares > 0) != wantLoaded {
					t.Errorf("%d copies: %d spare programs loaded", copies, spares)
				}
				t.Logf("%d programs loaded (%d spares): %s", len(stats), spares, obs.CopiesNote())
				c := collect(obs)

				// exec #1 is sh itself; it execs sh (#2), which execs sh (#3),
				// which runs /bin/true in as many children.
				loop := strings.Repeat("/bin/true; ", forks) + "exit 0" // no variables: three levels of quoting
				cmd := exec.Command("/bin/sh", "-c", `exec /bin/sh -c 'exec /bin/sh -c "`+loop+`"'`)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				pid := uint32(cmd.Process.Pid)
				if err := cmd.Wait(); err != nil {
					t.Fatalf("workload: %v", err)
				}

				var execs, childForks, childExecs, childExits, exits int
				c.records.Wait(10*time.Second, func(all []events.Record, _ bool) bool {
					execs, childForks, childExecs, childExits, exits = 0, 0, 0, 0, 0
					children := map[uint32]bool{}
					for _, r := range all {
						if ev := r.Task; ev != nil && ev.Kind == events.KindFork && ev.Process.PID == pid {
							childForks++
							children[ev.Child.PID] = true
						}
					}
					for _, r := range all {
						ev := r.Task
						switch {
						case ev == nil:
						case ev.Kind == events.KindExec && ev.Process.PID == pid:
							execs++
						case ev.Kind == events.KindExit && ev.ProcessExit && ev.Process.PID == pid:
							exits++
						case ev.Kind == events.KindExec && children[ev.Process.PID]:
							childExecs++
						case ev.Kind == events.KindExit && ev.ProcessExit && children[ev.Process.PID]:
							childExits++
						}
					}
					return execs >= 3 && childForks >= forks && childExecs >= forks && childExits >= forks && exits >= 1
				})
				t.Logf("pid %d: %d execs, %d forks, %d execs and %d exits of its children, %d exits", pid, execs, childForks, childExecs, childExits, exits)
				if execs < 3 || childForks < forks || childExecs < forks || childExits < forks || exits < 1 {
					t.Errorf("events unhandled: want 3 execs, %d forks, %d execs and exits of the children, 1 exit", forks, forks)
				}
				counters, err := obs.Counters()
				if err != nil {
					t.Fatal(err)
				}
				// An event is handled twice only after a spare copy took over
				// from a preempted one (bpf/copies.bpf.h).
				if execs > 3 || childForks > forks || childExecs > forks || childExits > forks || exits > 1 {
					if copies == 1 || counters.SpareRuns == 0 {
						t.Errorf("events handled twice with %d copies and %d spare runs", copies, counters.SpareRuns)
					}
				}
				if copies == 1 && counters.SpareRuns != 0 {
					t.Errorf("one copy, yet %d spare runs", counters.SpareRuns)
				}
			})
		})
	}
}
