package debian

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestExtractVmlinuz builds small packages in both layouts with dpkg-deb and
// takes the kernel image back out.
func TestExtractVmlinuz(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	for _, inPkg := range []string{"boot/vmlinuz-6.1.0-50-cloud-amd64", "usr/lib/modules/7.2.13+deb14-cloud-amd64/vmlinuz"} {
		dir := t.TempDir()
		root := filepath.Join(dir, "root")
		for p, body := range map[string]string{
			"DEBIAN/control":            "Package: linux-test\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: test\n",
			"boot/System.map-6.1.0-50":  "not the kernel",
			inPkg:                       "the kernel",
			"usr/share/doc/x/changelog": "doc",
		} {
			p = filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		deb := filepath.Join(dir, "x.deb")
		if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", root, deb).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb --build: %v\n%s", err, out)
		}
		dest := filepath.Join(dir, "vmlinuz")
		if err := ExtractVmlinuz(context.Background(), deb, dest); err != nil {
			t.Fatalf("%s: %v", inPkg, err)
		}
		if got, _ := os.ReadFile(dest); string(got) != "the kernel" {
			t.Errorf("%s: extracted %q", inPkg, got)
		}
	}
}
