// Package dist holds what is installed beside the binary (the systemd unit,
// an example unit for `adoptwatch run`, the man page) and the tests that
// check them with the real tools: systemd-analyze, and the binary itself run
// with no more privilege than the unit gives it.
package dist

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/subscribe"
)

const installedPath = "/usr/local/bin/adoptwatch"

// repoRoot is the module root: this package's parent directory.
func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// build compiles adoptwatch into dir/bin. Tests that need it skip where there
// is no Go toolchain (in the test VMs).
func build(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain here (in a test VM?): the dist tests build the binary")
	}
	bin := filepath.Join(dir, "bin", "adoptwatch")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/adoptwatch")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// unitDirectives reads a unit file's Key=value lines (all sections; repeated
// keys accumulate).
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not a directive: %q", path, line)
		}
		d[k] = append(d[k], v)
	}
	return d
}

// verify runs systemd-analyze verify on a copy of unit whose ExecStart names
// bin, and fails on any complaint: verify exits 0 on many of its warnings.
func verify(t *testing.T, unit, bin string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (.ci/install-deps installs the systemd package; it need not be PID 1)")
	}
	text, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(text, []byte("ExecStart="+installedPath+" ")) {
		t.Fatalf("%s: ExecStart does not start with %s", unit, installedPath)
	}
	copyPath := filepath.Join(t.TempDir(), filepath.Base(unit))
	if err := os.WriteFile(copyPath, bytes.ReplaceAll(text, []byte(installedPath), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", copyPath).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", filepath.Base(unit), err, out)
	}
}

func TestServiceUnitVerifies(t *testing.T) {
	bin := build(t, t.TempDir())
	verify(t, "adoptwatch.service", bin)
	d := unitDirectives(t, "adoptwatch.service")
	for k, want := range map[string]string{
		"Type": "notify", "RuntimeDirectory": "adoptwatch", "NoNewPrivileges": "yes",
		"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "Restart": "on-failure",
	} {
		if got := d[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if len(d["WatchdogSec"]) != 1 {
		t.Error("no WatchdogSec")
	}
}

func TestExampleRunUnitVerifies(t *testing.T) {
	bin := build(t, t.TempDir())
	verify(t, "examples/forking-daemon.service", bin)
	d := unitDirectives(t, "examples/forking-daemon.service")
	if d["Type"][0] != "notify" || d["NotifyAccess"][0] != "main" || !strings.Contains(d["ExecStart"][0], " run ") {
		t.Errorf("Type=%q NotifyAccess=%q ExecStart=%q", d["Type"], d["NotifyAccess"], d["ExecStart"])
	}
}

// systemd-analyze verify does flag a broken unit (so the tests above can fail).
func TestVerifyCatchesMistakes(t *testing.T) {
	bin := build(t, t.TempDir())
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed")
	}
	text, _ := os.ReadFile("adoptwatch.service")
	bad := bytes.Replace(bytes.ReplaceAll(text, []byte(installedPath), []byte(bin)), []byte("Type=notify"), []byte("Type=notfiy"), 1)
	p := filepath.Join(t.TempDir(), "bad.service")
	os.WriteFile(p, bad, 0o644)
	out, _ := exec.Command("systemd-analyze", "verify", "--man=no", p).CombinedOutput()
	if !bytes.Contains(out, []byte("notfiy")) {
		t.Fatalf("verify did not flag Type=notfiy: %q", out)
	}
}

// The capabilities the unit grants are enough: the real binary, started with
// the unit's arguments, as uid 0 with exactly CapabilityBoundingSet and
// no_new_privs (what systemd does), attaches, serves its socket and reports a
// real double-fork, with the adopted process's pidfd, to a subscriber.
func TestServiceCapabilitiesSuffice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	dir := t.TempDir()
	bin := build(t, dir)
	d := unitDirectives(t, "adoptwatch.service")
	caps := strings.Fields(d["CapabilityBoundingSet"][0])
	if amb := strings.Fields(d["AmbientCapabilities"][0]); strings.Join(amb, " ") != strings.Join(caps, " ") {
		t.Errorf("AmbientCapabilities %q differ from CapabilityBoundingSet %q", amb, caps)
	}
	bounding := "-all"
	for _, c := range caps {
		bounding += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}

	args := strings.Fields(d["ExecStart"][0])
	if args[0] != installedPath {
		t.Fatalf("ExecStart=%q", d["ExecStart"][0])
	}
	sock := filepath.Join(dir, "adoptwatch.sock")
	var run []string
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "--socket":
			i++
			run = append(run, "--socket", sock)
		case "--journal":
			// phase 2 runs it too, against the test's own journal socket.
		default:
			run = append(run, args[i])
		}
	}
	ready := filepath.Join(dir, "ready")
	run = append(run, "--json", "--ready-file", ready)

	cmd := exec.Command(setpriv, append([]string{"--bounding-set=" + bounding, "--inh-caps=-all", "--no-new-privs", bin}, run...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(unix.SIGTERM)
		cmd.Wait()
		t.Logf("adoptwatch stderr:\n%s", stderr.String())
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("not ready within 30s with %s:\n%s", bounding, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	t.Logf("capabilities of the running watcher:\n%s", grepLines(string(status), "Cap", "NoNewPrivs"))

	// This test process is the reaper of its own double-fork.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	c, err := subscribe.Dial(sock, fmt.Sprintf("parent %d", os.Getpid()))
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer c.Close()
	c.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if rec, err := c.Next(); err != nil || rec.Fields["event"] != "subscribed" {
		t.Fatalf("subscribe: %q %v", rec.Line, err)
	}
	// sh forks a sleeping child and exits: the child is adopted by this test.
	if out, err := exec.Command("sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!").Output(); err != nil {
		t.Fatal(err)
	} else {
		var pid int
		fmt.Sscan(string(out), &pid)
		defer func() { unix.Kill(pid, unix.SIGKILL); unix.Wait4(pid, nil, 0, nil) }()
		rec, err := c.Next()
		if err != nil {
			t.Fatalf("no adoption: %v", err)
		}
		if rec.Fields["pid"] != float64(pid) || rec.Fields["reaper"] != "subreaper" || rec.Fields["pidfd"] != subscribe.PidfdPassed {
			t.Fatalf("adoption line %s: want pid %d, reaper subreaper, a pidfd", rec.Line, pid)
		}
		unix.Close(rec.Pidfd)
	}
	if !bytes.Contains(stdout.Bytes(), []byte(`"event":"adopt"`)) {
		t.Errorf("no adoption on stdout: %s", stdout.String())
	}
}

func grepLines(s string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
