package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

// TestTextHostileNames: processes of an unprivileged user named to forge a
// line and send terminal escapes (prctl PR_SET_NAME) are printed, by the real
// watcher in text mode, as one line per adoption with the names escaped.
func TestTextHostileNames(t *testing.T) {
	c := startWatching(t, "--all")
	tree := testsupport.StartTree(t, "rawnamed")
	middle := testsupport.Next(t, tree, "middle").Int(0)
	line, ok := c.stdout.WaitFor(15*time.Second, func(s string) bool {
		return strings.Contains(s, " adopt ") && strings.Contains(s, " to "+itoa(tree.Reaper)+" ")
	})
	if !ok {
		t.Fatalf("no adoption by the reaper %d printed; stdout:\n%q", tree.Reaper, c.stdout.Text())
	}
	// The kernel keeps 15 bytes of a name.
	middleName, daemonName := fixture.HostileNames[0][:15], fixture.HostileNames[1]
	for _, want := range []string{
		" adopt ", output.Escape(daemonName) + " from " + itoa(middle) + " " + output.Escape(middleName),
		output.Escape(middleName) + "[" + itoa(middle), `y\rFAKE\x1b[31mRED`, `x\n00:00 adopt 1`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("adoption line lacks %q:\n%s", want, line)
		}
	}
	// Let the exits and the reaper's kills at the end show up too (--all).
	tree.Stop()
	time.Sleep(500 * time.Millisecond)
	c.stop(t)
	clock := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{6} (adopt|fork |exec |exit ) `)
	adoptions := 0
	for _, l := range strings.Split(c.stdout.Text(), "\n") {
		if l == "" {
			continue
		}
		if !clock.MatchString(l) {
			t.Errorf("a line that adoptwatch did not print as such: %q", l)
		}
		if strings.ContainsAny(l, "\r\x1b\x7f") {
			t.Errorf("raw control bytes in %q", l)
		}
		if strings.Contains(l, " adopt ") && strings.Contains(l, `y\rFAKE`) {
			adoptions++
		}
	}
	if adoptions != 1 {
		t.Errorf("%d adoption lines of the named daemon, want 1", adoptions)
	}
}

// TestRunHostileNames: `adoptwatch run` names the daemon it identifies, and
// its lineage, escaped.
func TestRunHostileNames(t *testing.T) {
	testsupport.RequireBPF(t)
	r := startRun(t, true, nil, "--", "{dir}/aw-sd-launch", "named")
	middle := r.next(t, "middle").Int(0)
	m := r.line(t, `adoptwatch run: daemon pid=(\d+) comm=(.*) identified .*: (.*)$`)
	if m[2] != output.Escape(fixture.HostileNames[1]) {
		t.Errorf("daemon named %q, want %q", m[2], output.Escape(fixture.HostileNames[1]))
	}
	if want := output.Escape(fixture.HostileNames[0][:15]) + "[" + itoa(middle); !strings.Contains(m[3], want) {
		t.Errorf("lineage %q lacks %q", m[3], want)
	}
	for _, l := range strings.Split(r.stderr.Text(), "\n") {
		if strings.ContainsAny(l, "\r\x1b\x7f") || strings.HasPrefix(l, "00:00 adopt") {
			t.Errorf("raw control bytes or a forged line in run's output: %q", l)
		}
	}
}
