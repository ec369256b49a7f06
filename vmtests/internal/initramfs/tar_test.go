package initramfs

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cavaliergopher/cpio"
)

func TestFromTar(t *testing.T) {
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "root.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, h := range []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin"},
		{Name: "./usr/bin/perl", Typeflag: tar.TypeReg, Mode: 0o755, Size: 4},
		{Name: "./usr/bin/su", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 2, Gid: 5},
		{Name: "./usr/bin/perl5", Typeflag: tar.TypeLink, Linkname: "./usr/bin/perl"},
		{Name: "./dev/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "./usr/bin/perl":
			tw.Write([]byte("perl"))
		case "./usr/bin/su":
			tw.Write([]byte("su"))
		}
	}
	tw.Close()
	f.Close()

	out := filepath.Join(dir, "root.cpio")
	if err := FromTar(out, tarPath); err != nil {
		t.Fatal(err)
	}
	cf, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	type entry struct {
		mode  string
		body  string
		links int
		inode int64
		gid   int
	}
	got := map[string]entry{}
	r := cpio.NewReader(cf)
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r)
		if h.Linkname != "" { // the reader takes a symlink's data as its target
			body = []byte(h.Linkname)
		}
		got[h.Name] = entry{h.Mode.String(), string(body), h.Links, h.Inode, h.Guid}
	}
	if _, ok := got["dev/null"]; ok {
		t.Error("device node copied")
	}
	if _, ok := got["."]; ok {
		t.Error("root directory copied")
	}
	if e := got["bin"]; e.mode != "0120777" || e.body != "usr/bin" {
		t.Errorf("symlink: %+v", e)
	}
	if e := got["usr/bin/su"]; e.mode != "0104755" || e.body != "su" || e.gid != 5 {
		t.Errorf("setuid file: %+v", e)
	}
	perl, link := got["usr/bin/perl"], got["usr/bin/perl5"]
	if perl.body != "perl" || perl.links != 2 || link.links != 2 || link.body != "" || perl.inode != link.inode {
		t.Errorf("hard link: %+v and %+v", perl, link)
	}
}
