package output

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/reaping"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func zombieEntry() reaping.Entry {
	return reaping.Entry{
		Process: events.Process{ID: procfs.ID{PID: 4300}, Comm: "helper", SID: 4299},
		Origin:  reaping.OriginAdopted,
		Reaper:  reaping.Reaper{Process: events.Process{ID: procfs.ID{PID: 4242}, Comm: "node"}, Kind: events.ReaperNS},
		Adopted: t0, From: events.Process{ID: procfs.ID{PID: 4299}, Comm: "helper"}, Pattern: events.PatternDoubleFork,
		Lineage: []events.Step{
			{ID: procfs.ID{PID: 900}, Comm: "bash", SID: 900, Source: "proc"},
			{ID: procfs.ID{PID: 4299}, Comm: "helper", SID: 4299, Setsid: true, Source: "kernel"},
			{ID: procfs.ID{PID: 4300}, Comm: "helper", SID: 4299, Source: "kernel"},
		},
		LineageComplete: true,
		Exited:          t0.Add(9 * time.Second), ExitStatus: 256,
	}
}

func TestUnreapedLineAndText(t *testing.T) {
	u := reaping.Unreaped{Time: t0.Add(40 * time.Second), Zombie: zombieEntry(), Waited: 31 * time.Second,
		Held: 12, Oldest: 40 * time.Second}
	var got map[string]any
	if err := json.Unmarshal(UnreapedLine(u), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"event": "unreaped", "pid": 4300.0, "comm": "helper", "reaper": "ns-reaper",
		"held": 12.0, "oldest_seconds": 40.0, "waited_seconds": 31.0, "status": 256.0, "origin": "adopted",
		"pattern": "double-fork", "lineage_complete": true, "time": "2026-12-01T12:00:40Z",
		"exited": "2026-12-01T12:00:09Z", "adopted": "2026-12-01T12:00:00Z"} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if np := got["new_parent"].(map[string]any); np["pid"] != 4242.0 || np["comm"] != "node" {
		t.Errorf("new_parent %v", np)
	}
	if l := got["lineage"].([]any); len(l) != 3 {
		t.Errorf("lineage %v", l)
	}
	text := UnreapedText(u)
	want := "12:00:40.000000 unreaped 4300 helper: reaper 4242 node (ns-reaper) has not reaped 12 adopted zombies; oldest 40s; this one exited 31s ago: bash[900] > helper[4299 setsid] > helper[4300]"
	if text != want {
		t.Errorf("text\n got %s\nwant %s", text, want)
	}
	u.Held = 1
	if !strings.Contains(UnreapedText(u), "has not reaped 1 adopted zombie;") {
		t.Errorf("singular: %s", UnreapedText(u))
	}
}

func TestReapedLineAndText(t *testing.T) {
	r := reaping.Reaped{Time: t0.Add(100 * time.Second), Zombie: zombieEntry(), Waited: 91 * time.Second, Held: 11, Reported: true}
	var got map[string]any
	if err := json.Unmarshal(ReapedLine(r), &got); err != nil {
		t.Fatal(err)
	}
	if got["event"] != "reaped" || got["waited_seconds"] != 91.0 || got["held"] != 11.0 || got["reaper"] != "ns-reaper" {
		t.Errorf("reaped line %v", got)
	}
	want := "12:01:40.000000 reaped 4300 helper after 1m31s by reaper 4242 node (ns-reaper); it still has not reaped 11 adopted zombies"
	if text := ReapedText(r); text != want {
		t.Errorf("text\n got %s\nwant %s", text, want)
	}
	r.Held = 0
	if text := ReapedText(r); strings.Contains(text, "still") {
		t.Errorf("nothing left, yet: %s", text)
	}
}

func TestPs(t *testing.T) {
	now := t0.Add(2 * time.Minute)
	alive := zombieEntry()
	alive.Process.PID, alive.Exited = 4301, time.Time{}
	old := reaping.Entry{Process: events.Process{ID: procfs.ID{PID: 77}, Comm: "sshd"}, Origin: reaping.OriginPreexisting,
		Reaper: reaping.Reaper{Process: events.Process{ID: procfs.ID{PID: 1}, Comm: "init"}, Kind: events.ReaperInit}}
	entries := []reaping.Entry{old, alive, zombieEntry()}

	lines := PsText(now, entries)
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows, got %q", lines)
	}
	col := strings.Index(string(lines[0]), "STATE")
	for i, l := range lines {
		if !strings.HasSuffix(string(l), "\n") {
			t.Errorf("line %d not ended: %q", i, l)
		}
		if i > 0 && (len(l) <= col || l[col-1] != ' ' || l[col] == ' ') {
			t.Errorf("STATE column not aligned in %q", l)
		}
	}
	if s := string(lines[1]); !strings.Contains(s, "before start") || !strings.HasSuffix(s, PreexistingNote+"\n") ||
		!strings.Contains(s, "1 init (init)") {
		t.Errorf("pre-existing row %q", s)
	}
	if s := string(lines[2]); !strings.Contains(s, "alive") || !strings.Contains(s, "12:00:00 (2m0s ago)") ||
		!strings.Contains(s, "4299 helper") || !strings.HasSuffix(s, "bash[900] > helper[4299 setsid] > helper[4300]\n") {
		t.Errorf("alive row %q", s)
	}
	if s := string(lines[3]); !strings.Contains(s, "zombie 1m51s") {
		t.Errorf("zombie row %q", s)
	}

	js := PsLines(now, entries)
	if len(js) != 3 {
		t.Fatalf("json lines %d", len(js))
	}
	var pre, z map[string]any
	json.Unmarshal(js[0], &pre)
	json.Unmarshal(js[2], &z)
	if pre["origin"] != "preexisting" || pre["note"] != PreexistingNote || pre["adopted"] != nil || pre["prev_parent"] != nil ||
		pre["state"] != "alive" || pre["reaper"] != "init" {
		t.Errorf("pre-existing json %v", pre)
	}
	if z["state"] != "zombie" || z["exited"] != "2026-12-01T12:00:09Z" || z["event"] != "ps" || z["note"] != nil {
		t.Errorf("zombie json %v", z)
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{40 * time.Second: "40s", 125400 * time.Millisecond: "2m5s",
		350 * time.Millisecond: "350ms", 0: "0s"} {
		if got := Seconds(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

// Names from the system cannot forge lines or columns in text output.
func TestReapingTextEscapes(t *testing.T) {
	z := zombieEntry()
	z.Process.Comm = "x\n00:00 adopt 1\x1b[2J"
	z.Reaper.Comm = "y\rFAKE\tcol"
	z.From.Comm = "m\x1b[31m"
	u := reaping.Unreaped{Time: t0, Zombie: z, Held: 1}
	r := reaping.Reaped{Time: t0, Zombie: z}
	for _, s := range []string{UnreapedText(u), ReapedText(r), string(PsText(t0, []reaping.Entry{z})[1])} {
		body := strings.TrimSuffix(s, "\n")
		if strings.ContainsAny(body, "\n\r\x1b") {
			t.Errorf("raw control characters in %q", s)
		}
		if !strings.Contains(body, `x\n00:00 adopt 1\x1b[2J`) {
			t.Errorf("name not shown escaped in %q", s)
		}
	}
	rows := PsText(t0, []reaping.Entry{z})
	if len(rows) != 2 || strings.Count(string(rows[1]), "\t") != 0 {
		t.Errorf("a tab in a name broke the columns: %q", rows)
	}
}

// Where the zombie and its reaper are (container, unit) shows in text and JSON.
func TestReapingContext(t *testing.T) {
	z := zombieEntry()
	ctr := cgroups.Info{ID: 77, State: cgroups.Resolved, Path: "/system.slice/docker-3f2a.scope",
		Context: cgroups.Context{Unit: "docker-3f2a.scope", Container: cgroups.Container{Runtime: cgroups.RuntimeDocker, ID: "3f2a"}}}
	z.Context = &events.Context{Child: ctr, NewParent: ctr, PrevParent: ctr, Lineage: []cgroups.Info{{}, ctr, ctr}}
	u := reaping.Unreaped{Time: t0, Zombie: z, Held: 12, Oldest: 40 * time.Second, Waited: 31 * time.Second}
	text := UnreapedText(u)
	if !strings.Contains(text, "unreaped 4300 helper in container docker:3f2a unit docker-3f2a.scope: reaper 4242 node (ns-reaper, container docker:3f2a unit docker-3f2a.scope) has not reaped 12 adopted zombies; oldest 40s") {
		t.Errorf("text: %s", text)
	}
	var got map[string]any
	if err := json.Unmarshal(UnreapedLine(u), &got); err != nil {
		t.Fatal(err)
	}
	if got["unit"] != "docker-3f2a.scope" || got["container"].(map[string]any)["id"] != "3f2a" ||
		got["new_parent"].(map[string]any)["unit"] != "docker-3f2a.scope" {
		t.Errorf("json: %v", got)
	}
	rows := PsText(t0, []reaping.Entry{z})
	if !strings.Contains(string(rows[1]), "container docker:3f2a unit docker-3f2a.scope") {
		t.Errorf("ps row: %q", rows[1])
	}
	r := reaping.Reaped{Time: t0, Zombie: z, Reported: true}
	if !strings.Contains(ReapedText(r), "reaped 4300 helper in container docker:3f2a") {
		t.Errorf("reaped text: %s", ReapedText(r))
	}
}
