package loader_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"github.com/adoptwatch/adoptwatch/loader"
)

// TestManyChildren: a parent with N live children exits beneath the test's
// subreaper (a prefork server's master dying). Every adoption is reported
// exactly once, from the right parent; beyond what the exit-walk hook
// follows, each adoption not reported is counted, so that reported + counted
// = N exactly.
func TestManyChildren(t *testing.T) {
	// Scoped to this test's tree, so the counters count only its adoptions;
	// room for 5,000 records at once, should the reader be slow (test VMs).
	eachHook(t, loader.Options{WatchPIDs: []int{os.Getpid()}, RingBytes: 16 << 20}, func(t *testing.T, obs *loader.Observer, c *collector) {
		tree := testsupport.StartTree(t, "idle")
		counts := []int{0, 1, 64, 65, 1000}
		if obs.Mechanism.Hook == events.HookExitWalk {
			// At and beyond the exit walk's limit (ExitWalkMaxChildren =
			// 4,096), past more than one counting run of the BPF side. The
			// exact hook sees each re-parenting on its own, with no
			// per-exit limit, so 1,000 children already cover it; 5,000
			// more cost about a minute under emulation.
			beyond := 5000
			if testing.Short() {
				// The test VMs: 300 past the limit still take two
				// counting runs (256 each). Starting 5,000 there at times
				// never finished (6.1 and 7.x, the first run in a boot;
				// unexplained, see the note of stop 16).
				beyond = loader.ExitWalkMaxChildren + 300
			}
			counts = append(counts, loader.ExitWalkMaxChildren, beyond)
		}
		for _, n := range counts {
			t.Run(fmt.Sprintf("children=%d", n), func(t *testing.T) {
				fanout(t, obs, c, tree.Reaper, func(s string) (int, error) {
					if err := tree.Run(s); err != nil {
						return 0, err
					}
					rep, err := tree.Next("fanout", 10*time.Second)
					return rep.Int(0), err
				}, n)
			})
		}
	})
}

func fanout(t *testing.T, obs *loader.Observer, c *collector, reaper int, run func(string) (int, error), n int) {
	before, err := obs.Counters()
	if err != nil {
		t.Fatal(err)
	}
	parent, err := run(fmt.Sprintf("fanout:%d", n))
	if err != nil {
		t.Fatal(err)
	}
	children := childrenOf(t, parent)
	if len(children) != n {
		unix.Kill(parent, unix.SIGKILL)
		t.Fatalf("fixture: parent %d has %d children, want %d", parent, len(children), n)
	}
	if err := unix.Kill(parent, unix.SIGKILL); err != nil { // ours: the fixture started it
		t.Fatal(err)
	}

	want := n
	if obs.Mechanism.Hook == events.HookExitWalk {
		want = min(n, loader.ExitWalkMaxChildren)
	}
	fromParent := func(a *events.Adoption) bool { return a.PrevParent.PID == uint32(parent) }
	got := c.waitFor(want, 60*time.Second, fromParent)
	// Then the counters: the exit walk settles its count at the parent's
	// final context switch, which may come after its children's adoptions.
	var after loader.Counters
	deadline := time.Now().Add(10 * time.Second)
	for {
		if after, err = obs.Counters(); err != nil {
			t.Fatal(err)
		}
		counted := after.UnfollowedAdoptions - before.UnfollowedAdoptions + after.LostAdoptions - before.LostAdoptions
		if uint64(len(got))+counted >= uint64(n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
		got = c.waitFor(n+1, 0, fromParent)
	}
	time.Sleep(200 * time.Millisecond) // room for a duplicate to show
	got = c.waitFor(n+1, 0, fromParent)

	seen := map[uint32]int{}
	for _, a := range got {
		seen[a.Child.PID]++
		if !children[int(a.Child.PID)] {
			t.Errorf("adoption of %d from %d: not one of its children", a.Child.PID, parent)
		}
		if a.NewParent.PID != uint32(reaper) || a.Reaper != events.ReaperSubreaper {
			t.Errorf("child %d adopted by %d (%s), want the subreaper %d", a.Child.PID, a.NewParent.PID, a.Reaper, reaper)
		}
	}
	for pid, k := range seen {
		if k != 1 {
			t.Errorf("child %d: adoption reported %d times", pid, k)
		}
	}
	unfollowed := after.UnfollowedAdoptions - before.UnfollowedAdoptions
	lost := after.LostAdoptions - before.LostAdoptions
	t.Logf("%d children: %d adoptions reported, %d counted as unfollowed, %d lost to a full ring buffer",
		n, len(seen), unfollowed, lost)
	if len(seen) != want || uint64(len(seen))+unfollowed+lost != uint64(n) {
		t.Errorf("reported %d (want %d) + unfollowed %d + lost %d != %d children", len(seen), want, unfollowed, lost, n)
	}
	if lost != 0 {
		t.Errorf("%d adoption records found the ring buffer full: the reader keeps up with %d", lost, n)
	}
	for child := range children { // ours: the fixture started them
		unix.Kill(child, unix.SIGKILL)
	}
}

// childrenOf lists a process's children, from every thread's children file.
func childrenOf(t *testing.T, pid int) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Fields(string(b)) {
			child, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("children of %d: %q", pid, f)
			}
			out[child] = true
		}
	}
	return out
}
