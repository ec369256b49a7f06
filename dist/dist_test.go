// Package dist holds what is installed beside the binary (the systemd unit,
// an example unit for `adoptwatch run`, the man page) and the tests that
// check them with the real tools: systemd-analyze, and the binary itself run
// with no more privilege than the unit gives it.
package dist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/journal/journaltest"
	"github.com/adoptwatch/adoptwatch/internal/service/notifytest"
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

// requireInstallTools skips where `make install` cannot run: no make, or no
// Go toolchain (it builds the binary).
func requireInstallTools(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain here (in a test VM?): make install builds the binary")
	}
}

// install runs `make install` with the given variables (DESTDIR, PREFIX).
func install(t *testing.T, vars ...string) {
	t.Helper()
	requireInstallTools(t)
	cmd := exec.Command("make", append([]string{"-s", "install"}, vars...)...)
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install %s: %v\n%s", strings.Join(vars, " "), err, out)
	}
}

func requireAnalyze(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (.ci/install-deps installs the systemd package; it need not be PID 1)")
	}
}

// verify runs systemd-analyze verify on unit and fails on any complaint:
// verify exits 0 on many of its warnings. It also checks that the
// Documentation= man page is found (in manpath).
func verify(t *testing.T, unit, manpath string) {
	t.Helper()
	requireAnalyze(t)
	cmd := exec.Command("systemd-analyze", "verify", unit)
	cmd.Env = append(os.Environ(), "MANPATH="+manpath)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", filepath.Base(unit), err, out)
	}
}

// TestMakeInstall: `make install DESTDIR=...` stages the binary, the unit
// (naming the installed binary) and the man page under PREFIX, by default
// /usr/local; PREFIX=/usr moves all three.
func TestMakeInstall(t *testing.T) {
	man, err := os.ReadFile("adoptwatch.8")
	if errors.Is(err, os.ErrNotExist) && os.Getenv("ADOPTWATCH_IN_VM") != "" {
		t.Skip("no source tree in the test VM")
	}
	if err != nil {
		t.Fatal(err)
	}
	requireInstallTools(t)
	for _, prefix := range []string{"", "/usr"} {
		dest := t.TempDir()
		vars := []string{"DESTDIR=" + dest}
		want := "/usr/local"
		if prefix != "" {
			vars, want = append(vars, "PREFIX="+prefix), prefix
		}
		install(t, vars...)
		bin := filepath.Join(dest, want, "bin/adoptwatch")
		if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v %v", bin, fi, err)
		}
		if out, err := exec.Command(bin, "--help").CombinedOutput(); err != nil || !bytes.Contains(out, []byte("--journal")) {
			t.Errorf("installed binary --help: %v\n%s", err, out)
		}
		unit := filepath.Join(dest, want, "lib/systemd/system/adoptwatch.service")
		text, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(unit); fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v", unit, fi.Mode())
		}
		exec := unitDirectives(t, unit)["ExecStart"]
		if len(exec) != 1 || !strings.HasPrefix(exec[0], want+"/bin/adoptwatch ") {
			t.Errorf("installed unit: ExecStart=%q, want %s/bin/adoptwatch", exec, want)
		}
		src, _ := os.ReadFile("adoptwatch.service")
		if !bytes.Equal(text, bytes.ReplaceAll(src, []byte(installedPath), []byte(want+"/bin/adoptwatch"))) {
			t.Errorf("installed unit differs from dist/adoptwatch.service beyond the binary's path")
		}
		page := filepath.Join(dest, want, "share/man/man8/adoptwatch.8")
		if got, err := os.ReadFile(page); err != nil || !bytes.Equal(got, man) {
			t.Errorf("%s: not dist/adoptwatch.8 (%v)", page, err)
		}
		entries := 0
		filepath.WalkDir(dest, func(_ string, d os.DirEntry, _ error) error {
			if !d.IsDir() {
				entries++
			}
			return nil
		})
		if entries != 3 {
			t.Errorf("DESTDIR holds %d files, want 3", entries)
		}
	}
}

// TestServiceUnitVerifies: the unit as installed (PREFIX in a temporary
// directory, so that ExecStart= names a real binary and the man page of
// Documentation= is there) passes systemd-analyze verify without a word.
func TestServiceUnitVerifies(t *testing.T) {
	requireAnalyze(t)
	prefix := t.TempDir()
	install(t, "PREFIX="+prefix)
	verify(t, filepath.Join(prefix, "lib/systemd/system/adoptwatch.service"), filepath.Join(prefix, "share/man"))
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
	requireAnalyze(t)
	prefix := t.TempDir()
	install(t, "PREFIX="+prefix)
	src, err := os.ReadFile("examples/forking-daemon.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "forking-daemon.service")
	os.WriteFile(unit, bytes.ReplaceAll(src, []byte(installedPath), []byte(filepath.Join(prefix, "bin/adoptwatch"))), 0o644)
	verify(t, unit, filepath.Join(prefix, "share/man"))
	d := unitDirectives(t, unit)
	if d["Type"][0] != "notify" || d["NotifyAccess"][0] != "main" || !strings.Contains(d["ExecStart"][0], " run --no-subreaper -- ") {
		t.Errorf("Type=%q NotifyAccess=%q ExecStart=%q", d["Type"], d["NotifyAccess"], d["ExecStart"])
	}
}

// systemd-analyze verify does flag a broken unit (so the tests above can fail).
func TestVerifyCatchesMistakes(t *testing.T) {
	requireAnalyze(t)
	prefix := t.TempDir()
	install(t, "PREFIX="+prefix)
	unit := filepath.Join(prefix, "lib/systemd/system/adoptwatch.service")
	text, _ := os.ReadFile(unit)
	bad := filepath.Join(t.TempDir(), "adoptwatch.service")
	os.WriteFile(bad, bytes.Replace(text, []byte("Type=notify"), []byte("Type=notfiy"), 1), 0o644)
	out, _ := exec.Command("systemd-analyze", "verify", bad).CombinedOutput()
	if !bytes.Contains(out, []byte("notfiy")) {
		t.Errorf("verify did not flag Type=notfiy: %q", out)
	}
	// Documentation=man:adoptwatch(8) without the page installed.
	cmd := exec.Command("systemd-analyze", "verify", unit)
	cmd.Env = append(os.Environ(), "MANPATH="+t.TempDir())
	out, _ = cmd.CombinedOutput()
	if !bytes.Contains(out, []byte("adoptwatch(8)")) {
		t.Errorf("verify did not miss the man page outside MANPATH: %q", out)
	}
}

// The capabilities the unit grants are enough: the real binary, started with
// the unit's own arguments (--journal and --socket included), as uid 0 with
// exactly CapabilityBoundingSet and no_new_privs (what systemd does), in a
// private mount namespace whose /run/systemd/journal is the test's journal,
// sends READY=1, serves its socket and reports a real double fork to the
// journal and, with the adopted process's pidfd, to a subscriber.
func TestServiceCapabilitiesSuffice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs")
	}
	for _, tool := range []string{"setpriv", "unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s (util-linux) not installed", tool)
		}
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
	journalSeen := false
	var run []string
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "--socket":
			i++
			run = append(run, "--socket", sock) // the unit's is under /run, private here
		case "--journal":
			journalSeen = true
			run = append(run, args[i])
		default:
			run = append(run, args[i])
		}
	}
	if !journalSeen {
		t.Error("the unit does not run --journal")
	}
	run = append(run, "--json")

	j := journaltest.Listen(t)
	l := notifytest.Listen(t)
	// unshare(1) makes the new mount namespace's mounts private.
	script := `mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && mount --bind "$0" /run/systemd/journal && exec "$@"`
	cmd := exec.Command("unshare", append([]string{"--mount", "sh", "-c", script, j.Dir,
		"setpriv", "--bounding-set=" + bounding, "--inh-caps=-all", "--no-new-privs", bin}, run...)...)
	cmd.Env = append(os.Environ(), l.Env())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(unix.SIGTERM) // exec'd all the way: this is adoptwatch
		cmd.Wait()
		t.Logf("adoptwatch stderr:\n%s", stderr.String())
	}()
	if m, ok := l.Next(t, 30*time.Second); !ok || !strings.HasPrefix(m.Text, "STATUS=watching") || m.PID != int32(cmd.Process.Pid) {
		t.Fatalf("first notification %q from %d (received %v), want STATUS=watching... from %d; stderr:\n%s", m.Text, m.PID, ok, cmd.Process.Pid, stderr.String())
	}
	l.Expect(t, 5*time.Second, "READY=1")
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	t.Logf("the running watcher:\n%s", grepLines(string(status), "Cap", "NoNewPrivs"))
	if !strings.Contains(string(status), "NoNewPrivs:\t1") {
		t.Error("no_new_privs not set")
	}

	// This test process is the reaper of its own double fork.
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
	out, err := exec.Command("sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
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
	for deadline := time.Now().Add(30 * time.Second); ; {
		f, _, ok := j.Next(t, time.Until(deadline))
		if !ok {
			t.Fatalf("no journal entry for the adoption of %d", pid)
		}
		if f["ADOPTWATCH_PID"] == strconv.Itoa(pid) {
			if f["ADOPTWATCH_NEW_PARENT"] != strconv.Itoa(os.Getpid()) || f["ADOPTWATCH_REAPER_KIND"] != "subreaper" {
				t.Errorf("journal entry %q", f)
			}
			break
		}
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
