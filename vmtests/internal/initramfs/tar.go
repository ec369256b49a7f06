package initramfs

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// FromTar converts a root filesystem tarball (as mmdebstrap writes it) into
// a cpio archive at dst, keeping modes (setuid included), owners, symbolic
// and hard links. Device nodes are left out: the cpio writer cannot record
// their numbers, and the kernel's own built-in archive already holds
// /dev/console, the only node needed before devtmpfs is mounted.
//
// Hard links become cpio hard links (entries sharing an inode number, the
// data on the first), which the kernel's unpacker links again; the tarball is
// read twice to know, at the first name, how many names a file has.
func FromTar(dst, tarPath string) error {
	links, err := countHardLinks(tarPath)
	if err != nil {
		return err
	}
	in, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst + ".tmp")
	if err != nil {
		return err
	}
	if err := convert(tar.NewReader(in), out, links); err != nil {
		out.Close()
		os.Remove(dst + ".tmp")
		return fmt.Errorf("%s: %w", tarPath, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}

func tarName(n string) string { return clean(strings.TrimPrefix(n, "./")) }

// countHardLinks returns, for each file that hard links point at, its number
// of names (itself plus its links).
func countHardLinks(tarPath string) (map[string]int, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	links := map[string]int{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return links, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tarPath, err)
		}
		if h.Typeflag == tar.TypeLink {
			t := tarName(h.Linkname)
			if links[t] == 0 {
				links[t] = 1
			}
			links[t]++
		}
	}
}

func convert(tr *tar.Reader, w io.Writer, links map[string]int) error {
	cw := cpio.NewWriter(w)
	inode := map[string]int64{} // hard-link targets' inode numbers
	next := int64(1)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := tarName(h.Name)
		if name == "" || name == "." {
			continue // the root directory itself
		}
		ch := &cpio.Header{
			Name:    name,
			Mode:    cpio.FileMode(h.Mode & 0o7777),
			Uid:     h.Uid,
			Guid:    h.Gid,
			ModTime: h.ModTime,
			Inode:   next,
		}
		next++
		var body io.Reader
		switch h.Typeflag {
		case tar.TypeDir:
			ch.Mode |= cpio.TypeDir
			ch.Links = 2
		case tar.TypeReg:
			ch.Mode |= cpio.TypeReg
			ch.Size = h.Size
			ch.Links = 1
			if n := links[name]; n > 1 {
				ch.Links = n
				inode[name] = ch.Inode
			}
			body = tr
		case tar.TypeSymlink:
			ch.Mode = cpio.TypeSymlink | 0o777
			ch.Size = int64(len(h.Linkname))
			body = strings.NewReader(h.Linkname)
		case tar.TypeLink:
			target := tarName(h.Linkname)
			ino, ok := inode[target]
			if !ok {
				return fmt.Errorf("hard link %s to %s, which comes later or is no regular file", name, target)
			}
			// No data: the kernel links this name to the earlier one.
			ch.Mode |= cpio.TypeReg
			ch.Inode = ino
			ch.Links = links[target]
		case tar.TypeFifo:
			ch.Mode |= cpio.TypeFifo
		case tar.TypeChar, tar.TypeBlock:
			continue
		default:
			return fmt.Errorf("%s: tar entry type %q not supported", name, h.Typeflag)
		}
		if err := cw.WriteHeader(ch); err != nil {
			return err
		}
		if body != nil {
			if _, err := io.Copy(cw, body); err != nil {
				return err
			}
		}
	}
	return cw.Close()
}
