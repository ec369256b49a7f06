// Package debian finds, downloads and unpacks Debian cloud kernels through a
// private apt configuration that reuses the mirror and keyring the machine's
// own apt already trusts, so the system's apt setup is never touched.
package debian

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultKeyring is where debian-archive-keyring installs the archive keys;
// used when the system source names no Signed-By.
const DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// Source is one "deb" entry of an apt configuration.
type Source struct {
	URI      string
	Suites   []string
	SignedBy string // keyring path, empty if the entry names none
	File     string // where it was read, for error messages
}

// ReadSystemSources reads the deb entries apt itself would use: the one-line
// format in sources.list and *.list, and deb822 in *.sources. Files with other
// suffixes (e.g. "*.disabled") are ignored, as apt ignores them.
func ReadSystemSources(etcApt string) ([]Source, error) {
	var files []string
	if _, err := os.Stat(filepath.Join(etcApt, "sources.list")); err == nil {
		files = append(files, filepath.Join(etcApt, "sources.list"))
	}
	parts, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", "*"))
	sort.Strings(parts)
	files = append(files, parts...)

	var out []Source
	for _, f := range files {
		var parse func(io.Reader, string) ([]Source, error)
		switch {
		case strings.HasSuffix(f, ".list") || filepath.Base(f) == "sources.list":
			parse = ParseOneLine
		case strings.HasSuffix(f, ".sources"):
			parse = ParseDeb822
		default:
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		srcs, err := parse(fh, f)
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, srcs...)
	}
	return out, nil
}

// ParseOneLine parses the classic "deb [opts] URI suite comp..." format.
func ParseOneLine(r io.Reader, name string) ([]Source, error) {
	var out []Source
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "deb" {
			continue // deb-src, blank or malformed
		}
		fields = fields[1:]
		src := Source{File: name}
		if strings.HasPrefix(fields[0], "[") {
			// Options run until the field that ends with "]".
			var opts []string
			for len(fields) > 0 {
				f := fields[0]
				fields = fields[1:]
				opts = append(opts, strings.Trim(f, "[]"))
				if strings.HasSuffix(f, "]") {
					break
				}
			}
			for _, o := range opts {
				if k, v, ok := strings.Cut(o, "="); ok && strings.EqualFold(k, "signed-by") {
					src.SignedBy = v
				}
			}
		}
		if len(fields) < 2 {
			continue
		}
		src.URI = fields[0]
		src.Suites = []string{fields[1]}
		out = append(out, src)
	}
	return out, sc.Err()
}

// ParseDeb822 parses the stanza format of *.sources files.
func ParseDeb822(r io.Reader, name string) ([]Source, error) {
	var out []Source
	flush := func(st map[string]string) {
		if len(st) == 0 {
			return
		}
		if !hasWord(st["types"], "deb") || strings.EqualFold(st["enabled"], "no") {
			return
		}
		for _, uri := range strings.Fields(st["uris"]) {
			out = append(out, Source{
				URI:      uri,
				Suites:   strings.Fields(st["suites"]),
				SignedBy: strings.TrimSpace(st["signed-by"]),
				File:     name,
			})
		}
	}
	st := map[string]string{}
	last := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.TrimSpace(line) == "":
			flush(st)
			st, last = map[string]string{}, ""
		case line[0] == ' ' || line[0] == '\t':
			// Continuation line (e.g. an inline keyring); keep appending.
			if last != "" {
				st[last] += "\n" + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			st[last] = strings.TrimSpace(v)
		}
	}
	flush(st)
	return out, sc.Err()
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// Mirror is the archive URL and keyring to use for the private configuration.
type Mirror struct {
	URI     string
	Keyring string
}

// PickMirror chooses the system source that serves the main Debian archive:
// preferably one whose URI path ends in "/debian", else one signed with the
// Debian archive keyring; in both cases with a plain release suite (no
// "-updates" or "-security" suffix) and not a security archive. Its keyring
// (or the default Debian archive keyring) is reused for the other suites.
func PickMirror(srcs []Source) (Mirror, error) {
	ok := func(s Source) bool {
		if strings.Contains(s.URI, "security") {
			return false
		}
		for _, suite := range s.Suites {
			if !strings.Contains(suite, "-") && !strings.Contains(suite, "/") {
				return true
			}
		}
		return false
	}
	pick := func(s Source) Mirror {
		key := s.SignedBy
		if key == "" || !strings.HasPrefix(key, "/") {
			// No keyring file named (or an inline key): use the archive keyring.
			key = DefaultKeyring
		}
		return Mirror{URI: strings.TrimSuffix(s.URI, "/"), Keyring: key}
	}
	for _, s := range srcs {
		if ok(s) && strings.HasSuffix(strings.TrimSuffix(s.URI, "/"), "/debian") {
			return pick(s), nil
		}
	}
	for _, s := range srcs {
		if ok(s) && strings.Contains(s.SignedBy, "debian-archive") {
			return pick(s), nil
		}
	}
	return Mirror{}, fmt.Errorf("no Debian archive source with a release suite found in the system apt configuration")
}
