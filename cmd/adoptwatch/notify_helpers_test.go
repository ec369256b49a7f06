package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/fixture"
)

// startWatching runs adoptwatch, waits until it is attached, and when the
// test ends interrupts it and checks that it exits 0.
func startWatching(t *testing.T, args ...string) *cli {
	t.Helper()
	requireBPF(t)
	c := startCLI(t, args...)
	c.waitReady(t)
	t.Cleanup(func() {
		if code := c.stop(t); code != 0 {
			t.Errorf("adoptwatch exited %d after SIGINT, want 0; stderr:\n%s", code, c.stderr.text())
		}
	})
	return c
}

// jsonLines waits until at least n JSON lines match (n = 0: no waiting) and
// returns all that do.
func jsonLines(c *cli, n int, timeout time.Duration, match func(map[string]any) bool) []map[string]any {
	deadline := time.Now().Add(timeout)
	for {
		var out []map[string]any
		for _, s := range strings.Split(c.stdout.text(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(s), &m) == nil && match(m) {
				out = append(out, m)
			}
		}
		if len(out) >= n || time.Now().After(deadline) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasStderr(c *cli, substr string, timeout time.Duration) bool {
	_, ok := c.stderr.waitFor(timeout, func(s string) bool { return strings.Contains(s, substr) })
	return ok
}

// num reads a JSON number field as an int.
func num(m map[string]any, key string) int {
	f, _ := m[key].(float64)
	return int(f)
}

func party(m map[string]any, key string) int {
	p, _ := m[key].(map[string]any)
	return num(p, "pid")
}

func adoptedBy(newParent int) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["event"] == "adopt" && party(m, "new_parent") == newParent }
}

// killAtEnd ends a daemon the test started, by its pid.
func killAtEnd(t *testing.T, pid int) {
	t.Cleanup(func() { unix.Kill(pid, unix.SIGKILL) })
}

func stopAtEnd(t *testing.T, tree *fixture.Tree) {
	t.Cleanup(func() {
		if err := tree.Stop(); err != nil {
			t.Logf("stopping fixture: %v", err)
		}
	})
}

func itoa(n int) string { return fmt.Sprint(n) }
