package loader_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"github.com/adoptwatch/adoptwatch/loader"
)

// adoptedBy counts the adoptions into a tree's reaper reported so far.
func adoptedBy(c *collector, tree *fixture.Tree) int {
	return len(c.waitFor(0, 0, func(a *events.Adoption) bool { return a.NewParent.PID == uint32(tree.Reaper) }))
}

// daemonise runs n raw double forks beneath the tree's reaper.
func daemonise(t *testing.T, tree *fixture.Tree, n int) {
	t.Helper()
	if err := tree.Run(fmt.Sprintf("raw:%d", n)); err != nil {
		t.Fatal(err)
	}
}

// expectAdoptions waits until the tree's reaper has want adoptions in all, and
// a little longer to catch any beyond.
func expectAdoptions(t *testing.T, c *collector, tree *fixture.Tree, want int, what string) {
	t.Helper()
	c.waitFor(want, 10*time.Second, func(a *events.Adoption) bool { return a.NewParent.PID == uint32(tree.Reaper) })
	time.Sleep(300 * time.Millisecond)
	if got := adoptedBy(c, tree); got != want {
		t.Fatalf("%s: %d adoptions into reaper %d reported, want %d", what, got, tree.Reaper, want)
	}
}

func TestWatchPIDs(t *testing.T) {
	var watched, other *fixture.Tree
	eachHookOpened(t, func(t *testing.T) loader.Options {
		watched = testsupport.StartTree(t, "idle")
		other = testsupport.StartTree(t, "idle")
		return loader.Options{WatchPIDs: []int{watched.Reaper}}
	}, func(t *testing.T, obs *loader.Observer, c *collector) {
		if obs.Seeded < 1 {
			t.Errorf("seeded %d processes, want at least the root", obs.Seeded)
		}
		before, _ := obs.Counters()
		daemonise(t, watched, 3)
		daemonise(t, other, 3)
		expectAdoptions(t, c, watched, 3, "watched tree")
		expectAdoptions(t, c, other, 0, "unrelated tree")
		after, err := obs.Counters()
		if err != nil {
			t.Fatal(err)
		}
		// (UnwatchedAdoptions counts only what reaches the hook: the exit walk
		// already skips unwatched children, the exact hook counts them.)
		if n := after.LostAdoptions - before.LostAdoptions; n != 0 {
			t.Errorf("%d adoptions lost", n)
		}

		if err := obs.Unwatch(watched.Reaper); err != nil {
			t.Fatal(err)
		}
		daemonise(t, watched, 3)
		expectAdoptions(t, c, watched, 3, "after Unwatch")
	})
}

// TestUnwatchWhenWatchingAll: an unwatched tree stays off, its new children
// too, whether it predates the observer or not; other trees stay on.
func TestUnwatchWhenWatchingAll(t *testing.T) {
	var old *fixture.Tree
	eachHookOpened(t, func(t *testing.T) loader.Options {
		old = testsupport.StartTree(t, "idle")
		return loader.Options{}
	}, func(t *testing.T, obs *loader.Observer, c *collector) {
		young := testsupport.StartTree(t, "idle") // forked after Open: has a lineage entry
		other := testsupport.StartTree(t, "idle")
		for _, tree := range []*fixture.Tree{old, young} {
			daemonise(t, tree, 2)
			expectAdoptions(t, c, tree, 2, "before Unwatch")
			if err := obs.Unwatch(tree.Reaper); err != nil {
				t.Fatal(err)
			}
			daemonise(t, tree, 2)
			expectAdoptions(t, c, tree, 2, "after Unwatch")
		}
		daemonise(t, other, 2)
		expectAdoptions(t, c, other, 2, "a tree never unwatched")
	})
}

// TestUnwatchPinned: a separate process (as `adoptwatch unwatch` is) switches a
// tree off through the pinned maps.
func TestUnwatchPinned(t *testing.T) {
	testsupport.RequireBPF(t)
	// A private BPF file system, so the test changes nothing machine-wide.
	fs := t.TempDir()
	if err := unix.Mount("bpf", fs, "bpf", 0, ""); err != nil {
		t.Skipf("cannot mount a BPF file system: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(fs, unix.MNT_DETACH) })
	dir := filepath.Join(fs, "adoptwatch")
	eachHookOpened(t, func(t *testing.T) loader.Options {
		return loader.Options{PinDir: dir}
	}, func(t *testing.T, obs *loader.Observer, c *collector) {
		tree := testsupport.StartTree(t, "idle")
		if err := loader.UnwatchPinned(dir, tree.Reaper); err != nil {
			t.Fatal(err)
		}
		daemonise(t, tree, 2)
		expectAdoptions(t, c, tree, 0, "after UnwatchPinned")
		obs.Close()
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pins left behind at %s after Close: %v", dir, err)
		}
	})
	if err := loader.UnwatchPinned(dir, os.Getpid()); err == nil {
		t.Errorf("UnwatchPinned without a running observer succeeded")
	}
}

func TestWatchCgroup(t *testing.T) {
	mounts := loader.CgroupV2Mounts()
	if len(mounts) == 0 {
		t.Skip("no cgroup v2 mounted")
	}
	var inside, outside *fixture.Tree
	var cgDir string
	eachHookOpened(t, func(t *testing.T) loader.Options {
		cgDir = filepath.Join(mounts[0], fmt.Sprintf("adoptwatch-test-%d", os.Getpid()))
		if err := os.Mkdir(cgDir, 0o755); err != nil {
			t.Skipf("cannot create a cgroup: %v", err)
		}
		t.Cleanup(func() {
			// The tree's Stop (registered later, run earlier) has emptied it.
			for i := 0; i < 100; i++ {
				if err := os.Remove(cgDir); err == nil || errors.Is(err, os.ErrNotExist) {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Errorf("could not remove cgroup %s", cgDir)
		})
		inside = testsupport.StartTree(t, "idle")
		outside = testsupport.StartTree(t, "idle")
		if err := os.WriteFile(filepath.Join(cgDir, "cgroup.procs"), []byte(strconv.Itoa(inside.Reaper)), 0); err != nil {
			t.Skipf("cannot move a process into the cgroup: %v", err)
		}
		// A relative path, as a user would give it.
		return loader.Options{WatchCgroup: "/" + filepath.Base(cgDir)}
	}, func(t *testing.T, obs *loader.Observer, c *collector) {
		daemonise(t, inside, 3)
		daemonise(t, outside, 3)
		expectAdoptions(t, c, inside, 3, "tree in the watched cgroup")
		expectAdoptions(t, c, outside, 0, "tree outside it")
		if err := obs.Unwatch(inside.Reaper); err != nil {
			t.Fatal(err)
		}
		daemonise(t, inside, 3)
		expectAdoptions(t, c, inside, 3, "after Unwatch")
	})
}
