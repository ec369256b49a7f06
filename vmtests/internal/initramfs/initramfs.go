// Package initramfs writes the guest's root filesystem as an uncompressed
// cpio "newc" archive, which the kernel unpacks into its rootfs at boot.
// Uncompressed on purpose: decompressing in an emulated (TCG) CPU costs more
// than loading a larger file.
package initramfs

import (
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// Archive is the content of an initramfs: directories, files copied from the
// host and small files given inline.
type Archive struct {
	dirs  map[string]bool
	files map[string]file
}

type file struct {
	hostPath string // copied from the host if set
	data     []byte // else this content
	mode     cpio.FileMode
	symlink  bool // data is the link's target
}

// New returns an empty archive.
func New() *Archive {
	return &Archive{dirs: map[string]bool{}, files: map[string]file{}}
}

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// Dir adds a directory and its parents.
func (a *Archive) Dir(p string) {
	for p = clean(p); p != "" && p != "."; p = path.Dir(p) {
		a.dirs[p] = true
	}
}

// Copy adds the host file src as dst with the given permissions.
func (a *Archive) Copy(dst, src string, perm os.FileMode) {
	dst = clean(dst)
	a.Dir(path.Dir(dst))
	a.files[dst] = file{hostPath: src, mode: cpio.FileMode(perm.Perm())}
}

// Bytes adds a file with inline content.
func (a *Archive) Bytes(dst string, data []byte, perm os.FileMode) {
	dst = clean(dst)
	a.Dir(path.Dir(dst))
	a.files[dst] = file{data: data, mode: cpio.FileMode(perm.Perm())}
}

// Symlink adds a symbolic link dst pointing at target.
func (a *Archive) Symlink(dst, target string) {
	dst = clean(dst)
	a.Dir(path.Dir(dst))
	a.files[dst] = file{data: []byte(target), mode: 0o777, symlink: true}
}

// Write writes the archive: directories first (parents before children),
// then files, in a stable order so identical inputs give identical output.
func (a *Archive) Write(w io.Writer) error {
	cw := cpio.NewWriter(w)
	dirs := make([]string, 0, len(a.dirs))
	for d := range a.dirs {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs) // "a" sorts before "a/b"
	for _, d := range dirs {
		mode := cpio.FileMode(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := cw.WriteHeader(&cpio.Header{Name: d, Mode: cpio.TypeDir | mode, Links: 2}); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(a.files))
	for n := range a.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := a.writeFile(cw, n, a.files[n]); err != nil {
			return fmt.Errorf("initramfs %s: %w", n, err)
		}
	}
	return cw.Close()
}

func (a *Archive) writeFile(cw *cpio.Writer, name string, f file) error {
	h := &cpio.Header{Name: name, Mode: cpio.TypeReg | f.mode, Links: 1}
	if f.symlink {
		h.Mode = cpio.TypeSymlink | f.mode
	}
	if f.hostPath == "" {
		h.Size = int64(len(f.data))
		if err := cw.WriteHeader(h); err != nil {
			return err
		}
		_, err := cw.Write(f.data)
		return err
	}
	src, err := os.Open(f.hostPath)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	h.Size = st.Size()
	if err := cw.WriteHeader(h); err != nil {
		return err
	}
	_, err = io.Copy(cw, src)
	return err
}

// WriteFile writes the archive to a file.
func (a *Archive) WriteFile(p string) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if err := a.Write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
