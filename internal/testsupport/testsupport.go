// Package testsupport holds the helpers adoptwatch's test packages share:
// skipping where BPF cannot load, running a test once per adoption hook,
// starting fixture trees, waiting for their reports, ending what a test
// started, and reading a command's output line by line (text or JSON). Only
// tests import it.
package testsupport

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/fixture"
	"github.com/adoptwatch/adoptwatch/loader"
)

// ReportWait bounds a wait for one fixture report.
const ReportWait = 20 * time.Second

// RequireBPF skips the test where the BPF programs cannot be loaded (not
// root, no BTF, no ring buffers), saying why.
func RequireBPF(t testing.TB) {
	t.Helper()
	if err := loader.CheckPrerequisites(); err != nil {
		t.Skipf("cannot load BPF programs here: %v", err)
	}
}

// Hooks are the adoption hooks tests run under, as subtests named hook=NAME
// (vmtests counts them).
var Hooks = []events.Hook{events.HookExact, events.HookExitWalk}

// EachHook runs test once per hook, as subtests named hook=NAME. The test
// opens what it needs for the hook (Open, or the command with --hook).
func EachHook(t *testing.T, test func(t *testing.T, hook events.Hook)) {
	RequireBPF(t)
	for _, hook := range Hooks {
		t.Run("hook="+string(hook), func(t *testing.T) { test(t, hook) })
	}
}

// Open attaches an observer for the test, skipping it if this kernel cannot
// attach opts.Hook. It is closed (its links detached) when the test ends.
func Open(t *testing.T, opts loader.Options) *loader.Observer {
	t.Helper()
	start := time.Now()
	obs, err := loader.Open(opts)
	if errors.Is(err, loader.ErrHookUnsupported) {
		t.Skipf("this kernel cannot attach the %s hook: %v", opts.Hook, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	// The load (mostly BPF verification) is the fixed cost of each test
	// under emulation: log it, so the VM logs show what it costs there.
	t.Logf("hook %s via %s (opened in %v)", obs.Mechanism.Hook, obs.Mechanism.Name, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { obs.Close() })
	return obs
}

// RequireHook skips the test if this kernel cannot attach hook: for tests
// that run the command with --hook. The answer is found once per hook and
// test binary (the kernel does not change meanwhile): a load costs seconds
// under emulation, and the command loads the programs again anyway.
func RequireHook(t *testing.T, hook events.Hook) {
	t.Helper()
	hookSupport.Lock()
	defer hookSupport.Unlock()
	err, known := hookSupport.err[hook]
	if !known {
		start := time.Now()
		var obs *loader.Observer
		if obs, err = loader.Open(loader.Options{Hook: hook}); err == nil {
			obs.Close()
		}
		hookSupport.err[hook] = err
		t.Logf("hook %s probed in %v", hook, time.Since(start).Round(time.Millisecond))
	}
	if err != nil {
		t.Skipf("this kernel cannot attach the %s hook: %v", hook, err)
	}
}

// hookSupport is RequireHook's answer per hook: nil when it attaches.
var hookSupport = struct {
	sync.Mutex
	err map[events.Hook]error
}{err: map[events.Hook]error{}}

// StartTree starts a fixture scenario beneath a child subreaper of its own;
// it is stopped (what is left beneath the reaper killed) when the test ends.
func StartTree(t *testing.T, scenario string) *fixture.Tree {
	t.Helper()
	tree, err := fixture.Start(scenario)
	if err != nil {
		t.Fatal(err)
	}
	StopAtEnd(t, tree)
	return tree
}

// StopAtEnd stops a fixture tree when the test ends.
func StopAtEnd(t *testing.T, tree *fixture.Tree) {
	t.Cleanup(func() {
		if err := tree.Stop(); err != nil {
			t.Logf("stopping fixture: %v", err)
		}
	})
}

// Next waits for the next report with this key from a fixture tree, failing
// the test if none comes within ReportWait.
func Next(t testing.TB, tree *fixture.Tree, key string) fixture.Report {
	t.Helper()
	rep, err := tree.Next(key, ReportWait)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// KillAtEnd ends a daemon the test started, by its pid, when the test ends.
func KillAtEnd(t testing.TB, pid int) {
	t.Cleanup(func() {
		if pid > 1 {
			unix.Kill(pid, unix.SIGKILL)
		}
	})
}

// DoubleFork reads the pids a "doublefork" scenario (or a StartUnreaped
// "launcher") reports, and ends the daemon when the test ends.
func DoubleFork(t testing.TB, tree *fixture.Tree) (launcher, middle, daemon int) {
	t.Helper()
	launcher = Next(t, tree, "launcher").Int(0)
	middle = Next(t, tree, "middle").Int(0)
	daemon = Next(t, tree, "daemon").Int(0)
	KillAtEnd(t, daemon)
	return launcher, middle, daemon
}

// StartUnreaped starts a fixture role as the test's own child, with no
// subreaper: its orphans go to init. Only where init is ours (the test VMs).
func StartUnreaped(t *testing.T, role string) *fixture.Tree {
	t.Helper()
	tree, err := fixture.StartUnreaped(role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Stop() })
	return tree
}
