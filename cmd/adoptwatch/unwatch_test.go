package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnwatchCommandArgs(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
		stderr string
	}{
		{nil, 2, "no PID given"},
		{[]string{"abc"}, 2, "not a pid"},
		{[]string{"0"}, 2, "not a pid"},
		{[]string{"--pin-dir", filepath.Join(t.TempDir(), "none"), "1234"}, 1, "--pin"},
	} {
		var out, errb bytes.Buffer
		if got := unwatchCommand(tc.args, &out, &errb); got != tc.status || !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("unwatch %q: status %d, stderr %q; want %d and %q", tc.args, got, errb.String(), tc.status, tc.stderr)
		}
	}
}
