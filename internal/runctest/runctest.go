// Package runctest runs real containers for tests: a busybox rootfs built in
// a temporary directory, a runc spec with the cgroup path and command a test
// asks for, and `runc run -d` with a private state directory, so that cleanup
// (kill, delete) touches only the containers this package started.
package runctest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// Options describe a container.
type Options struct {
	// Args is the container's PID 1 command line, run from the busybox
	// rootfs (every applet is linked in /bin).
	Args []string
	// CgroupsPath is linux.cgroupsPath, absolute, e.g. "/docker/<64hex>".
	CgroupsPath string
	// Files are written into the rootfs (path relative to it: content),
	// executable, e.g. scripts the container runs.
	Files map[string]string
}

// Container is a running container this package started.
type Container struct {
	ID     string // runc's container id
	Bundle string // the bundle directory (config.json, rootfs)
	Pid    int    // host pid of the container's PID 1
	state  string // runc --root: ours alone
	runc   string
	t      testing.TB
}

// HexID returns a random 64-hex id, the shape of docker, containerd and
// cri-o container ids.
func HexID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// PodUID returns a random pod UID in the UUID shape Kubernetes uses.
func PodUID() string {
	h := HexID()
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Require skips t unless containers can run here: root, runc, and a static
// busybox (.ci/install-deps installs runc and busybox-static). It returns the
// paths of runc and busybox.
func Require(t testing.TB) (runc, busybox string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containers")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc is not installed (.ci/install-deps installs it)")
	}
	busybox, err = exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed (.ci/install-deps installs busybox-static)")
	}
	if static, err := isStatic(busybox); err != nil || !static {
		t.Skipf("%s is not a static binary (%v): install busybox-static", busybox, err)
	}
	return runc, busybox
}

func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

var seq int

// Start runs a container and registers its removal (kill, delete, and the
// cgroup directories runc created that did not exist before) with t.Cleanup.
func Start(t testing.TB, o Options) *Container {
	t.Helper()
	runc, busybox := Require(t)
	if !strings.HasPrefix(o.CgroupsPath, "/") {
		t.Fatalf("runctest: cgroupsPath %q must be absolute", o.CgroupsPath)
	}
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	if err := buildRootfs(rootfs, busybox, o.Files); err != nil {
		t.Fatalf("runctest: rootfs: %v", err)
	}
	seq++
	c := &Container{
		ID:     fmt.Sprintf("adoptwatch-%d-%d-%s", os.Getpid(), seq, HexID()[:8]),
		Bundle: bundle, state: filepath.Join(bundle, "state"), runc: runc, t: t,
	}
	if _, err := c.runcOut("spec", "--bundle", bundle); err != nil {
		t.Fatalf("runctest: %v", err)
	}
	if err := editSpec(filepath.Join(bundle, "config.json"), o); err != nil {
		t.Fatalf("runctest: spec: %v", err)
	}
	created := missingCgroupDirs(o.CgroupsPath)
	t.Cleanup(func() {
		c.Delete()
		for i := len(created) - 1; i >= 0; i-- {
			os.Remove(created[i]) // deepest first; fails harmlessly if not empty
		}
	})

	logf, err := os.Create(filepath.Join(bundle, "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	pidFile := filepath.Join(bundle, "pid")
	// Plain files for stdio (not pipes): the detached container keeps them,
	// and runc must not wait for it to close them.
	cmd := exec.Command(runc, "--root", c.state, "run", "--detach", "--bundle", bundle, "--pid-file", pidFile, c.ID)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("runctest: runc run: %v: %s", err, bytes.TrimSpace(out))
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("runctest: %v", err)
	}
	if c.Pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		t.Fatalf("runctest: pid file %q: %v", b, err)
	}
	// runc returns once it has told its init to go on; the exec of Args may
	// not have happened yet (comm is still "runc:[2:INIT]").
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		comm, err := procfs.Comm(c.Pid)
		if err != nil {
			t.Fatalf("runctest: container PID 1 (%d) gone: %v; output: %s", c.Pid, err, c.Output())
		}
		if !strings.HasPrefix(comm, "runc:") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runctest: container PID 1 (%d) did not exec %q", c.Pid, o.Args)
		}
	}
	return c
}

// Output is what the container's PID 1 (and its children) wrote so far.
func (c *Container) Output() string {
	b, _ := os.ReadFile(filepath.Join(c.Bundle, "output"))
	return string(b)
}

// Exec runs a command inside the container and returns its output.
func (c *Container) Exec(args ...string) (string, error) {
	return c.runcOut(append([]string{"exec", c.ID}, args...)...)
}

// Delete kills and removes the container (only ours: its state lives in our
// private --root), and waits until its PID 1 is no longer running. Safe to
// call twice.
func (c *Container) Delete() {
	c.runcOut("kill", c.ID, "KILL")
	if out, err := c.runcOut("delete", "--force", c.ID); err != nil && !strings.Contains(out, "does not exist") {
		c.t.Logf("runctest: delete %s: %v: %s", c.ID, err, out)
	}
	for deadline := time.Now().Add(10 * time.Second); Running(c.Pid) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// Running reports whether pid exists and is not a zombie. (The container's
// PID 1 is re-parented away from runc when runc exits, so whoever adopted it
// reaps it, in its own time.)
func Running(pid int) bool {
	st, err := procfs.ReadStat(pid)
	return err == nil && st.State != "Z" && st.State != "X"
}

func (c *Container) runcOut(args ...string) (string, error) {
	cmd := exec.Command(c.runc, append([]string{"--root", c.state}, args...)...)
	cmd.Stdin = nil
	if args[0] == "spec" {
		cmd.Dir = c.Bundle
	}
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		err = fmt.Errorf("runc %s timed out", args[0])
	}
	if err != nil {
		return string(out), fmt.Errorf("runc %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// buildRootfs copies busybox into rootfs/bin and links every applet to it.
func buildRootfs(rootfs, busybox string, files map[string]string) error {
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	src, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), src, 0o755); err != nil {
		return err
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		applet := strings.TrimSpace(sc.Text())
		if applet == "" || applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
		return err
	}
	for name, content := range files {
		p := filepath.Join(rootfs, filepath.Clean("/"+name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// editSpec turns `runc spec`'s template into the container asked for. The
// template's pid namespace stays: the container's PID 1 is its reaper.
func editSpec(path string, o Options) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return err
	}
	proc, ok := spec["process"].(map[string]any)
	linux, ok2 := spec["linux"].(map[string]any)
	root, ok3 := spec["root"].(map[string]any)
	if !ok || !ok2 || !ok3 {
		return fmt.Errorf("%s: no process, linux or root object", path)
	}
	proc["terminal"] = false
	proc["args"] = o.Args
	root["readonly"] = false
	linux["cgroupsPath"] = o.CgroupsPath
	hasPidNS := false
	nss, _ := linux["namespaces"].([]any)
	for _, ns := range nss {
		if m, ok := ns.(map[string]any); ok && m["type"] == "pid" {
			hasPidNS = true
		}
	}
	if !hasPidNS {
		linux["namespaces"] = append(nss, map[string]any{"type": "pid"})
	}
	out, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// missingCgroupDirs lists, parents first, the directories of cgroupsPath and
// its ancestors that do not exist yet in any cgroup hierarchy (v1 or v2):
// runc creates them, and leaves the ancestors behind when it deletes.
func missingCgroupDirs(cgroupsPath string) []string {
	var missing []string
	for _, m := range cgroupMounts() {
		p := m
		for _, part := range strings.Split(strings.Trim(cgroupsPath, "/"), "/") {
			p = filepath.Join(p, part)
			if _, err := os.Stat(p); os.IsNotExist(err) {
				missing = append(missing, p)
			}
		}
	}
	return missing
}

// cgroupMounts lists the mount points of every cgroup hierarchy.
func cgroupMounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var dirs []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		for i := 6; i+1 < len(f); i++ {
			if f[i] == "-" {
				if f[i+1] == "cgroup" || f[i+1] == "cgroup2" {
					dirs = append(dirs, f[4])
				}
				break
			}
		}
	}
	return dirs
}
