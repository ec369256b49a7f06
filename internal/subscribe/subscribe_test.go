package subscribe

import (
	"testing"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

func TestParseFilter(t *testing.T) {
	good := map[string]Filter{"all": {Kind: "all"}, "parent 1": {"parent", 1}, " root  42 ": {"root", 42}}
	for in, want := range good {
		if got, err := ParseFilter(in); err != nil || got != want {
			t.Errorf("ParseFilter(%q) = %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "parent", "parent 0", "parent x", "root -1", "everything", "all 1"} {
		if _, err := ParseFilter(in); err == nil {
			t.Errorf("ParseFilter(%q) accepted", in)
		}
	}
}

func TestFilterMatch(t *testing.T) {
	step := func(pid uint32) events.Step { return events.Step{ID: procfs.ID{PID: pid}} }
	a := &events.Adoption{NewParent: events.Process{ID: procfs.ID{PID: 7}}, Lineage: []events.Step{step(3), step(5), step(9)}}
	for f, want := range map[Filter]bool{{Kind: "all"}: true, {"parent", 7}: true, {"parent", 5}: false,
		{"root", 3}: true, {"root", 9}: true, {"root", 7}: false} {
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
