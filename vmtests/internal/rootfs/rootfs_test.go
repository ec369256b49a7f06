package rootfs

import (
	"reflect"
	"strings"
	"testing"

	"github.com/adoptwatch/adoptwatch/vmtests/internal/debian"
)

func TestParseStatus(t *testing.T) {
	status := `Package: systemd
Status: install ok installed
Version: 252.39-1~deb12u1
Description: system and service manager
 systemd is a system and service manager

Package: removed
Status: deinstall ok config-files
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u13
`
	got, err := ParseStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	want := []debian.Package{{Name: "libc6", Version: "2.36-9+deb12u13"}, {Name: "systemd", Version: "252.39-1~deb12u1"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestKeyFollowsVersionsAndRecipe(t *testing.T) {
	args := mmdebstrapArgs("/k.gpg")
	a := []debian.Package{{Name: "systemd", Version: "252.1"}}
	b := []debian.Package{{Name: "systemd", Version: "252.2"}}
	if Key(args, a) != Key(args, a) {
		t.Error("key not stable")
	}
	if Key(args, a) == Key(args, b) {
		t.Error("a new systemd version keeps the key")
	}
	if Key(args, a) == Key(mmdebstrapArgs("/other.gpg"), a) {
		t.Error("a new recipe keeps the key")
	}
}
