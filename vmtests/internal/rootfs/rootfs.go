// Package rootfs builds the root filesystem of the systemd test VMs: a
// minimal Debian (the suite's Essential set plus systemd, systemd-sysv and
// dbus) made by mmdebstrap from the same mirror and keyring as the kernels,
// packed as a cpio archive the kernel unpacks as its initramfs. systemd runs
// from that root as PID 1 (it is no initrd: there is no /etc/initrd-release).
//
// A build is kept under <cache>/rootfs/<suite>-<key>, where the key hashes
// the recipe and every package version apt would install now: it is rebuilt
// only when one of those versions (or the recipe) changes.
package rootfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/adoptwatch/adoptwatch/vmtests/internal/debian"
	"github.com/adoptwatch/adoptwatch/vmtests/internal/initramfs"
)

// Packages are installed on top of the suite's Essential set: systemd as
// PID 1 (systemd-sysv is Debian's "systemd is init"), with systemctl and
// journalctl, and the system bus.
var Packages = []string{"systemd", "systemd-sysv", "dbus"}

// mmdebstrapArgs is the recipe, less suite, output and mirror. Documentation
// and translations are left out (a third of the size, and RAM in the guest).
func mmdebstrapArgs(keyring string) []string {
	return []string{
		"--variant=essential",
		"--include=" + strings.Join(Packages, ","),
		"--keyring=" + keyring,
		"--aptopt=Acquire::Languages \"none\"",
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
		"--dpkgopt=path-exclude=/usr/share/info/*",
	}
}

// Rootfs is one built root filesystem.
type Rootfs struct {
	Suite    string
	Cpio     string // the archive to boot
	Packages []debian.Package
}

// Version returns the installed version of pkg ("" if absent).
func (r *Rootfs) Version(pkg string) string {
	for _, p := range r.Packages {
		if p.Name == pkg {
			return p.Version
		}
	}
	return ""
}

// Key hashes the recipe and the package versions into a short name.
func Key(args []string, pkgs []debian.Package) string {
	h := sha256.New()
	for _, a := range args {
		fmt.Fprintf(h, "arg %s\n", a)
	}
	for _, p := range pkgs {
		fmt.Fprintf(h, "pkg %s %s\n", p.Name, p.Version)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Build returns the root filesystem of suite, building it with mmdebstrap
// if the cache has none for the package versions apt offers now. The apt
// lists must be current (Apt.Update).
func Build(ctx context.Context, apt *debian.Apt, suite, cacheDir string, log io.Writer) (*Rootfs, error) {
	want, err := apt.Closure(ctx, suite, append([]string{"?essential"}, Packages...))
	if err != nil {
		return nil, err
	}
	args := mmdebstrapArgs(apt.Mirror.Keyring)
	top := filepath.Join(cacheDir, "rootfs")
	dir := filepath.Join(top, suite+"-"+Key(args, want))
	r := &Rootfs{Suite: suite, Cpio: filepath.Join(dir, "rootfs.cpio")}
	if pkgs, err := readPackages(filepath.Join(dir, "packages")); err == nil {
		if _, err := os.Stat(r.Cpio); err == nil {
			r.Packages = pkgs
			return r, nil
		}
	}

	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return nil, fmt.Errorf("%v (vmtests/install-deps.sh installs it)", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	tmp := filepath.Join(cacheDir, "tmp")
	for _, d := range []string{dir, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	tarball := filepath.Join(dir, "rootfs.tar")
	fmt.Fprintf(log, "vmtest: building the %s root filesystem with mmdebstrap (%s %s)\n", suite, "systemd", versionOf(want, "systemd"))
	cmd := exec.CommandContext(ctx, "mmdebstrap", append(args, suite, tarball, apt.Mirror.URI)...)
	// mmdebstrap's own temporary root and apt configuration stay in the cache.
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mmdebstrap %s: %v\n%s", suite, err, tail(out.String(), 15))
	}
	got, err := installedPackages(tarball)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if d := diff(want, got); d != "" {
		// The mirror moved on between apt's lists and mmdebstrap's: the next
		// run's key will name what was installed now.
		fmt.Fprintf(log, "vmtest: %s root filesystem differs from the apt lists: %s\n", suite, d)
	}
	if err := initramfs.FromTar(r.Cpio, tarball); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	os.Remove(tarball)
	if err := writePackages(filepath.Join(dir, "packages"), got); err != nil {
		return nil, err
	}
	r.Packages = got
	prune(top, suite, dir)
	return r, nil
}

// prune removes the suite's older builds: the cache keeps one per suite.
func prune(top, suite, keep string) {
	old, _ := filepath.Glob(filepath.Join(top, suite+"-*"))
	for _, d := range old {
		if d != keep {
			os.RemoveAll(d)
		}
	}
}

func versionOf(pkgs []debian.Package, name string) string {
	for _, p := range pkgs {
		if p.Name == name {
			return p.Version
		}
	}
	return "?"
}

// diff describes how two package lists differ, briefly ("" if equal).
func diff(a, b []debian.Package) string {
	am, bm := map[string]string{}, map[string]string{}
	for _, p := range a {
		am[p.Name] = p.Version
	}
	for _, p := range b {
		bm[p.Name] = p.Version
	}
	var d []string
	for n, v := range am {
		if bm[n] != v {
			d = append(d, fmt.Sprintf("%s %q→%q", n, v, bm[n]))
		}
	}
	for n, v := range bm {
		if _, ok := am[n]; !ok {
			d = append(d, fmt.Sprintf("%s +%s", n, v))
		}
	}
	sort.Strings(d)
	if len(d) > 5 {
		d = append(d[:5], fmt.Sprintf("and %d more", len(d)-5))
	}
	return strings.Join(d, ", ")
}

// installedPackages reads var/lib/dpkg/status out of the tarball.
func installedPackages(tarball string) ([]debian.Package, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s holds no var/lib/dpkg/status", tarball)
		}
		if err != nil {
			return nil, err
		}
		if strings.TrimPrefix(h.Name, "./") == "var/lib/dpkg/status" {
			return ParseStatus(tr)
		}
	}
}

// ParseStatus reads the installed packages of a dpkg status file.
func ParseStatus(r io.Reader) ([]debian.Package, error) {
	var pkgs []debian.Package
	var cur debian.Package
	installed := false
	flush := func() {
		if cur.Name != "" && installed {
			pkgs = append(pkgs, cur)
		}
		cur, installed = debian.Package{}, false
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		switch k {
		case "Package":
			cur.Name = strings.TrimSpace(v)
		case "Version":
			cur.Version = strings.TrimSpace(v)
		case "Status":
			installed = strings.HasSuffix(strings.TrimSpace(v), " installed")
		}
	}
	flush()
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	return pkgs, sc.Err()
}

func writePackages(p string, pkgs []debian.Package) error {
	var b strings.Builder
	for _, pk := range pkgs {
		fmt.Fprintf(&b, "%s %s\n", pk.Name, pk.Version)
	}
	return os.WriteFile(p, []byte(b.String()), 0o644)
}

func readPackages(p string) ([]debian.Package, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var pkgs []debian.Package
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		n, v, ok := strings.Cut(line, " ")
		if !ok {
			return nil, errors.New(p + ": malformed")
		}
		pkgs = append(pkgs, debian.Package{Name: n, Version: v})
	}
	return pkgs, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
