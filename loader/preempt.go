package loader

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Preemption is the running kernel's preemption model, as far as it can be
// told, and where it was read. It decides how many copies of the fork, exec
// and exit programs are needed (bpf/copies.bpf.h): a kernel that may preempt
// a running BPF program skips the events that come meanwhile on that CPU
// unless another copy takes them.
type Preemption struct {
	// Model is "none", "voluntary", "full", "lazy" or "rt"; "none/voluntary"
	// for a build with no preemption flag whose exact choice is unknown;
	// "" when unknown.
	Model string
	// Source says where Model was read: "debugfs", "uname -v", "the command
	// line", "the kernel log" or "the kernel config".
	Source string
}

// Copies is how many copies of the fork, exec and exit programs the model
// needs: 1 where a BPF program in process context cannot be preempted (none,
// voluntary), 3 otherwise, unknown included.
func (p Preemption) Copies() int {
	switch p.Model {
	case "none", "voluntary", "none/voluntary":
		return 1
	}
	return 3
}

// String says the model and its source in a few words, e.g. "preempt none,
// from the kernel log".
func (p Preemption) String() string {
	if p.Model == "" {
		return "preemption model unknown"
	}
	return fmt.Sprintf("preempt %s, from %s", p.Model, p.Source)
}

// DetectPreemption reads the running kernel's preemption model (once per
// process: the model does not change under a running watcher, and the kernel
// log may take a while to read).
func DetectPreemption() Preemption { return detectOnce() }

var detectOnce = sync.OnceValue(func() Preemption { return detectPreemption(systemPreemptSources()) })

// preemptSources are where the model can be read, each a function that
// returns the text or an error (unreadable, absent).
type preemptSources struct {
	debugfs func() (string, error) // /sys/kernel/debug/sched/preempt
	uname   func() (string, error) // uname -v
	cmdline func() (string, error) // /proc/cmdline
	kmsg    func() (string, error) // the kernel log's lines (only those about Dynamic Preempt are needed)
	config  func() (string, error) // the kernel's build configuration
}

// detectPreemption reads the sources in order of trust: the current mode
// from debugfs; the build's flags in uname -v; for a PREEMPT_DYNAMIC build,
// the boot's choice (preempt= on the command line, else the kernel log's
// "Dynamic Preempt:" line) and then the build's default (its config).
func detectPreemption(src preemptSources) Preemption {
	if s, err := src.debugfs(); err == nil {
		if m := debugfsMode(s); m != "" {
			return Preemption{m, "debugfs"}
		}
	}
	v, err := src.uname()
	if err != nil {
		return Preemption{}
	}
	fromConfig := func() (string, bool) {
		s, err := src.config()
		if err != nil {
			return "", false
		}
		m := configModel(s)
		return m, m != ""
	}
	switch flag := unameFlag(v); flag {
	case "rt", "lazy", "full":
		return Preemption{flag, "uname -v"}
	case "dynamic":
		if s, err := src.cmdline(); err == nil {
			if m := cmdlineMode(s); m != "" {
				return Preemption{m, "the command line"}
			}
		}
		if s, err := src.kmsg(); err == nil {
			if m := kmsgMode(s); m != "" {
				return Preemption{m, "the kernel log"}
			}
		}
		if m, ok := fromConfig(); ok {
			return Preemption{m, "the kernel config"}
		}
		return Preemption{}
	default:
		// No preemption flag: built with PREEMPT_NONE or PREEMPT_VOLUNTARY.
		// The config says which, and is believed if it disagrees.
		if m, ok := fromConfig(); ok {
			return Preemption{m, "the kernel config"}
		}
		return Preemption{"none/voluntary", "uname -v"}
	}
}

// dynamicModes are the modes a PREEMPT_DYNAMIC kernel may run in.
var dynamicModes = map[string]bool{"none": true, "voluntary": true, "full": true, "lazy": true}

// debugfsMode reads /sys/kernel/debug/sched/preempt: the modes, the current
// one in parentheses ("none voluntary (full) lazy").
func debugfsMode(s string) string {
	open := strings.IndexByte(s, '(')
	end := strings.IndexByte(s, ')')
	if open < 0 || end < open {
		return ""
	}
	if m := s[open+1 : end]; dynamicModes[m] {
		return m
	}
	return ""
}

// unameFlag reads the build's preemption flag from uname -v ("#1 SMP
// PREEMPT_DYNAMIC Debian ..."): "rt", "lazy", "dynamic", "full", or "" for
// none (a kernel built without preemption).
func unameFlag(v string) string {
	words := map[string]bool{}
	for _, w := range strings.Fields(v) {
		words[w] = true
	}
	switch {
	case words["PREEMPT_RT"]:
		return "rt"
	case words["PREEMPT_DYNAMIC"]:
		return "dynamic"
	case words["PREEMPT_LAZY"]:
		return "lazy"
	case words["PREEMPT"]:
		return "full"
	}
	return ""
}

// cmdlineMode reads preempt= from the kernel command line (the last one
// counts, as in the kernel); a value the kernel would refuse is ignored, and
// so is everything after "--" (init's arguments, not the kernel's).
func cmdlineMode(s string) string {
	mode := ""
	for _, f := range strings.Fields(s) {
		if f == "--" {
			break
		}
		if v, ok := strings.CutPrefix(f, "preempt="); ok {
			mode = v
		}
	}
	if dynamicModes[mode] {
		return mode
	}
	return ""
}

// kmsgMode finds the kernel log's last "Dynamic Preempt: MODE" line (the
// kernel logs one at boot and one at each change of mode).
func kmsgMode(log string) string {
	mode := ""
	for _, line := range strings.Split(log, "\n") {
		_, rest, ok := strings.Cut(line, "Dynamic Preempt: ")
		if !ok {
			continue
		}
		if f := strings.Fields(rest); len(f) > 0 && dynamicModes[f[0]] {
			mode = f[0]
		}
	}
	return mode
}

// configModel reads the preemption choice from a kernel config. For a
// PREEMPT_DYNAMIC build it is the mode the kernel boots in by default.
func configModel(config string) string {
	set := map[string]bool{}
	for _, line := range strings.Split(config, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && v == "y" {
			set[k] = true
		}
	}
	switch {
	case set["CONFIG_PREEMPT_RT"]:
		return "rt"
	case set["CONFIG_PREEMPT_LAZY"]:
		return "lazy"
	case set["CONFIG_PREEMPT"]:
		return "full"
	case set["CONFIG_PREEMPT_VOLUNTARY"]:
		return "voluntary"
	case set["CONFIG_PREEMPT_NONE"]:
		return "none"
	}
	return ""
}

// systemPreemptSources reads the running system.
func systemPreemptSources() preemptSources {
	var uts unix.Utsname
	utsErr := unix.Uname(&uts)
	return preemptSources{
		debugfs: func() (string, error) { return readText("/sys/kernel/debug/sched/preempt") },
		uname: func() (string, error) {
			if utsErr != nil {
				return "", utsErr
			}
			return unix.ByteSliceToString(uts.Version[:]), nil
		},
		cmdline: func() (string, error) { return readText("/proc/cmdline") },
		kmsg:    readKmsg,
		config: func() (string, error) {
			if utsErr == nil {
				if s, err := readText("/boot/config-" + unix.ByteSliceToString(uts.Release[:])); err == nil {
					return s, nil
				}
			}
			return readGzip("/proc/config.gz")
		},
	}
}

func readText(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

func readGzip(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	z, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(z, 16<<20))
	return string(b), err
}

// readKmsg reads the kernel log records still in its buffer from /dev/kmsg
// without blocking (root only), keeping those about Dynamic Preempt.
func readKmsg() (string, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	var out strings.Builder
	buf := make([]byte, 8192) // one record per read; the kernel's limit is under 8 KiB
	for range 1 << 20 {       // bounded: the buffer holds far fewer records
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return out.String(), nil // the end of the log
		case errors.Is(err, unix.EPIPE):
			continue // records overwritten while reading: go on with the next
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return out.String(), err
		case n == 0:
			return out.String(), nil
		}
		if rec := buf[:n]; bytes.Contains(rec, []byte("Dynamic Preempt")) {
			out.Write(rec)
			if rec[len(rec)-1] != '\n' {
				out.WriteByte('\n')
			}
		}
	}
	return out.String(), nil
}
