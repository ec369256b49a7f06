package guestlog

import (
	"strings"
	"testing"
)

// A console log as the host receives it: CRLF line ends, kernel messages
// mixed in, two binaries, the second one with a failing subtest.
var sampleLog = strings.Join([]string{
	"SeaBIOS (version 1.16.2-debian-1.16.2-1)",
	"[    0.000000] Linux version 6.1.0-50-cloud-amd64",
	KernelLine("6.1.0-50-cloud-amd64"),
	BeginLine("loader.test"),
	"=== RUN   TestAttach",
	"=== RUN   TestAttach/hook=exact",
	"    attach_test.go:31: kill_orphaned_pgrp not traceable",
	"=== RUN   TestAttach/hook=exit-walk",
	"--- PASS: TestAttach (0.12s)",
	"    --- SKIP: TestAttach/hook=exact (0.00s)",
	"    --- PASS: TestAttach/hook=exit-walk (0.11s)",
	"PASS",
	EndLine("loader.test", 0, 1.5),
	BeginLine("events.test"),
	"=== RUN   TestAdopt",
	"[    3.141592] random: crng init done--- FAIL: TestAdopt/hook=exit-walk/double_fork (0.30s)",
	"--- FAIL: TestAdopt (0.31s)",
	"--- PASS: TestDecode (0.00s)",
	"FAIL",
	EndLine("events.test", 1, 0.9),
	SummaryLine(Summary{Kernel: "6.1.0-50-cloud-amd64", Binaries: []BinaryExit{{Name: "loader.test"}, {Name: "events.test", Exit: 1}}, Orphans: 3}),
	"reboot: Power down",
}, "\r\n")

func TestParse(t *testing.T) {
	r := Parse(sampleLog)
	if r.Kernel != "6.1.0-50-cloud-amd64" {
		t.Errorf("Kernel = %q", r.Kernel)
	}
	if len(r.Binaries) != 2 {
		t.Fatalf("got %d binaries", len(r.Binaries))
	}
	l, e := r.Binaries[0], r.Binaries[1]
	if l.Name != "loader.test" || !l.Ended || l.Exit != 0 || l.Seconds != 1.5 || l.Counts != (Counts{Pass: 2, Skip: 1}) {
		t.Errorf("loader: %+v", *l)
	}
	if e.Name != "events.test" || e.Exit != 1 || e.Counts != (Counts{Pass: 1, Fail: 2}) {
		t.Errorf("events: %+v", *e)
	}
	if got := r.Counts(); got != (Counts{Pass: 3, Fail: 2, Skip: 1}) {
		t.Errorf("Counts = %+v", got)
	}
	if r.Summary == nil || r.Summary.Orphans != 3 || len(r.Summary.Binaries) != 2 {
		t.Errorf("Summary = %+v", r.Summary)
	}
	p := r.Problems()
	if len(p) != 1 || p[0] != "events.test: 2 failed (TestAdopt)" {
		t.Errorf("Problems = %q", p)
	}
	if !r.OnlyTestsFailed() {
		t.Errorf("OnlyTestsFailed = false for a run whose only problem is a failed test")
	}
}

func TestProblemsOfABrokenRun(t *testing.T) {
	r := Parse(strings.Join([]string{
		KernelLine("5.10.0-32-cloud-amd64"),
		BeginLine("a.test"),
		"=== RUN   TestSlow",
		"panic: test timed out after 3m15s",
		EndLine("a.test", 2, 0.1),
		BeginLine("c.test"),
		"=== RUN   TestExit",
		EndLine("c.test", 1, 0.1),
		BeginLine("b.test"),
		"=== RUN   TestHang",
		"[   99.000000] Kernel panic - not syncing: Attempted to kill init!",
	}, "\n"))
	want := []string{
		"[   99.000000] Kernel panic - not syncing: Attempted to kill init!",
		`a.test: exit 2 after "panic: test timed out after 3m15s" (last started: TestSlow)`,
		"c.test: exit 1 without a --- FAIL line (last started: TestExit)",
		"b.test: never finished (last started: TestHang)",
		"the guest printed no summary",
	}
	if got := r.Problems(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Problems =\n%q\nwant\n%q", got, want)
	}
	if r.OnlyTestsFailed() {
		t.Errorf("OnlyTestsFailed = true for a run that panicked")
	}
}

func TestHooks(t *testing.T) {
	mk := func(results ...string) *Run {
		b := &Binary{}
		for _, s := range results {
			res, name, _ := strings.Cut(s, " ")
			b.Tests = append(b.Tests, Test{Name: name, Result: res})
		}
		return &Run{Binaries: []*Binary{b}}
	}
	for _, c := range []struct {
		run  *Run
		want string
	}{
		{Parse(sampleLog), "exit-walk (exact: skipped)"},
		{mk("PASS TestA/hook=exact", "PASS TestA/hook=exit-walk", "PASS TestB/hook=exact/storm"), "exact,exit-walk"},
		// A hook that passed somewhere is "used" even if it skipped elsewhere.
		{mk("PASS TestA/hook=exact", "SKIP TestB/hook=exact"), "exact"},
		{mk("FAIL TestA/hook=exact", "SKIP TestB/hook=exit-walk"), "(exit-walk: skipped)"},
		{mk("PASS TestA", "PASS TestA/sub"), ""},
	} {
		if got := c.run.Hooks(); got != c.want {
			t.Errorf("Hooks = %q, want %q", got, c.want)
		}
	}
}

func TestParseTestLine(t *testing.T) {
	for line, want := range map[string]Test{
		"--- PASS: TestX (0.00s)":                      {"TestX", "PASS"},
		"        --- SKIP: TestX/a/hook=exact (0.01s)": {"TestX/a/hook=exact", "SKIP"},
		"--- FAIL: TestX/with_space (1.00s)":           {"TestX/with_space", "FAIL"},
	} {
		got, ok := ParseTestLine(line)
		if !ok || got != want {
			t.Errorf("ParseTestLine(%q) = %+v, %v", line, got, ok)
		}
	}
	for _, line := range []string{"=== RUN   TestX", "PASS", "ok  \tpkg\t0.1s", "--- BENCH: x"} {
		if _, ok := ParseTestLine(line); ok {
			t.Errorf("ParseTestLine(%q) matched", line)
		}
	}
}

func TestTestArgs(t *testing.T) {
	params := map[string]string{"VMTEST_RUN": "^(TestA)$", "VMTEST_COUNT": "3", "VMTEST_SHORT": "1"}
	got := strings.Join(TestArgs("10m0s", func(k string) string { return params[k] }), " ")
	if want := "-test.v -test.timeout=10m0s -test.count=3 -test.run=^(TestA)$ -test.short"; got != want {
		t.Errorf("TestArgs = %q, want %q", got, want)
	}
	got = strings.Join(TestArgs("1m0s", func(string) string { return "" }), " ")
	if want := "-test.v -test.timeout=1m0s -test.count=1"; got != want {
		t.Errorf("TestArgs without parameters = %q, want %q", got, want)
	}
}
