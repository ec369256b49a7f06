package debian

import (
	"fmt"
	"path"
	"strings"
)

// MetaPackage is the flavour's metapackage; it depends on the current
// versioned image package of its suite.
const MetaPackage = "linux-image-cloud-amd64"

// Target is one kernel of the default matrix: the suites to look in, in order
// of preference, and the version prefix the kernel must have.
type Target struct {
	Label  string
	Suites []string
	Prefix string
}

// DefaultTargets is the matrix of kernels the suite must pass on.
var DefaultTargets = []Target{
	{Label: "5.10", Suites: []string{"bullseye"}, Prefix: "5.10."},
	{Label: "6.1", Suites: []string{"bookworm"}, Prefix: "6.1."},
	{Label: "6.12", Suites: []string{"trixie", "bookworm-backports"}, Prefix: "6.12."},
	{Label: "7.x", Suites: []string{"sid"}, Prefix: "7."},
}

// Suites lists every suite the targets may need, each once.
func Suites(targets []Target) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range targets {
		for _, s := range t.Suites {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// MadisonRow is one line of `apt-cache madison`.
type MadisonRow struct {
	Package, Version, Suite string
}

// ParseMadison parses lines like
// "pkg | 6.1.176-1 | http://mirror/debian bookworm/main amd64 Packages".
// Source-package lines ("Sources") are skipped.
func ParseMadison(out string) []MadisonRow {
	var rows []MadisonRow
	for _, line := range strings.Split(out, "\n") {
		parts := strings.Split(line, "|")
		if len(parts) != 3 {
			continue
		}
		f := strings.Fields(parts[2])
		if len(f) < 2 || f[len(f)-1] != "Packages" {
			continue
		}
		suite, _, _ := strings.Cut(f[1], "/")
		rows = append(rows, MadisonRow{
			Package: strings.TrimSpace(parts[0]),
			Version: strings.TrimSpace(parts[1]),
			Suite:   suite,
		})
	}
	return rows
}

// Choose picks the newest metapackage version for t: from the first of its
// suites whose newest version has the wanted prefix. The reason explains a
// failure suite by suite.
func Choose(rows []MadisonRow, t Target) (MadisonRow, error) {
	var why []string
	for _, suite := range t.Suites {
		var best *MadisonRow
		for i := range rows {
			r := &rows[i]
			if r.Suite != suite {
				continue
			}
			if best == nil || CompareVersions(r.Version, best.Version) > 0 {
				best = r
			}
		}
		switch {
		case best == nil:
			why = append(why, fmt.Sprintf("%s has no %s", suite, MetaPackage))
		case !strings.HasPrefix(best.Version, t.Prefix):
			why = append(why, fmt.Sprintf("%s has %s, not %s*", suite, best.Version, t.Prefix))
		default:
			return *best, nil
		}
	}
	return MadisonRow{}, fmt.Errorf("%s", strings.Join(why, "; "))
}

// DependNames returns the package names of a Depends field, taking the first
// alternative of each "a | b" group and dropping version constraints.
func DependNames(field string) []string {
	var out []string
	for _, group := range strings.Split(field, ",") {
		alt, _, _ := strings.Cut(group, "|")
		name, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
		name, _, _ = strings.Cut(name, "(")
		name, _, _ = strings.Cut(name, ":") // multiarch qualifier
		if name != "" {
			out = append(out, name)
		}
	}
	return out
}

// ImagePackage finds the versioned image package the metapackage depends on
// (linux-image-<abi>-cloud-amd64).
func ImagePackage(metaDepends string) (string, bool) {
	for _, n := range DependNames(metaDepends) {
		if n != MetaPackage && strings.HasPrefix(n, "linux-image-") && strings.HasSuffix(n, "-cloud-amd64") {
			return n, true
		}
	}
	return "", false
}

// BinaryPackage finds the package that really ships the kernel when the image
// package is only a wrapper (as in sid, where linux-image-* depends on
// linux-binary-*, which holds usr/lib/modules/<ver>/vmlinuz).
func BinaryPackage(imageDepends string) (string, bool) {
	for _, n := range DependNames(imageDepends) {
		if strings.HasPrefix(n, "linux-binary-") {
			return n, true
		}
	}
	return "", false
}

// IsVmlinuz reports whether a path inside a kernel package is the kernel
// image: boot/vmlinuz-<ver> in the classic layout, or
// usr/lib/modules/<ver>/vmlinuz in the newer one.
func IsVmlinuz(name string) bool {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	if strings.HasPrefix(name, "boot/vmlinuz-") && !strings.Contains(name[len("boot/"):], "/") {
		return true
	}
	for _, dir := range []string{"usr/lib/modules/", "lib/modules/"} {
		if rest, ok := strings.CutPrefix(name, dir); ok {
			ver, file, ok := strings.Cut(rest, "/")
			if ok && ver != "" && file == "vmlinuz" {
				return true
			}
		}
	}
	return false
}
