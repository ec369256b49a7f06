package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestSelects(t *testing.T) {
	sel := Selector{Units: []string{"forker.service", "docker-*.scope", "kube*.slice"}, Containers: []string{"3f6c", "lxcweb"}}
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"/system.slice/forker.service", true},
		{"/system.slice/forker.service/sub", false}, // covered through its parent
		{"/system.slice/forker.socket", false},
		{"/system.slice/forker.service.d", false},
		{"/system.slice/docker-" + id2 + ".scope", true},
		{"/kubepods.slice", true},
		{"/docker/" + id1, true},
		{"/docker/" + id1 + "/init", false},
		{"/docker/" + id2, false},
		{"/kubepods/besteffort/pod" + pod + "/" + id1, true},
		{"/machine.slice/crio-" + id1 + ".scope", true},
		{"/machine.slice/crio-" + id1 + ".scope/container", false},
		{"/machine.slice/crio-conmon-" + id1 + ".scope", true}, // the container's monitor is chosen with it
		{"/lxc.payload.lxcweb1", true},
		{"/", false},
		{"", false},
	} {
		if got := sel.Selects(tt.path); got != tt.want {
			t.Errorf("Selects(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
	if (Selector{}).Selects("/system.slice/a.service") {
		t.Error("an empty selector chose something")
	}
}

func TestMatchesContext(t *testing.T) {
	sel := Selector{Units: []string{"system.slice"}, Containers: []string{id1[:12]}}
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"/system.slice/cron.service", true},
		{"/user.slice/user-1000.slice/session-1.scope", false},
		{"/docker/" + id1 + "/sub", true},
		{"/docker/" + id2, false},
	} {
		if got := sel.MatchesContext(tt.path, Describe(tt.path)); got != tt.want {
			t.Errorf("MatchesContext(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestValidScopeValues(t *testing.T) {
	for _, g := range []string{"cron.service", "docker-*.scope", "getty@tty[1-6].service", "*"} {
		if err := ValidUnitGlob(g); err != nil {
			t.Errorf("ValidUnitGlob(%q): %v", g, err)
		}
	}
	for _, g := range []string{"", "system.slice/cron.service", "[", "a\\"} {
		if err := ValidUnitGlob(g); err == nil {
			t.Errorf("ValidUnitGlob(%q) accepted", g)
		}
	}
	for _, p := range []string{"3f6c", id1, "web_1.x-y"} {
		if err := ValidContainerPrefix(p); err != nil {
			t.Errorf("ValidContainerPrefix(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", id1 + "0", "a/b", "a*", "a b"} {
		if err := ValidContainerPrefix(p); err == nil {
			t.Errorf("ValidContainerPrefix(%q) accepted", p)
		}
	}
}

// recorder collects a Tracker's calls.
type recorder struct {
	mu      sync.Mutex
	added   map[uint64]string
	removed map[uint64]string
	refuse  bool
}

func (r *recorder) add(id uint64, p string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse {
		return errors.New("full")
	}
	r.added[id] = p
	return nil
}

func (r *recorder) remove(id uint64, p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed[id] = p
}

func (r *recorder) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
	}
	t.Fatalf("timed out waiting for %s (added %v, removed %v)", what, r.added, r.removed)
}

// TestTracker follows real cgroups: chosen ones present at start, created
// later (nested, in one go), and removed.
func TestTracker(t *testing.T) {
	m := testMount(t)
	root := testRoot() + "-track"
	dirOld, pathOld := makeCgroup(t, m, root+"/adoptwatch-test.slice/old.service")
	makeCgroup(t, m, root+"/adoptwatch-test.slice/other.service")
	idOld, _ := ID(dirOld)

	r := &recorder{added: map[uint64]string{}, removed: map[uint64]string{}}
	sel := Selector{Units: []string{"old.service", "forker.service"}, Containers: []string{id1[:8]}}
	tr, err := NewTracker(m, sel, r.add, r.remove)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tr.Run() }()
	defer func() {
		tr.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	r.mu.Lock()
	if len(r.added) != 1 || r.added[idOld] != pathOld {
		t.Errorf("at start: added %v, want only %d %s", r.added, idOld, pathOld)
	}
	r.mu.Unlock()

	// Created after start, several levels at once.
	dirNew, pathNew := makeCgroup(t, m, root+"/a/b/forker.service")
	idNew, _ := ID(dirNew)
	r.wait(t, "the new forker.service", func() bool { return r.added[idNew] == pathNew })
	dirC, pathC := makeCgroup(t, m, root+"/docker/"+id1)
	idC, _ := ID(dirC)
	r.wait(t, "the new container", func() bool { return r.added[idC] == pathC })
	makeCgroup(t, m, root+"/docker/"+id1+"/inner")
	makeCgroup(t, m, root+"/x/unchosen.service")

	if err := os.Remove(dirNew); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "removal of forker.service", func() bool { return r.removed[idNew] == pathNew })
	r.mu.Lock()
	if len(r.added) != 3 || len(r.removed) != 1 {
		t.Errorf("added %v, removed %v: want 3 chosen, 1 removed", r.added, r.removed)
	}
	r.mu.Unlock()
	if s := tr.Stats(); s.Selected != 2 || s.Dropped != 0 {
		t.Errorf("stats %+v, want 2 selected, none dropped", s)
	}

	// A full map: counted, not lost silently.
	r.mu.Lock()
	r.refuse = true
	r.mu.Unlock()
	makeCgroup(t, m, filepath.Join(root, "y", "forker.service"))
	for deadline := time.Now().Add(5 * time.Second); tr.Stats().Dropped == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	if s := tr.Stats(); s.Dropped != 1 {
		t.Errorf("stats %+v, want 1 dropped", s)
	}
}
