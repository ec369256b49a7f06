package output

import (
	"encoding/json"
	"github.com/adoptwatch/adoptwatch/internal/syncbuf"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

func sample() *events.Adoption {
	return &events.Adoption{
		Time:       time.Date(2026, 11, 29, 12, 0, 1, 1000, time.UTC),
		Hook:       events.HookExact,
		Child:      events.Process{ID: procfs.ID{PID: 4242}, TID: 4242, SID: 4241, PGID: 4241, Comm: "mydaemon"},
		PrevParent: events.Process{ID: procfs.ID{PID: 4241}, Comm: "mydaemon"},
		NewParent:  events.Process{ID: procfs.ID{PID: 1}, Comm: "init"},
		Reaper:     events.ReaperInit,
		Lineage: []events.Step{
			{ID: procfs.ID{PID: 900}, SID: 900, Comm: "bash"},
			{ID: procfs.ID{PID: 4240}, SID: 900, Comm: "mydaemon", Exec: true},
			{ID: procfs.ID{PID: 4241}, SID: 4241, Comm: "mydaemon", Setsid: true},
			{ID: procfs.ID{PID: 4242}, SID: 4241, Comm: "mydaemon"},
		},
		LineageComplete: true,
	}
}

func TestAdoptionText(t *testing.T) {
	want := "12:00:01.000001 adopt 4242 mydaemon from 4241 mydaemon to 1 init (init) double-fork: " +
		"bash[900] > mydaemon[4240 exec] > mydaemon[4241 setsid] > mydaemon[4242]"
	if got := AdoptionText(sample()); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	a := sample()
	a.Zombie, a.LineageComplete = true, false
	if got := AdoptionText(a); !strings.Contains(got, "mydaemon (zombie) from") || !strings.Contains(got, ": … > bash[900]") {
		t.Errorf("zombie and incomplete lineage not shown: %q", got)
	}
}

// TestAdoptionJSONSchema pins the field names other tools parse.
func TestAdoptionJSONSchema(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal(AdoptionLine(sample()), &m); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"event", "time", "pid", "comm", "prev_parent", "new_parent", "reaper", "lineage", "hook"} {
		if _, ok := m[key]; !ok {
			t.Errorf("missing field %q in %v", key, m)
		}
	}
	if m["event"] != "adopt" || m["reaper"] != "init" || m["hook"] != "exact" || m["time"] != "2026-11-29T12:00:01.000001Z" {
		t.Errorf("values: %v", m)
	}
	lineage := m["lineage"].([]any)
	first := lineage[0].(map[string]any)
	for _, key := range []string{"pid", "comm", "sid"} {
		if _, ok := first[key]; !ok {
			t.Errorf("lineage step lacks %q: %v", key, first)
		}
	}
	if prev := m["prev_parent"].(map[string]any); prev["pid"] != float64(4241) || prev["comm"] != "mydaemon" {
		t.Errorf("prev_parent %v", prev)
	}
}

func TestStatusText(t *testing.T) {
	for status, want := range map[uint32]string{
		0: "exited with code 0", 3 << 8: "exited with code 3", 9: "killed by SIGKILL (signal 9)",
		15 | 0x80: "killed by SIGTERM (signal 15)", // with a core dump
		0x80 | 11: "killed by SIGSEGV (signal 11)",
	} {
		if got := StatusText(status); got != want {
			t.Errorf("StatusText(%#x) = %q, want %q", status, got, want)
		}
	}
}

// TestAdoptionPidfd: the subscriber's line is the adoption line plus "pidfd";
// the --json line has no such field.
func TestAdoptionPidfd(t *testing.T) {
	a := NewAdoption(sample())
	var plain, sub map[string]any
	if err := json.Unmarshal(a.Line(), &plain); err != nil {
		t.Fatal(err)
	}
	out := a.WithPidfd("error: \"x\"")
	if err := json.Unmarshal(out, &sub); err != nil || out[len(out)-1] != '\n' {
		t.Fatalf("WithPidfd: %s (%v)", out, err)
	}
	if _, ok := plain["pidfd"]; ok {
		t.Errorf("the --json line has a pidfd field: %s", a.Line())
	}
	if sub["pidfd"] != `error: "x"` || len(sub) != len(plain)+1 {
		t.Errorf("WithPidfd: %s", out)
	}
	for k, v := range plain {
		if k != "lineage" && k != "prev_parent" && k != "new_parent" && sub[k] != v {
			t.Errorf("field %s: %v in the subscriber line, %v in the --json line", k, sub[k], v)
		}
	}
}

// TestLinesTime: every line carries its time in the one format.
func TestLinesTime(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 1, 5, time.UTC)
	for _, l := range [][]byte{
		LostLine(now, "adopt", 3), WarningLine(now, "w"), NoticeLine(now, "refused", "r"),
		SubscribedLine(now, 1, "all", 256), OverflowLine(now, "full", 4),
		NotifyFailedLine(now, NotifyFailed{Target: 5, Errno: "EAGAIN"}), SocketStatsLine(now, SocketStats{Accepted: 2}),
	} {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil || l[len(l)-1] != '\n' {
			t.Fatalf("%s: %v", l, err)
		}
		if m["time"] != "2026-11-29T12:00:01.000000005Z" || m["event"] == "" {
			t.Errorf("line %s: time or event wrong", l)
		}
	}
}

// TestPrinterBuildsOnlyItsForm: a text printer never builds the JSON line
// (nor a JSON printer the text): each costs as much as the rest of a record.
func TestPrinterBuildsOnlyItsForm(t *testing.T) {
	var out, errOut strings.Builder
	a := NewAdoption(sample())
	NewPrinter(&out, &errOut, false).Adoption(a)
	if out.String() != AdoptionText(sample())+"\n" {
		t.Errorf("text printer wrote %q", out.String())
	}
	if a.line != nil {
		t.Errorf("the text printer built the JSON line")
	}
	out.Reset()
	b := NewAdoption(sample())
	NewPrinter(&out, &errOut, true).Adoption(b)
	if out.String() != string(AdoptionLine(sample())) || b.text != "" {
		t.Errorf("JSON printer wrote %q (text built: %v)", out.String(), b.text != "")
	}
}

// TestPrinterBuffer: buffered lines are written together, in order with the
// warnings, on Close, and by the timer when no later line comes.
func TestPrinterBuffer(t *testing.T) {
	var out, errOut syncbuf.Buffer
	p := NewPrinter(&out, &errOut, true)
	p.Buffer(time.Hour)
	a, b := NewAdoption(sample()), NewAdoption(sample())
	p.Adoption(a)
	p.Adoption(b)
	if out.String() != "" {
		t.Fatalf("written before the delay: %q", out.String())
	}
	warning := WarningLine(time.Unix(0, 0), "w")
	p.Warn(warning, "w")
	if want := string(a.Line()) + string(b.Line()) + string(warning); out.String() != want {
		t.Fatalf("after a warning: %q, want the lines then the warning", out.String())
	}
	p.Adoption(a)
	p.Close()
	if !strings.HasSuffix(out.String(), string(warning)+string(a.Line())) {
		t.Fatalf("Close did not write the last line: %q", out.String())
	}

	var late syncbuf.Buffer
	q := NewPrinter(&late, &errOut, false)
	q.Buffer(time.Millisecond)
	q.Adoption(a)
	for deadline := time.Now().Add(10 * time.Second); late.String() == "" && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if late.String() != a.Text()+"\n" {
		t.Fatalf("the timer did not write the line: %q", late.String())
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"mydaemon":                "mydaemon",
		"kworker/0:1 x":           "kworker/0:1 x",
		"x\n00:00 adopt 1\x1b[2J": `x\n00:00 adopt 1\x1b[2J`,
		"y\rFAKE\x1b[31mRED":      `y\rFAKE\x1b[31mRED`,
		"tab\there":               `tab\there`,
		`back\slash`:              `back\\slash`,
		"del\x7f nul\x00":         `del\x7f nul\x00`,
		"bad\xff\xfeutf8":         `bad\xff\xfeutf8`,
		"truncated \xe2\x82":      `truncated \xe2\x82`,
		"café ✓":                  "café ✓",
		"c1\u009b2J":              `c1\u009b2J`,
		"rtl\u202etxt.exe":        `rtl\u202etxt.exe`,
		"\U000e0041 tag":          `\U000e0041 tag`,
	} {
		got := Escape(in)
		if got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
		for _, c := range []byte(got) {
			if c < 0x20 || c == 0x7f {
				t.Errorf("Escape(%q) keeps control byte %#x", in, c)
			}
		}
	}
}

// TestTextEscapesNames: every name in every text line goes through Escape.
func TestTextEscapesNames(t *testing.T) {
	evil := "x\n00:00 adopt 1\x1b[2J"
	a := sample()
	a.Child.Comm, a.PrevParent.Comm, a.NewParent.Comm = evil, evil, evil
	for i := range a.Lineage {
		a.Lineage[i].Comm = evil
	}
	lines := []string{AdoptionText(a)}
	p := events.Process{ID: procfs.ID{PID: 5}, TID: 6, Comm: evil}
	for _, ev := range []*events.Task{
		{Kind: events.KindFork, Process: p, Child: &events.Process{ID: procfs.ID{PID: 7}, Comm: evil}},
		{Kind: events.KindExec, Process: p},
		{Kind: events.KindExit, Process: p, ProcessExit: true},
		{Kind: events.KindExit, Process: p},
	} {
		lines = append(lines, TaskText(ev))
	}
	for _, l := range lines {
		if strings.ContainsAny(l, "\n\r\x1b") || !strings.Contains(l, Escape(evil)) {
			t.Errorf("text line not escaped: %q", l)
		}
	}
}

// contextSample is an adoption inside a docker container: pids in the
// container's namespace, the daemon's launcher in a systemd unit.
func contextSample() *events.Adoption {
	const id = "3f6c1a0e9b7d42c58e21f0a4d6b9c3e7a1f5d8b2c6e9a0f3b7d1c4e8a2f6b9d0"
	a := sample()
	a.Reaper = events.ReaperNS
	a.Child.NSPid, a.Child.ReaperNSPid, a.Child.PidNSInode, a.Child.CgroupID = 7, 7, 4026532001, 501
	a.PrevParent.NSPid, a.PrevParent.ReaperNSPid, a.PrevParent.PidNSInode = 6, 6, 4026532001
	a.NewParent.NSPid, a.NewParent.PidNSInode, a.NewParent.PID = 1, 4026532001, 4100
	docker := cgroups.Info{ID: 501, State: cgroups.Resolved, Path: "/docker/" + id, Context: cgroups.Describe("/docker/" + id)}
	unit := cgroups.Info{ID: 77, State: cgroups.Resolved, Path: "/system.slice/forker.service", Context: cgroups.Describe("/system.slice/forker.service")}
	a.Context = &events.Context{
		Child: docker, PrevParent: docker, NewParent: docker, ReaperKind: "shell",
		Lineage: []cgroups.Info{
			{State: cgroups.Unresolved},
			unit,
			{ID: 99, State: cgroups.Gone},
			docker,
		},
	}
	return a
}

func TestAdoptionContextJSON(t *testing.T) {
	var got AdoptionJSON
	if err := json.Unmarshal(AdoptionLine(contextSample()), &got); err != nil {
		t.Fatal(err)
	}
	const id = "3f6c1a0e9b7d42c58e21f0a4d6b9c3e7a1f5d8b2c6e9a0f3b7d1c4e8a2f6b9d0"
	docker := &ContainerJSON{Runtime: "docker", ID: id}
	if got.Cgroup != "/docker/"+id || got.CgroupID != 501 || got.Unit != "" || *got.Container != *docker ||
		got.NSPid != 7 || got.ReaperNSPid != 7 || got.PidNS != 4026532001 || got.ReaperKind != "shell" {
		t.Errorf("adopted process context: %+v", got)
	}
	if p := got.NewParent; p.NSPid != 1 || p.PidNS != 4026532001 || *p.Container != *docker {
		t.Errorf("new parent: %+v", p)
	}
	want := []Where{
		{Cgroup: "unresolved", Unit: "unresolved", Container: &ContainerJSON{Runtime: "unresolved"}},
		{CgroupID: 77, Cgroup: "/system.slice/forker.service", Unit: "forker.service"},
		{CgroupID: 99, Cgroup: "gone", Unit: "gone", Container: &ContainerJSON{Runtime: "gone"}},
		{CgroupID: 501, Cgroup: "/docker/" + id, Container: docker},
	}
	for i, w := range want {
		g := got.Lineage[i].Where
		if g.CgroupID != w.CgroupID || g.Cgroup != w.Cgroup || g.Unit != w.Unit ||
			(g.Container == nil) != (w.Container == nil) || (g.Container != nil && *g.Container != *w.Container) {
			t.Errorf("lineage[%d] = %+v (container %+v), want %+v (container %+v)", i, g, g.Container, w, w.Container)
		}
	}
	// Outside containers, the parties say "none"; without a context, no field at all.
	a := sample()
	plain := cgroups.Info{ID: 5, State: cgroups.Resolved, Path: "/", Context: cgroups.Describe("/")}
	a.Context = &events.Context{Child: plain, PrevParent: plain, NewParent: plain, Lineage: make([]cgroups.Info, 4)}
	var m map[string]any
	json.Unmarshal(AdoptionLine(a), &m)
	if c, _ := m["container"].(map[string]any); c["runtime"] != "none" || m["cgroup"] != "/" || m["unit"] != nil {
		t.Errorf("outside containers: %v", m)
	}
	m = nil
	json.Unmarshal(AdoptionLine(sample()), &m)
	for _, k := range []string{"cgroup", "unit", "container", "ns_pid", "reaper_kind"} {
		if _, ok := m[k]; ok {
			t.Errorf("no context, yet %q in %v", k, m)
		}
	}
}

func TestAdoptionContextText(t *testing.T) {
	want := "12:00:01.000001 adopt 4242/7 mydaemon from 4241/6 mydaemon to 4100/1 init (ns-reaper: shell) in container docker:3f6c1a0e9b7d double-fork: " +
		"bash[900] > mydaemon[4240 exec] > mydaemon[4241 setsid] > mydaemon[4242]"
	if got := AdoptionText(contextSample()); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	for _, tt := range []struct {
		info cgroups.Info
		want string
	}{
		{cgroups.Info{State: cgroups.Resolved, Path: "/system.slice/cron.service", Context: cgroups.Describe("/system.slice/cron.service")}, "unit cron.service"},
		{cgroups.Info{State: cgroups.Resolved, Path: "/", Context: cgroups.Describe("/")}, ""},
		{cgroups.Info{State: cgroups.Gone}, "cgroup gone"},
		{cgroups.Info{State: cgroups.Unresolved}, ""},
		{cgroups.Info{State: cgroups.Resolved, Path: "/system.slice/evil\x1b[2J.service",
			Context: cgroups.Context{Unit: "evil\x1b[2J.service", Container: cgroups.Container{Runtime: cgroups.RuntimeNone}}}, `unit evil\x1b[2J.service`},
		{cgroups.Info{State: cgroups.Resolved, Context: cgroups.Context{Container: cgroups.Container{Runtime: "cri-o", ID: "abc", Role: "conmon", PodUID: "p-1"}}},
			"container cri-o:abc conmon pod p-1"},
	} {
		if got := ContextText(tt.info); got != tt.want {
			t.Errorf("ContextText(%+v) = %q, want %q", tt.info, got, tt.want)
		}
	}
}
