package events

import (
	"slices"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/bpf"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

func TestReaperKind(t *testing.T) {
	ns := uint32(bpf.AdoptwatchReaperFlagREAPER_IS_NS_CHILD_REAPER)
	sub := uint32(bpf.AdoptwatchReaperFlagREAPER_IS_CHILD_SUBREAPER)
	for _, tc := range []struct {
		flags, level uint32
		want         Reaper
	}{
		{ns, 0, ReaperInit},
		{ns | sub, 0, ReaperInit}, // systemd sets the subreaper bit too
		{ns, 2, ReaperNS},
		{sub, 0, ReaperSubreaper},
		{sub, 1, ReaperSubreaper},
		{0, 0, ReaperOther},
	} {
		if got := ReaperKind(tc.flags, tc.level); got != tc.want {
			t.Errorf("ReaperKind(%b, %d) = %s, want %s", tc.flags, tc.level, got, tc.want)
		}
	}
}

func steps(spec ...[2]uint32) []Step {
	var out []Step
	for _, s := range spec {
		out = append(out, Step{ID: procfs.ID{PID: s[0]}, SID: s[1]})
	}
	markSetsid(out)
	return out
}

func TestDaemonPattern(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lineage []Step
		want    Pattern
	}{
		{"double fork", steps([2]uint32{10, 10}, [2]uint32{11, 10}, [2]uint32{12, 12}, [2]uint32{13, 12}), PatternDoubleFork},
		{"fork then setsid", steps([2]uint32{10, 10}, [2]uint32{11, 11}), PatternForkSetsid},
		{"plain orphan", steps([2]uint32{10, 10}, [2]uint32{11, 10}), PatternOrphan},
		{"empty", nil, PatternOrphan},
	} {
		if got := DaemonPattern(tc.lineage); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	l := steps([2]uint32{10, 10}, [2]uint32{11, 10}, [2]uint32{12, 12}, [2]uint32{13, 12})
	for i, want := range []bool{false, false, true, false} {
		if l[i].Setsid != want {
			t.Errorf("step %d setsid = %v, want %v", i, l[i].Setsid, want)
		}
	}
}

func TestTableIdentityAndAncestors(t *testing.T) {
	tab := NewTable(100)
	tab.Put(procfs.Stat{ID: procfs.ID{PID: 1, Start: 0}, PPID: 0, Comm: "init"})
	tab.Put(procfs.Stat{ID: procfs.ID{PID: 100, Start: 5 * time.Second}, PPID: 1, SID: 100, Comm: "sshd"})
	tab.Put(procfs.Stat{ID: procfs.ID{PID: 200, Start: 6 * time.Second}, PPID: 100, SID: 200, Comm: "bash"})

	// The kernel's start time has nanoseconds, /proc's only ticks: they match.
	if _, ok := tab.Lookup(procfs.ID{PID: 200, Start: 6*time.Second + 3*time.Millisecond}); !ok {
		t.Errorf("same process at a finer precision should match")
	}
	// A reused pid (another start time) never matches.
	if _, ok := tab.Lookup(procfs.ID{PID: 200, Start: 9 * time.Second}); ok {
		t.Errorf("reused pid matched")
	}
	up, complete := tab.Ancestors(procfs.ID{PID: 200, Start: 6 * time.Second})
	if len(up) != 2 || up[0].PID != 1 || up[1].PID != 100 || !complete {
		t.Errorf("ancestors %+v complete=%v", up, complete)
	}
	// A parent pid now held by a younger process is not the parent.
	tab.Put(procfs.Stat{ID: procfs.ID{PID: 100, Start: 60 * time.Second}, PPID: 1, Comm: "imposter"})
	if up, complete := tab.Ancestors(procfs.ID{PID: 200, Start: 6 * time.Second}); len(up) != 0 || complete {
		t.Errorf("walked into a reused pid: %+v", up)
	}
}

func TestTableBounded(t *testing.T) {
	tab := NewTable(3)
	for pid := uint32(1); pid <= 10; pid++ {
		tab.Put(procfs.Stat{ID: procfs.ID{PID: pid}})
	}
	if tab.Len() != 3 || tab.Evicted != 7 {
		t.Errorf("len %d evicted %d, want 3 and 7", tab.Len(), tab.Evicted)
	}
	if _, ok := tab.Get(10); !ok {
		t.Errorf("newest entry evicted")
	}
	if _, ok := tab.Get(1); ok {
		t.Errorf("oldest entry kept")
	}
}

func TestAssembleExtendsPreexisting(t *testing.T) {
	tab := NewTable(100)
	tab.Put(procfs.Stat{ID: procfs.ID{PID: 1, Start: 0}, Comm: "init"})
	tab.Put(procfs.Stat{ID: procfs.ID{PID: 50, Start: time.Second}, PPID: 1, SID: 50, Comm: "supervisor"})
	tab.Put(procfs.Stat{ID: procfs.ID{PID: 100, Start: 2 * time.Second}, PPID: 50, SID: 100, Comm: "bash"})
	rec, err := NewAssembler(Clock{}, tab).Assemble(encode(t, doubleForkRecord()))
	if err != nil {
		t.Fatal(err)
	}
	a := rec.Adoption
	var pids []uint32
	for _, s := range a.Lineage {
		pids = append(pids, s.PID)
	}
	if len(pids) != 6 || pids[0] != 1 || pids[1] != 50 || pids[2] != 100 {
		t.Fatalf("lineage %v, want [1 50 100 101 102 103]", pids)
	}
	if !a.LineageComplete || a.Lineage[0].Source != "proc" || a.Lineage[2].Source != "kernel" {
		t.Errorf("resolved lineage %+v complete=%v", a.Lineage, a.LineageComplete)
	}
	if !a.Lineage[1].Setsid || a.Lineage[2].Setsid != true {
		// supervisor (sid 50 != init's 0) and bash (sid 100 != 50) each started a session
		t.Errorf("setsid marks after resolution: %+v", a.Lineage)
	}
	if k, ok := tab.Lookup(procfs.ID{PID: 103, Start: 4 * time.Second}); !ok || k.PPID != 50 {
		t.Errorf("the adopted process should be remembered with its new parent: %+v", k)
	}
}

// TestTableAncestorsLoop: a table whose parents form a loop (pids read from
// /proc at different moments can) ends the walk instead of circling.
func TestTableAncestorsLoop(t *testing.T) {
	tab := NewTable(100)
	tab.Put(procfs.Stat{ID: procfs.ID{PID: 10, Start: time.Second}, PPID: 11, Comm: "a"})
	tab.Put(procfs.Stat{ID: procfs.ID{PID: 11, Start: time.Second}, PPID: 12, Comm: "b"})
	tab.Put(procfs.Stat{ID: procfs.ID{PID: 12, Start: time.Second}, PPID: 10, Comm: "c"})
	up, complete := tab.Ancestors(procfs.ID{PID: 10, Start: time.Second})
	if complete || len(up) != 2 || up[0].PID != 12 || up[1].PID != 11 {
		t.Errorf("ancestors of a loop: %+v complete=%v, want c[12] > b[11], incomplete", up, complete)
	}
}

// TestAssembleForgetsReaped: without --all the adoptee's reap is the only exit
// the table hears of; a table that kept every daemon ever adopted would be
// scanned by the GC on every cycle (issue 12).
func TestAssembleForgetsReaped(t *testing.T) {
	tab := NewTable(100)
	tab.Put(procfs.Stat{ID: procfs.ID{PID: 100, Start: 2 * time.Second}, PPID: 1, SID: 100, Comm: "bash"})
	as := NewAssembler(Clock{}, tab)
	first, err := as.Assemble(encode(t, doubleForkRecord()))
	if err != nil {
		t.Fatal(err)
	}
	daemon := procfs.ID{PID: 103, Start: 4 * time.Second}
	if _, ok := tab.Lookup(daemon); !ok {
		t.Fatal("the adopted process is not in the table")
	}
	exit := bpf.AdoptwatchAdopteeRecord{
		Hdr:     bpf.AdoptwatchRecordHeader{TsNs: 7e9, Kind: uint32(bpf.AdoptwatchRecordKindRECORD_ADOPTEE_EXIT)},
		Adoptee: ident(103, 50, 102, 4*time.Second, "mydaemon"),
		Reaper:  ident(50, 1, 50, time.Second, "supervisor"),
	}
	if _, err := as.Assemble(encode(t, exit)); err != nil {
		t.Fatal(err)
	}
	if _, ok := tab.Lookup(daemon); !ok {
		t.Error("an exit alone (a zombie still there) must not forget it")
	}
	reaped := exit
	reaped.Hdr.Kind = uint32(bpf.AdoptwatchRecordKindRECORD_ADOPTEE_REAPED)
	if _, err := as.Assemble(encode(t, reaped)); err != nil {
		t.Fatal(err)
	}
	if _, ok := tab.Lookup(daemon); ok {
		t.Error("a reaped adoptee is still in the table")
	}

	// The walk's buffer is reused: the first adoption's lineage must not change.
	before := slices.Clone(first.Adoption.Lineage)
	other := doubleForkRecord()
	other.Child = ident(203, 50, 202, 5*time.Second, "other")
	if _, err := as.Assemble(encode(t, other)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, first.Adoption.Lineage) {
		t.Errorf("lineage changed by a later adoption:\n%+v\n%+v", before, first.Adoption.Lineage)
	}
}
