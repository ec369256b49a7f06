package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/adoptwatch/adoptwatch/vmtests/internal/debian"
	"github.com/adoptwatch/adoptwatch/vmtests/internal/initramfs"
	"github.com/adoptwatch/adoptwatch/vmtests/internal/rootfs"
)

// The systemd boots: Debian's systemd as PID 1, on a root filesystem built
// from the packages of the kernel's own suite, running the tests of
// systemdTestPkg as a service (adoptwatch-vmtest.service).

// systemdTargets pairs kernels of the matrix with the suite whose systemd
// boots them: each suite's kernel with its own systemd, as users run them.
var systemdTargets = map[string]string{"6.1": "bookworm", "6.12": "trixie"}

// systemdTestPkg holds the tests that run under systemd; it is built for
// the systemd boots only.
const systemdTestPkg = "/vmtests/internal/systemdtest"

// Where things go in the systemd guests.
const (
	unitName     = "adoptwatch-vmtest.service"
	runnerPath   = "usr/local/lib/adoptwatch-vmtest/vmunit"
	watcherPath  = "usr/local/bin/adoptwatch"
	systemdPath  = "/usr/lib/systemd/systemd" // /lib is /usr/lib in every suite mmdebstrap builds
	systemdExtra = "rdinit=" + systemdPath + " systemd.show_status=0 systemd.getty_auto=0 systemd.firstboot=0 systemd.log_level=notice systemd.log_target=console"
)

// testUnit runs the tests once the system is up. Type=exec, not oneshot: a
// oneshot's start job would last as long as the tests, and the system would
// never reach "running" while they check that it does. The tests' output
// goes straight to the serial console, where the host reads the markers.
const testUnit = `[Unit]
Description=adoptwatch tests under systemd (vmtest)
After=basic.target
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=exec
ExecStart=/` + runnerPath + `
Environment=ADOPTWATCH_IN_VM=1 ADOPTWATCH_SYSTEMD=1 HOME=/root TMPDIR=/tmp
Environment=PATH=/tests:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
StandardInput=null
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0
LimitMEMLOCK=infinity

[Install]
WantedBy=multi-user.target
`

// systemdParts are the binaries the systemd guests get besides the rootfs.
type systemdParts struct {
	Runner  string
	Watcher string
	Tests   []string // host paths of test binaries
	Units   []string // dist/*.service of the repository, if any
}

// buildSystemdParts compiles the runner, the adoptwatch command and the
// systemd tests into dir.
func buildSystemdParts(ctx context.Context, goBin, root, module, dir string) (*systemdParts, error) {
	p := &systemdParts{
		Runner:  filepath.Join(dir, "vmunit"),
		Watcher: filepath.Join(dir, "adoptwatch"),
		Tests:   []string{filepath.Join(dir, "systemdtest.test")},
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, b := range [][]string{
		{"build", "-trimpath", "-ldflags=-s -w", "-o", p.Runner, "./vmtests/cmd/vmunit"},
		{"build", "-trimpath", "-ldflags=-s -w", "-o", p.Watcher, "./cmd/adoptwatch"},
		{"test", "-c", "-trimpath", "-ldflags=-s -w", "-o", p.Tests[0], module + systemdTestPkg},
	} {
		if out, err := goCmd(ctx, goBin, root, b...); err != nil {
			return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(b, " "), err, out)
		}
	}
	p.Units, _ = filepath.Glob(filepath.Join(root, "dist", "*.service"))
	return p, nil
}

// writeSystemdInitrd writes the suite's rootfs archive followed by a second
// archive with the tests, the runner, adoptwatch and the units: the kernel
// unpacks concatenated archives one after the other into the same root.
func writeSystemdInitrd(out, base string, p *systemdParts) error {
	a := initramfs.New()
	a.Copy(runnerPath, p.Runner, 0o755)
	a.Copy(watcherPath, p.Watcher, 0o755)
	for _, t := range p.Tests {
		a.Copy("tests/"+filepath.Base(t), t, 0o755)
	}
	a.Bytes("etc/systemd/system/"+unitName, []byte(testUnit), 0o644)
	a.Symlink("etc/systemd/system/multi-user.target.wants/"+unitName, "/etc/systemd/system/"+unitName)
	// The guest has no kernel modules to load: the service would fail and
	// leave the system "degraded" for no reason of ours.
	a.Symlink("etc/systemd/system/systemd-modules-load.service", "/dev/null")
	// The shipped units, installed as `make install` would, not enabled:
	// the tests start them.
	for _, u := range p.Units {
		a.Copy("etc/systemd/system/"+filepath.Base(u), u, 0o644)
		// Where the unit expects the command, if not where vmtest puts it.
		if exe := execStart(u); exe != "" && exe != "/"+watcherPath && filepath.Base(exe) == "adoptwatch" {
			a.Symlink(exe, "/"+watcherPath)
		}
	}

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	src, err := os.Open(base)
	if err != nil {
		f.Close()
		return err
	}
	_, err = io.Copy(f, src)
	src.Close()
	if err == nil {
		err = a.Write(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// execStart returns the program of a unit file's first ExecStart= line
// (without systemd's "-@:+!" prefixes), or "" if there is none.
func execStart(unit string) string {
	data, err := os.ReadFile(unit)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecStart=")
		if !ok {
			continue
		}
		f := strings.Fields(strings.TrimLeft(v, "-@:+!"))
		if len(f) > 0 && strings.HasPrefix(f[0], "/") {
			return f[0]
		}
		return ""
	}
	return ""
}

// systemdSuites says which suite's systemd boots each kernel: the pairs of
// systemdTargets for the matrix with --systemd=auto, the one suite named by
// --systemd for every kernel, none with --systemd=off (or explicit kernels
// and auto).
func systemdSuites(mode string, kernels []debian.Kernel, matrix bool) map[string]string {
	out := map[string]string{}
	switch mode {
	case "off":
	case "auto":
		if matrix {
			for _, k := range kernels {
				if s, ok := systemdTargets[k.Label]; ok {
					out[k.Label] = s
				}
			}
		}
	default:
		for _, k := range kernels {
			out[k.Label] = mode
		}
	}
	return out
}

// buildRootfs builds (or finds in the cache) the root filesystem of each suite.
func buildRootfs(ctx context.Context, apt *debian.Apt, suites map[string]string, cache string) (map[string]*rootfs.Rootfs, map[string]error) {
	built := map[string]*rootfs.Rootfs{}
	failed := map[string]error{}
	for _, suite := range suites {
		if built[suite] != nil || failed[suite] != nil {
			continue
		}
		r, err := rootfs.Build(ctx, apt, suite, cache, os.Stderr)
		if err != nil {
			failed[suite] = err
			logf("no %s root filesystem for systemd boots: %v", suite, err)
			continue
		}
		built[suite] = r
	}
	return built, failed
}
