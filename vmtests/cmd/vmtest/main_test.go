package main

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/vmtests/internal/debian"
)

const mod = "github.com/adoptwatch/adoptwatch"

func TestSelectTestPackages(t *testing.T) {
	list := strings.Join([]string{
		mod + "/loader loader",
		mod + "/events events",
		mod + "/cmd/adoptwatch main",
		mod + "/cmd/adoptbench main",
		mod + "/internal/bench bench",
		mod + "/cmd/tools/bench main",
		mod + "/internal/fixture fixture_test", // external tests only
		mod + "/vmtests/internal/debian debian",
		mod + "/vmtests/cmd/vmtest main",
		mod + "/vmtests/internal/smoketest smoketest",
		"",
	}, "\n")
	got := selectTestPackages(list, mod)
	want := []testPkg{
		{mod + "/cmd/adoptbench", "adoptbench"},
		{mod + "/cmd/adoptwatch", "adoptwatch"},
		{mod + "/cmd/tools/bench", "cmd_tools_bench"},
		{mod + "/events", "events"},
		{mod + "/internal/fixture", "fixture"},
		{mod + "/internal/bench", "internal_bench"},
		{mod + "/loader", "loader"},
		{mod + "/vmtests/internal/smoketest", "smoketest"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestVerdict(t *testing.T) {
	ok := kernelResult{Label: "6.1", Status: "ok"}
	skipped := kernelResult{Label: "5.10", Status: "skipped"}
	timeout := kernelResult{Label: "7.x", Status: "timeout"}
	flaky := kernelResult{Label: "6.12", Status: "flaky"}
	failed := kernelResult{Label: "6.12", Status: "failed"}
	bins := []string{"loader.test"}
	for _, c := range []struct {
		name   string
		rep    report
		matrix bool
		want   string
	}{
		{"all ran", report{Kernels: []kernelResult{ok, ok, ok, ok}, Binaries: bins}, true, ""},
		{"one skipped in the matrix", report{Kernels: []kernelResult{ok, ok, ok, skipped}, Binaries: bins}, true, "only 3 of the 4 kernels of the matrix ran"},
		{"one explicit kernel", report{Kernels: []kernelResult{ok}, Binaries: bins}, false, ""},
		{"timeout", report{Kernels: []kernelResult{ok, ok, ok, timeout}, Binaries: bins}, true, "7.x: timeout"},
		{"flaky passes, reported", report{Kernels: []kernelResult{ok, ok, flaky, ok}, Binaries: bins}, true, ""},
		{"failed twice", report{Kernels: []kernelResult{ok, ok, failed, ok}, Binaries: bins}, true, "6.12: failed"},
		{"build failure", report{Kernels: []kernelResult{ok}, Binaries: bins, BuildFailed: []buildFailure{{Package: "x"}}}, false, "tests of x do not build"},
		{"nothing built", report{Kernels: []kernelResult{ok}}, false, "no test binaries"},
	} {
		if got := strings.Join(verdict(c.rep, wantK(c.matrix), 0), "; "); got != c.want {
			t.Errorf("%s: verdict %q, want %q", c.name, got, c.want)
		}
	}
}

func TestGuestTimeout(t *testing.T) {
	if got := guestTimeout(240 * time.Second); got != 195*time.Second {
		t.Errorf("guestTimeout(240s) = %v", got)
	}
	if got := guestTimeout(40 * time.Second); got != 30*time.Second {
		t.Errorf("guestTimeout(40s) = %v", got)
	}
}

func TestPrintReport(t *testing.T) {
	var b bytes.Buffer
	printReport(&b, report{
		Kernels: []kernelResult{
			{Label: "6.1", Kernel: "6.1.0-50-cloud-amd64", Source: "bookworm linux-image-6.1.0-50-cloud-amd64 6.1.176-1", Status: "ok", Hooks: "exact,exit-walk", Pass: 10, Skip: 1, Seconds: 42},
			{Label: "5.10", Source: "", Status: "skipped", Problems: []string{"bullseye has no linux-image-cloud-amd64"}},
		},
		Binaries: []string{"loader.test"},
		OK:       false,
		Why:      []string{"only 1 of the 4 kernels of the matrix ran"},
	})
	out := b.String()
	for _, s := range []string{
		"6.1.0-50-cloud-amd64  bookworm linux-image-6.1.0-50-cloud-amd64 6.1.176-1  ok",
		"(5.10)",
		"5.10: bullseye has no linux-image-cloud-amd64",
		"vmtest FAILED: only 1 of the 4 kernels of the matrix ran",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q:\n%s", s, out)
		}
	}
	if last := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]); last != "vmtest: 10 passed, 0 failed, 1 skipped" {
		t.Errorf("last line %q", last)
	}
}

func wantK(matrix bool) int {
	if matrix {
		return 4
	}
	return 0
}

func TestVerdictSystemd(t *testing.T) {
	ok := kernelResult{Label: "6.1", Status: "ok"}
	sd := kernelResult{Label: "6.1+systemd", Status: "ok", Systemd: "bookworm 252"}
	sdSkipped := kernelResult{Label: "6.12+systemd", Status: "skipped", Systemd: "trixie"}
	sdFailed := kernelResult{Label: "6.12+systemd", Status: "failed", Systemd: "trixie 257"}
	bins := []string{"loader.test"}
	for _, c := range []struct {
		name string
		rep  report
		want string
	}{
		{"all ran", report{Kernels: []kernelResult{ok, ok, ok, ok, sd, sd}, Binaries: bins}, ""},
		{"a rootfs could not be built", report{Kernels: []kernelResult{ok, ok, ok, ok, sd, sdSkipped}, Binaries: bins}, "only 1 of the 2 systemd boots ran"},
		{"a systemd boot failed", report{Kernels: []kernelResult{ok, ok, ok, ok, sd, sdFailed}, Binaries: bins}, "6.12+systemd: failed"},
		{"systemd boots do not count as kernels", report{Kernels: []kernelResult{ok, ok, ok, sd, sd}, Binaries: bins}, "only 3 of the 4 kernels of the matrix ran"},
	} {
		if got := strings.Join(verdict(c.rep, 4, 2), "; "); got != c.want {
			t.Errorf("%s: verdict %q, want %q", c.name, got, c.want)
		}
	}
}

func TestSystemdSuites(t *testing.T) {
	ks := []debian.Kernel{{Label: "5.10"}, {Label: "6.1"}, {Label: "6.12"}, {Label: "7.x"}}
	if got := systemdSuites("auto", ks, true); !reflect.DeepEqual(got, map[string]string{"6.1": "bookworm", "6.12": "trixie"}) {
		t.Errorf("auto, matrix: %v", got)
	}
	if got := systemdSuites("auto", ks[:1], false); len(got) != 0 {
		t.Errorf("auto, explicit kernels: %v", got)
	}
	if got := systemdSuites("off", ks, true); len(got) != 0 {
		t.Errorf("off: %v", got)
	}
	if got := systemdSuites("sid", ks[3:], false); !reflect.DeepEqual(got, map[string]string{"7.x": "sid"}) {
		t.Errorf("sid: %v", got)
	}
}

func TestExecStart(t *testing.T) {
	unit := t.TempDir() + "/a.service"
	os.WriteFile(unit, []byte("[Service]\nType=notify\nExecStart=-/usr/bin/adoptwatch --journal\nExecStart=/bin/false\n"), 0o644)
	if got := execStart(unit); got != "/usr/bin/adoptwatch" {
		t.Errorf("execStart = %q", got)
	}
	os.WriteFile(unit, []byte("[Service]\nExecStart=adoptwatch\n"), 0o644)
	if got := execStart(unit); got != "" {
		t.Errorf("relative ExecStart: %q", got)
	}
}

// The second boot repeats only the failed tests when failed tests are all
// that went wrong; otherwise (a panic, a hang) it runs everything again.
func TestRetryRun(t *testing.T) {
	failed := kernelResult{FailedTests: []string{"TestA", "TestB"}, onlyTestsFailed: true}
	if run, ok := retryRun(failed); !ok || run != "^(TestA|TestB)$" {
		t.Errorf("retryRun = %q, %v; want ^(TestA|TestB)$", run, ok)
	}
	broken := failed
	broken.onlyTestsFailed = false
	if _, ok := retryRun(broken); ok {
		t.Errorf("retryRun repeats only the failed tests of a run that also broke")
	}
	many := kernelResult{onlyTestsFailed: true}
	for i := 0; i < 100; i++ {
		many.FailedTests = append(many.FailedTests, fmt.Sprintf("TestNumber%d", i))
	}
	if _, ok := retryRun(many); ok {
		t.Errorf("retryRun made a pattern too long for the kernel command line")
	}
}

func TestStartOrder(t *testing.T) {
	boots := []boot{
		{Label: "5.10"}, {Label: "6.1"}, {Label: "6.12"}, {Label: "7.x"},
		{Label: "6.1+systemd", Systemd: "bookworm 252"}, {Label: "6.12+systemd", Systemd: "trixie 257"},
	}
	var got []string
	for _, i := range startOrder(boots) {
		got = append(got, boots[i].Label)
	}
	want := []string{"7.x", "6.12", "6.1", "5.10", "6.12+systemd", "6.1+systemd"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("start order %v, want %v", got, want)
	}
}
