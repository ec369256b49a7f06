package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/testsupport"
)

// startWatching runs adoptwatch, waits until it is attached, and when the
// test ends interrupts it and checks that it exits 0.
func startWatching(t *testing.T, args ...string) *cli {
	t.Helper()
	testsupport.RequireBPF(t)
	c := startCLI(t, args...)
	c.waitReady(t)
	t.Cleanup(func() {
		if code := c.stop(t); code != 0 {
			t.Errorf("adoptwatch exited %d after SIGINT, want 0; stderr:\n%s", code, c.stderr.Text())
		}
	})
	return c
}

func hasStderr(c *cli, substr string, timeout time.Duration) bool {
	_, ok := c.stderr.WaitFor(timeout, func(s string) bool { return strings.Contains(s, substr) })
	return ok
}

func adoptedBy(newParent int) func(map[string]any) bool {
	return func(m map[string]any) bool {
		return m["event"] == "adopt" && testsupport.PartyPID(m, "new_parent") == newParent
	}
}

func itoa(n int) string { return fmt.Sprint(n) }
