package initramfs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cavaliergopher/cpio"
)

func TestArchiveRoundTrip(t *testing.T) {
	host := filepath.Join(t.TempDir(), "x.test")
	if err := os.WriteFile(host, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := New()
	a.Dir("/proc")
	a.Dir("tmp")
	a.Copy("/tests/x.test", host, 0o755)
	a.Bytes("etc/passwd", []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
	var buf bytes.Buffer
	if err := a.Write(&buf); err != nil {
		t.Fatal(err)
	}

	got := map[string]string{}
	r := cpio.NewReader(&buf)
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r)
		got[h.Name] = h.Mode.String() + " " + string(body)
	}
	want := map[string]string{
		"etc":          "040755 ",
		"proc":         "040755 ",
		"tests":        "040755 ",
		"tmp":          "041777 ",
		"tests/x.test": "0100755 binary",
		"etc/passwd":   "0100644 root:x:0:0::/root:/bin/sh\n",
	}
	if len(got) != len(want) {
		t.Errorf("archive has %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
}
