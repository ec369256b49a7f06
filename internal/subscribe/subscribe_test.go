package subscribe

import (
	"strings"
	"testing"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

func TestParseFilter(t *testing.T) {
	good := map[string]Filter{"all": {Kind: "all"}, "parent 1": {Kind: "parent", PID: 1}, " root  42 ": {Kind: "root", PID: 42},
		"unit forker.service": {Kind: "unit", Pattern: "forker.service"}, "unit docker-*.scope": {Kind: "unit", Pattern: "docker-*.scope"},
		"container 3f6c": {Kind: "container", Pattern: "3f6c"}}
	for in, want := range good {
		if got, err := ParseFilter(in); err != nil || got != want {
			t.Errorf("ParseFilter(%q) = %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "parent", "parent 0", "parent x", "root -1", "everything", "all 1",
		"unit", "unit [", "unit a/b.service", "unit a b", "container", "container a*", "container " + strings.Repeat("a", 65)} {
		if _, err := ParseFilter(in); err == nil {
			t.Errorf("ParseFilter(%q) accepted", in)
		}
	}
}

func TestFilterMatch(t *testing.T) {
	step := func(pid uint32) events.Step { return events.Step{ID: procfs.ID{PID: pid}} }
	a := &events.Adoption{NewParent: events.Process{ID: procfs.ID{PID: 7}}, Lineage: []events.Step{step(3), step(5), step(9)}}
	for f, want := range map[Filter]bool{{Kind: "all"}: true, {Kind: "parent", PID: 7}: true, {Kind: "parent", PID: 5}: false,
		{Kind: "root", PID: 3}: true, {Kind: "root", PID: 9}: true, {Kind: "root", PID: 7}: false,
		{Kind: "unit", Pattern: "x.service"}: false, {Kind: "container", Pattern: "3f"}: false} {
		if got := f.Match(a); got != want {
			t.Errorf("%v.Match = %v, want %v", f, got, want)
		}
	}
}

// TestFilterMatchContext: unit and container filters look at the adopted
// process and every lineage step, and never at unresolved cgroups.
func TestFilterMatchContext(t *testing.T) {
	const id = "3f6c1a0e9b7d42c58e21f0a4d6b9c3e7a1f5d8b2c6e9a0f3b7d1c4e8a2f6b9d0"
	info := func(path string) cgroups.Info {
		return cgroups.Info{State: cgroups.Resolved, Path: path, Context: cgroups.Describe(path)}
	}
	a := &events.Adoption{Context: &events.Context{
		Child:   info("/docker/" + id),
		Lineage: []cgroups.Info{{State: cgroups.Gone}, info("/system.slice/forker.service"), info("/docker/" + id)},
	}}
	for f, want := range map[Filter]bool{
		{Kind: "unit", Pattern: "forker.service"}: true, {Kind: "unit", Pattern: "system.slice"}: true,
		{Kind: "unit", Pattern: "*.socket"}: false, {Kind: "container", Pattern: "3f6c1a"}: true,
		{Kind: "container", Pattern: "3f6d"}: false,
	} {
		if got := f.Match(a); got != want {
			t.Errorf("%v.Match = %v, want %v", f, got, want)
		}
	}
}

func TestAuthorize(t *testing.T) {
	cases := []struct {
		p    Peer
		gid  int
		want bool
	}{
		{Peer{UID: 0}, -1, true},
		{Peer{UID: 1000, GID: 1000}, -1, false},
		{Peer{UID: 1000, GID: 50}, 50, true},
		{Peer{UID: 1000, GID: 1000, Groups: []uint32{4, 50}}, 50, true},
		{Peer{UID: 1000, GID: 1000, Groups: []uint32{4}}, 50, false},
	}
	for _, c := range cases {
		if got, why := Authorize(c.p, c.gid); got != c.want {
			t.Errorf("Authorize(%+v, %d) = %v (%s)", c.p, c.gid, got, why)
		}
	}
}
