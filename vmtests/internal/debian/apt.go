package debian

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Apt runs apt-get and apt-cache against a private configuration kept in Dir:
// its own sources.list, lists, state and package cache. The system's apt
// configuration files are only read (for the mirror), never changed.
type Apt struct {
	Dir    string
	Mirror Mirror
	Suites []string
	Log    io.Writer // progress messages; may be nil
}

func (a *Apt) logf(format string, args ...any) {
	if a.Log != nil {
		fmt.Fprintf(a.Log, format+"\n", args...)
	}
}

// options point apt at the private directories. Appstream (DEP-11) metadata
// that the system enables is switched off: only Packages files are needed.
func (a *Apt) options() []string {
	opts := []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(a.Dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State=" + filepath.Join(a.Dir, "state"),
		"-o", "Dir::State::Lists=" + filepath.Join(a.Dir, "lists"),
		"-o", "Dir::State::status=" + filepath.Join(a.Dir, "state", "status"),
		"-o", "Dir::Cache=" + filepath.Join(a.Dir, "cache"),
		"-o", "APT::Architecture=amd64",
		"-o", "APT::Architectures=amd64",
		"-o", "Acquire::Languages=none",
		"-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
	}
	if os.Geteuid() == 0 {
		// Downloads land in our own directory, which the _apt sandbox
		// user may not be able to write.
		opts = append(opts, "-o", "APT::Sandbox::User=root")
	}
	return opts
}

// SourcesList renders the private sources.list for the mirror and suites.
func SourcesList(m Mirror, suites []string) string {
	var b strings.Builder
	b.WriteString("# Written by adoptwatch vmtest: a private apt configuration.\n")
	for _, s := range suites {
		fmt.Fprintf(&b, "deb [signed-by=%s] %s %s main\n", m.Keyring, m.URI, s)
	}
	return b.String()
}

func (a *Apt) setup() error {
	for _, d := range []string{"state", "lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.Dir, d), 0o755); err != nil {
			return err
		}
	}
	status := filepath.Join(a.Dir, "state", "status")
	if _, err := os.Stat(status); err != nil {
		if err := os.WriteFile(status, nil, 0o644); err != nil {
			return err
		}
	}
	want := SourcesList(a.Mirror, a.Suites)
	p := filepath.Join(a.Dir, "sources.list")
	if old, err := os.ReadFile(p); err == nil && string(old) == want {
		return nil
	}
	// A changed list invalidates the freshness stamp.
	os.Remove(filepath.Join(a.Dir, "updated"))
	return os.WriteFile(p, []byte(want), 0o644)
}

// Update refreshes the package lists unless they are younger than maxAge.
// A failed update is returned with apt's error lines, but lists that did
// download stay usable: the caller decides whether to go on.
func (a *Apt) Update(ctx context.Context, maxAge time.Duration) error {
	if err := a.setup(); err != nil {
		return err
	}
	stamp := filepath.Join(a.Dir, "updated")
	if st, err := os.Stat(stamp); err == nil && time.Since(st.ModTime()) < maxAge {
		a.logf("apt lists are %s old, not updating (use --refresh to force)", time.Since(st.ModTime()).Round(time.Minute))
		return nil
	}
	a.logf("apt-get update (%s: %s)", a.Mirror.URI, strings.Join(a.Suites, " "))
	out, err := a.run(ctx, "apt-get", "-q", "update")
	if err != nil {
		return fmt.Errorf("apt-get update: %w\n%s", err, errorLines(out))
	}
	return os.WriteFile(stamp, nil, 0o644)
}

// errorLines keeps the lines of apt output that explain a failure.
func errorLines(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "E:") || strings.HasPrefix(l, "Err:") || strings.HasPrefix(l, "W:") {
			keep = append(keep, "  "+l)
		}
	}
	return strings.Join(keep, "\n")
}

func (a *Apt) run(ctx context.Context, name string, args ...string) (string, error) {
	return a.runIn(ctx, "", name, args...)
}

func (a *Apt) runIn(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, append(a.options(), args...)...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// show returns the first stanza of `apt-cache show pkg=ver` as fields.
func (a *Apt) show(ctx context.Context, pkg, ver string) (map[string]string, error) {
	out, err := a.run(ctx, "apt-cache", "show", pkg+"="+ver)
	if err != nil {
		return nil, fmt.Errorf("apt-cache show %s=%s: %v: %s", pkg, ver, err, strings.TrimSpace(out))
	}
	fields := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields, nil
}

// Kernel is one resolved (or skipped) kernel of the matrix.
type Kernel struct {
	Label   string // e.g. "6.1"
	Suite   string
	Package string // the package the vmlinuz was taken from
	Version string // its Debian version
	Path    string // extracted vmlinuz; empty when skipped
	Skipped string // why it could not be had
}

// Source describes where the kernel came from, for the result table.
func (k Kernel) Source() string {
	if k.Suite == "" {
		return k.Path
	}
	return k.Suite + " " + k.Package + " " + k.Version
}

// Resolve finds, downloads (into cacheDir/debs) and unpacks (into
// cacheDir/kernels) the kernel of each target. Targets that fail come back
// with Skipped set; the error is only for problems that stop everything.
func (a *Apt) Resolve(ctx context.Context, targets []Target, cacheDir string) []Kernel {
	out, err := a.run(ctx, "apt-cache", "madison", MetaPackage)
	rows := ParseMadison(out)
	var kernels []Kernel
	for _, t := range targets {
		k := Kernel{Label: t.Label}
		if err != nil && len(rows) == 0 {
			k.Skipped = fmt.Sprintf("apt-cache madison: %v", err)
			kernels = append(kernels, k)
			continue
		}
		if err := a.resolveOne(ctx, t, rows, cacheDir, &k); err != nil {
			k.Skipped = err.Error()
		}
		kernels = append(kernels, k)
	}
	return kernels
}

func (a *Apt) resolveOne(ctx context.Context, t Target, rows []MadisonRow, cacheDir string, k *Kernel) error {
	meta, err := Choose(rows, t)
	if err != nil {
		return err
	}
	k.Suite = meta.Suite
	mf, err := a.show(ctx, MetaPackage, meta.Version)
	if err != nil {
		return err
	}
	img, ok := ImagePackage(mf["Depends"])
	if !ok {
		return fmt.Errorf("%s %s depends on no linux-image-*-cloud-amd64 (%q)", MetaPackage, meta.Version, mf["Depends"])
	}
	imf, err := a.show(ctx, img, meta.Version)
	if err != nil {
		return err
	}
	pkg := img
	if bin, ok := BinaryPackage(imf["Depends"]); ok {
		pkg = bin
	}
	k.Package, k.Version = pkg, meta.Version

	dir := filepath.Join(cacheDir, "kernels", pkg+"_"+meta.Version)
	vmlinuz := filepath.Join(dir, "vmlinuz")
	if _, err := os.Stat(vmlinuz); err == nil {
		k.Path = vmlinuz
		return nil
	}
	deb, err := a.download(ctx, pkg, meta.Version, meta.Suite, cacheDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := ExtractVmlinuz(ctx, deb, vmlinuz); err != nil {
		return err
	}
	// The vmlinuz is all we keep; the package is tens of MB.
	os.Remove(deb)
	k.Path = vmlinuz
	return nil
}

// download fetches pkg=ver into cacheDir/debs and returns the file's path.
func (a *Apt) download(ctx context.Context, pkg, ver, suite, cacheDir string) (string, error) {
	debs := filepath.Join(cacheDir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", err
	}
	a.logf("downloading %s=%s (%s)", pkg, ver, suite)
	if out, err := a.runIn(ctx, debs, "apt-get", "-q", "download", pkg+"="+ver); err != nil {
		return "", fmt.Errorf("apt-get download %s=%s: %v\n%s", pkg, ver, err, errorLines(out))
	}
	// apt names the file pkg_ver_arch.deb, with the epoch colon escaped.
	return filepath.Join(debs, fmt.Sprintf("%s_%s_amd64.deb", pkg, strings.ReplaceAll(ver, ":", "%3a"))), nil
}

// BusyboxPackage ships a static busybox at bin/busybox: the guest's shell and
// coreutils, for tests that run "sh" or "sleep" as any Linux system has them.
const BusyboxPackage = "busybox-static"

// FetchBusybox returns a static busybox, from cacheDir/tools if an earlier run
// fetched one, else downloaded from the newest suite that has it.
func (a *Apt) FetchBusybox(ctx context.Context, cacheDir string) (string, error) {
	out, err := a.run(ctx, "apt-cache", "madison", BusyboxPackage)
	rows := ParseMadison(out)
	if err != nil || len(rows) == 0 {
		return "", fmt.Errorf("apt-cache madison %s: no versions (%v)", BusyboxPackage, err)
	}
	best := rows[0]
	for _, r := range rows[1:] {
		if CompareVersions(r.Version, best.Version) > 0 {
			best = r
		}
	}
	dest := filepath.Join(cacheDir, "tools", BusyboxPackage+"_"+best.Version, "busybox")
	if _, err := os.Stat(dest); err == nil {
		return dest, nil
	}
	deb, err := a.download(ctx, BusyboxPackage, best.Version, best.Suite, cacheDir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", err
	}
	if err := ExtractFile(ctx, deb, func(n string) bool {
		return path.Clean("/"+n) == "/bin/busybox" || path.Clean("/"+n) == "/usr/bin/busybox"
	}, dest); err != nil {
		return "", err
	}
	os.Remove(deb)
	return dest, nil
}

// ExtractVmlinuz copies the kernel image out of a .deb to dest.
func ExtractVmlinuz(ctx context.Context, deb, dest string) error {
	err := ExtractFile(ctx, deb, IsVmlinuz, dest)
	if errors.Is(err, errNotFound) {
		return fmt.Errorf("%s holds no boot/vmlinuz-* nor usr/lib/modules/*/vmlinuz", filepath.Base(deb))
	}
	return err
}

var errNotFound = errors.New("no such file in the package")

// ExtractFile copies the first regular file whose path matches out of a .deb
// (through `dpkg-deb --fsys-tarfile`) to dest, atomically.
func ExtractFile(ctx context.Context, deb string, match func(string) bool, dest string) error {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	found, copyErr := copyMatching(pipe, match, dest)
	io.Copy(io.Discard, pipe) // let dpkg-deb finish writing
	waitErr := cmd.Wait()
	switch {
	case copyErr != nil:
		return fmt.Errorf("extracting %s: %w", deb, copyErr)
	case waitErr != nil:
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %v: %s", deb, waitErr, strings.TrimSpace(stderr.String()))
	case !found:
		return fmt.Errorf("%s: %w", filepath.Base(deb), errNotFound)
	}
	return nil
}

func copyMatching(r io.Reader, match func(string) bool, dest string) (bool, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if h.Typeflag != tar.TypeReg || !match(h.Name) {
			continue
		}
		tmp := dest + ".tmp"
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
		if err != nil {
			return false, err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return false, err
		}
		if err := f.Close(); err != nil {
			return false, err
		}
		return true, os.Rename(tmp, dest)
	}
}

// Package is one package and version.
type Package struct{ Name, Version string }

// Closure lists what installing pkgs on an empty system of one suite would
// install (apt-get's simulation, from the lists Update fetched), sorted by
// name. Patterns work: "?essential" is the suite's Essential set. Only the
// suite's own lists are used, through a sources.list and package cache of
// its own under Dir; recommends are left out, and apt is not counted as
// essential, as mmdebstrap's essential variant does.
func (a *Apt) Closure(ctx context.Context, suite string, pkgs []string) ([]Package, error) {
	dir := filepath.Join(a.Dir, "suite-"+suite)
	if err := os.MkdirAll(filepath.Join(dir, "cache", "archives", "partial"), 0o755); err != nil {
		return nil, err
	}
	list := filepath.Join(dir, "sources.list")
	if err := os.WriteFile(list, []byte(SourcesList(a.Mirror, []string{suite})), 0o644); err != nil {
		return nil, err
	}
	args := []string{
		"-o", "Dir::Etc::SourceList=" + list,
		"-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "APT::Install-Recommends=false",
		"-o", "pkgCacheGen::ForceEssential=,",
		"-s", "install",
	}
	out, err := a.run(ctx, "apt-get", append(args, pkgs...)...)
	if err != nil {
		return nil, fmt.Errorf("apt-get -s install %s (%s): %v\n%s", strings.Join(pkgs, " "), suite, err, errorLines(out))
	}
	got := ParseSimulation(out)
	if len(got) == 0 {
		return nil, fmt.Errorf("apt-get -s install %s (%s) would install nothing", strings.Join(pkgs, " "), suite)
	}
	return got, nil
}

// ParseSimulation reads the "Inst NAME (VERSION ...)" lines of apt-get -s.
func ParseSimulation(out string) []Package {
	var pkgs []Package
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "Inst" || !strings.HasPrefix(f[2], "(") {
			continue
		}
		pkgs = append(pkgs, Package{Name: f[1], Version: strings.TrimPrefix(f[2], "(")})
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	return pkgs
}
