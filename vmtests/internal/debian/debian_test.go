package debian

import (
	"reflect"
	"strings"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int // sign
	}{
		{"6.1.176-1", "6.1.176-1", 0},
		{"6.1.176-1", "6.1.99-1", 1},
		{"6.12.95-1~bpo12+1", "6.12.95-1", -1},
		{"6.12.117-1", "6.12.95-1~bpo12+1", 1},
		{"7.2.13-1", "6.12.117-1", 1},
		{"1:1.0-1", "2.0-1", 1},
		{"1.0~rc1-1", "1.0-1", -1},
		{"1.0a-1", "1.0-1", 1},
		{"1.0+b1", "1.0", 1},
		{"5.10.223-1", "5.10.223-1+deb11u1", -1},
		{"1.01", "1.1", 0},
		{"2.30", "2.4", 1},
	} {
		got := CompareVersions(c.a, c.b)
		if sign(got) != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want sign %d", c.a, c.b, got, c.want)
		}
		if back := CompareVersions(c.b, c.a); sign(back) != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want sign %d", c.b, c.a, back, -c.want)
		}
	}
}

func sign(i int) int {
	switch {
	case i < 0:
		return -1
	case i > 0:
		return 1
	}
	return 0
}

const madison = `linux-image-cloud-amd64 |   7.2.13-1 | http://mirror.example/debian sid/main amd64 Packages
linux-image-cloud-amd64 | 6.12.117-1 | http://mirror.example/debian trixie/main amd64 Packages
linux-image-cloud-amd64 | 6.12.95-1~bpo12+1 | http://mirror.example/debian bookworm-backports/main amd64 Packages
linux-image-cloud-amd64 |  6.1.176-1 | http://mirror.example/debian bookworm/main amd64 Packages
linux-image-cloud-amd64 |  6.1.170-1 | http://mirror.example/debian bookworm/main amd64 Packages
linux-image-cloud-amd64 | 5.10.223-1 | http://mirror.example/debian bullseye/main amd64 Packages
linux-signed-amd64 | 6.1.176+1 | http://mirror.example/debian bookworm/main Sources
`

func TestChooseDefaultMatrix(t *testing.T) {
	rows := ParseMadison(madison)
	if len(rows) != 6 {
		t.Fatalf("parsed %d rows, want 6: %+v", len(rows), rows)
	}
	want := map[string]string{
		"5.10": "bullseye 5.10.223-1",
		"6.1":  "bookworm 6.1.176-1", // the newest of two in one suite
		"6.12": "trixie 6.12.117-1",  // trixie preferred over backports
		"7.x":  "sid 7.2.13-1",
	}
	for _, tg := range DefaultTargets {
		r, err := Choose(rows, tg)
		if err != nil {
			t.Errorf("%s: %v", tg.Label, err)
			continue
		}
		if got := r.Suite + " " + r.Version; got != want[tg.Label] {
			t.Errorf("%s: got %s, want %s", tg.Label, got, want[tg.Label])
		}
	}
}

func TestChooseFallbackAndReasons(t *testing.T) {
	// trixie moved on to 6.13: the 6.12 target falls back to backports.
	rows := ParseMadison(strings.ReplaceAll(madison, "6.12.117-1", "6.13.2-1"))
	r, err := Choose(rows, DefaultTargets[2])
	if err != nil || r.Suite != "bookworm-backports" {
		t.Fatalf("got %+v, %v; want bookworm-backports", r, err)
	}
	// Nothing fits: the error names every suite tried.
	_, err = Choose(rows, Target{Label: "9", Suites: []string{"forky", "sid"}, Prefix: "9."})
	if err == nil || !strings.Contains(err.Error(), "forky has no") || !strings.Contains(err.Error(), "sid has 7.2.13-1, not 9.*") {
		t.Fatalf("error = %v", err)
	}
}

func TestImageAndBinaryPackages(t *testing.T) {
	img, ok := ImagePackage("linux-base-cloud-amd64 (= 7.2.13-1), linux-image-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)")
	if !ok || img != "linux-image-7.2.13+deb14-cloud-amd64" {
		t.Errorf("ImagePackage = %q, %v", img, ok)
	}
	img, ok = ImagePackage("linux-image-5.10.0-32-cloud-amd64 (= 5.10.223-1)")
	if !ok || img != "linux-image-5.10.0-32-cloud-amd64" {
		t.Errorf("ImagePackage = %q, %v", img, ok)
	}
	bin, ok := BinaryPackage("dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), linux-modules-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)")
	if !ok || bin != "linux-binary-7.2.13+deb14-cloud-amd64" {
		t.Errorf("BinaryPackage = %q, %v", bin, ok)
	}
	if _, ok := BinaryPackage("kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool"); ok {
		t.Errorf("BinaryPackage found one in a classic image package")
	}
}

func TestIsVmlinuz(t *testing.T) {
	for name, want := range map[string]bool{
		"./boot/vmlinuz-6.1.0-50-cloud-amd64":                    true,
		"./usr/lib/modules/7.2.13+deb14-cloud-amd64/vmlinuz":     true,
		"lib/modules/6.12.117+deb13-cloud-amd64/vmlinuz":         true,
		"./boot/System.map-6.1.0-50-cloud-amd64":                 false,
		"./boot/vmlinuz-6.1/extra":                               false,
		"./usr/lib/modules/7.2.13+deb14-cloud-amd64/kernel/x.ko": false,
		"./usr/share/doc/vmlinuz":                                false,
	} {
		if got := IsVmlinuz(name); got != want {
			t.Errorf("IsVmlinuz(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestSystemSourcesDeb822(t *testing.T) {
	const f = `Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
`
	srcs, err := ParseDeb822(strings.NewReader(f), "debian.sources")
	if err != nil || len(srcs) != 2 {
		t.Fatalf("got %+v, %v", srcs, err)
	}
	m, err := PickMirror(srcs)
	if err != nil || m.URI != "http://mirror.example/debian" || m.Keyring != DefaultKeyring {
		t.Fatalf("PickMirror = %+v, %v", m, err)
	}
}

func TestSystemSourcesOneLine(t *testing.T) {
	const f = `# a comment
deb https://packages.example/apt cloud-sdk main
deb [arch=amd64 signed-by=/etc/apt/keyrings/x.gpg] http://mirror.example/debian/ bullseye main contrib
deb http://security.example/debian-security bullseye-security main
`
	srcs, err := ParseOneLine(strings.NewReader(f), "sources.list")
	if err != nil || len(srcs) != 3 {
		t.Fatalf("got %+v, %v", srcs, err)
	}
	if srcs[1].SignedBy != "/etc/apt/keyrings/x.gpg" || srcs[1].Suites[0] != "bullseye" {
		t.Errorf("options not parsed: %+v", srcs[1])
	}
	m, err := PickMirror(srcs)
	if err != nil || m.URI != "http://mirror.example/debian" || m.Keyring != "/etc/apt/keyrings/x.gpg" {
		t.Fatalf("PickMirror = %+v, %v", m, err)
	}
	if _, err := PickMirror(srcs[:1]); err == nil {
		t.Errorf("PickMirror accepted a non-Debian source")
	}
}

func TestSourcesList(t *testing.T) {
	got := SourcesList(Mirror{URI: "http://m/debian", Keyring: "/k.gpg"}, Suites(DefaultTargets))
	for _, s := range []string{"bullseye", "bookworm", "trixie", "bookworm-backports", "sid"} {
		if !strings.Contains(got, "deb [signed-by=/k.gpg] http://m/debian "+s+" main\n") {
			t.Errorf("missing %s in\n%s", s, got)
		}
	}
}

func TestParseSimulation(t *testing.T) {
	out := `NOTE: This is only a simulation!
Inst systemd (257.13-1~deb13u1 Debian:13.8/stable [amd64])
Inst libc6 (2.41-12+deb13u5 Debian:13.8/stable [amd64]) []
Conf libc6 (2.41-12+deb13u5 Debian:13.8/stable [amd64])
Inst broken
`
	got := ParseSimulation(out)
	want := []Package{{"libc6", "2.41-12+deb13u5"}, {"systemd", "257.13-1~deb13u1"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
