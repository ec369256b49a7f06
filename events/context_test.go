package events

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/pidns"
)

// TestContextsReuseLast: consecutive adoptions from the same cgroups share
// one Context, and only while the resolver would answer as it did.
func TestContextsReuseLast(t *testing.T) {
	m, err := cgroups.FindMount()
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy here: %v", err)
	}
	res, err := cgroups.NewResolver(m, 2) // small, to see an eviction
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	root, err := cgroups.ID(m.Dir)
	if err != nil {
		t.Fatal(err)
	}
	// Two cgroups of our own (cgroupfs needs root), one to evict with.
	var made []uint64
	for _, name := range []string{"a", "b"} {
		dir := filepath.Join(m.Dir, fmt.Sprintf("adoptwatch-ctxtest-%d-%s", os.Getpid(), name))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Skipf("cannot make a cgroup (needs root): %v", err)
		}
		defer os.Remove(dir)
		id, err := cgroups.ID(dir)
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, id)
	}
	self, other := made[0], made[1]
	c := &Contexts{Cgroups: res, Reapers: pidns.NewKinds(8)}
	adoption := func(lineage ...uint64) *Adoption {
		a := &Adoption{Reaper: ReaperSubreaper}
		a.Child.CgroupID, a.PrevParent.CgroupID, a.NewParent.CgroupID = self, self, root
		for _, id := range lineage {
			a.Lineage = append(a.Lineage, Step{CgroupID: id})
		}
		return a
	}

	a1, a2 := adoption(0, root, self), adoption(0, root, self)
	c.resolve(a1)
	c.resolve(a2)
	if a1.Context != a2.Context {
		t.Error("the same cgroups did not share the context")
	}
	if a1.Context.Child.State != cgroups.Resolved || a1.Context.Lineage[0].State != cgroups.Unresolved {
		t.Errorf("context %+v", a1.Context)
	}

	a3 := adoption(0, root, root)
	c.resolve(a3)
	if a3.Context == a2.Context || a3.Context.Lineage[2].ID != root {
		t.Errorf("a step in another cgroup got the last context: %+v", a3.Context.Lineage)
	}
	a4 := adoption(0, root)
	c.resolve(a4)
	if a4.Context == a3.Context || len(a4.Context.Lineage) != 2 {
		t.Errorf("a shorter lineage got the last context: %+v", a4.Context.Lineage)
	}

	// An eviction in the resolver (a third id in a cache of two) may change
	// its answers: the context is built again, with the same content.
	a5 := adoption(0, root)
	res.Lookup(other) // a third cgroup in a cache of two: one is evicted
	c.resolve(a5)
	if a5.Context == a4.Context || !reflect.DeepEqual(*a5.Context, *a4.Context) {
		t.Errorf("after an eviction: shared %v, equal %v", a5.Context == a4.Context, reflect.DeepEqual(*a5.Context, *a4.Context))
	}
}

func TestContextRetryable(t *testing.T) {
	for _, c := range []struct {
		info cgroups.Info
		want bool
	}{
		{cgroups.Info{ID: 0, State: cgroups.Unresolved}, false}, // the kernel gave no id: nothing to retry
		{cgroups.Info{ID: 7, State: cgroups.Unresolved}, true},
		{cgroups.Info{ID: 7, State: cgroups.Gone}, false},
		{cgroups.Info{ID: 7, State: cgroups.Resolved}, false},
	} {
		if got := retryable(c.info); got != c.want {
			t.Errorf("retryable(%+v) = %v", c.info, got)
		}
	}
}
