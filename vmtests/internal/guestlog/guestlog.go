// Package guestlog is the protocol between the guest's /init and the host:
// the marker lines /init writes on the serial console around each test
// binary, and the parsing of that console log (markers plus `go test -v`
// output) into results.
package guestlog

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// TestArgs are the go test flags a guest passes to each test binary, from
// the VMTEST_* parameters the host put on the kernel command line (param
// returns "" for one that is absent).
func TestArgs(timeout string, param func(name string) string) []string {
	// -test.count=1 keeps go test from caching; more repeats a flaky test.
	count := "1"
	if n := param("VMTEST_COUNT"); n != "" {
		count = n
	}
	args := []string{"-test.v", "-test.timeout=" + timeout, "-test.count=" + count}
	if run := param("VMTEST_RUN"); run != "" {
		args = append(args, "-test.run="+run)
	}
	if param("VMTEST_SHORT") == "1" {
		// Emulated CPUs are slow: tests scale their loads down in short mode.
		args = append(args, "-test.short")
	}
	return args
}

// Prefix starts every marker line. It is unlike anything go test prints.
const Prefix = "@@vmtest "

// Marker lines, formatted by the guest and parsed by the host.
func KernelLine(release string) string { return Prefix + "kernel " + release }
func BeginLine(binary string) string   { return Prefix + "begin " + binary }
func EndLine(binary string, exit int, seconds float64) string {
	return fmt.Sprintf("%send %s exit=%d seconds=%.2f", Prefix, binary, exit, seconds)
}
func NoteLine(text string) string { return Prefix + "note " + text }
func SummaryLine(s Summary) string {
	b, _ := json.Marshal(s)
	return Prefix + "summary " + string(b)
}

// Summary is the guest's own machine-readable account, printed last.
type Summary struct {
	Kernel   string       `json:"kernel"`
	Binaries []BinaryExit `json:"binaries"`
	Orphans  int          `json:"orphans_reaped"`
}

// BinaryExit is how one test binary ended in the guest.
type BinaryExit struct {
	Name     string  `json:"name"`
	Exit     int     `json:"exit"` // -1: killed by the guest's timeout
	Seconds  float64 `json:"seconds"`
	TimedOut bool    `json:"timed_out,omitempty"`
}

// Binary is the host's view of one test binary's run.
type Binary struct {
	Name    string
	Exit    int  // exit code from the end marker
	Ended   bool // an end marker was seen
	Seconds float64
	Counts  Counts
	Tests   []Test // every --- PASS/FAIL/SKIP line, in order
	LastRun string // the last "=== RUN" test name: what a hung binary was doing
	Panic   string // the first "panic: " line (go test's own timeout panics too)
}

// Run is everything parsed from one guest's console log.
type Run struct {
	Kernel   string // uname release from the guest
	Binaries []*Binary
	Notes    []string
	Summary  *Summary // nil if the guest never printed it
	Panic    string   // first kernel panic line, if any
}

// Counts are the totals of --- PASS / FAIL / SKIP lines.
type Counts struct{ Pass, Fail, Skip int }

func (c *Counts) Add(o Counts) { c.Pass += o.Pass; c.Fail += o.Fail; c.Skip += o.Skip }

// Test is one result line of `go test -v`.
type Test struct {
	Name   string // full name, subtests joined by "/"
	Result string // PASS, FAIL or SKIP
}

// resultRe matches go test -v result lines; subtests are indented. A kernel
// message may have been written in front of the line on a shared console, so
// the match is not anchored at the start of the line.
var resultRe = regexp.MustCompile(`--- (PASS|FAIL|SKIP): (\S+)`)

// ParseTestLine reports the result line of `go test -v`, if line is one.
func ParseTestLine(line string) (Test, bool) {
	m := resultRe.FindStringSubmatch(line)
	if m == nil {
		return Test{}, false
	}
	return Test{Name: m[2], Result: m[1]}, true
}

// Parse reads a whole console log.
func Parse(log string) *Run {
	r := &Run{}
	var cur *Binary
	for _, line := range strings.Split(log, "\n") {
		line = strings.TrimRight(line, "\r")
		if i := strings.Index(line, Prefix); i >= 0 {
			// Markers are written whole by /init, but a kernel message can
			// precede them on the same console line.
			cur = r.marker(line[i+len(Prefix):], cur)
			continue
		}
		if r.Panic == "" && strings.Contains(line, "Kernel panic") {
			r.Panic = strings.TrimSpace(line)
		}
		if cur == nil {
			continue
		}
		if name, ok := strings.CutPrefix(line, "=== RUN   "); ok {
			cur.LastRun = strings.TrimSpace(name)
		}
		if cur.Panic == "" && strings.HasPrefix(line, "panic: ") {
			cur.Panic = line
		}
		if t, ok := ParseTestLine(line); ok {
			cur.Tests = append(cur.Tests, t)
			switch t.Result {
			case "PASS":
				cur.Counts.Pass++
			case "FAIL":
				cur.Counts.Fail++
			case "SKIP":
				cur.Counts.Skip++
			}
		}
	}
	return r
}

func (r *Run) marker(m string, cur *Binary) *Binary {
	verb, rest, _ := strings.Cut(m, " ")
	switch verb {
	case "kernel":
		r.Kernel = strings.TrimSpace(rest)
	case "note":
		r.Notes = append(r.Notes, rest)
	case "begin":
		b := &Binary{Name: strings.TrimSpace(rest)}
		r.Binaries = append(r.Binaries, b)
		return b
	case "end":
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil
		}
		b := cur
		if b == nil || b.Name != f[0] {
			b = &Binary{Name: f[0]}
			r.Binaries = append(r.Binaries, b)
		}
		b.Ended = true
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "exit":
				b.Exit, _ = strconv.Atoi(v)
			case "seconds":
				b.Seconds, _ = strconv.ParseFloat(v, 64)
			}
		}
		return nil
	case "summary":
		var s Summary
		if json.Unmarshal([]byte(rest), &s) == nil {
			r.Summary = &s
		}
	}
	return cur
}

// Counts totals every binary's results.
func (r *Run) Counts() Counts {
	var c Counts
	for _, b := range r.Binaries {
		c.Add(b.Counts)
	}
	return c
}

// Failed names the binary's failed tests (not their failed subtests, which
// the parent's name already covers), for a summary that says what broke.
func (b *Binary) Failed() []string {
	var names []string
	for _, t := range b.Tests {
		if t.Result == "FAIL" && !strings.Contains(t.Name, "/") {
			names = append(names, t.Name)
		}
	}
	return names
}

// OnlyTestsFailed says that the run went to its end and its only problems
// are failed tests (each failing binary printed --- FAIL lines, none
// panicked or was cut short).
func (r *Run) OnlyTestsFailed() bool {
	if r.Panic != "" || r.Summary == nil {
		return false
	}
	for _, b := range r.Binaries {
		if !b.Ended || b.Panic != "" || (b.Exit != 0 && b.Counts.Fail == 0) {
			return false
		}
	}
	return true
}

// Problems lists why the run is not a success; empty means it passed.
// A binary that exits non-zero without a FAIL line (a panic, a timeout,
// a crash in TestMain) is a problem of its own.
func (r *Run) Problems() []string {
	var p []string
	if r.Panic != "" {
		p = append(p, r.Panic)
	}
	for _, b := range r.Binaries {
		switch {
		case !b.Ended:
			p = append(p, fmt.Sprintf("%s: never finished (last started: %s)", b.Name, b.LastRun))
		case b.Exit != 0 && b.Panic != "":
			p = append(p, fmt.Sprintf("%s: exit %d after %q (last started: %s)", b.Name, b.Exit, b.Panic, b.LastRun))
		case b.Exit != 0 && b.Counts.Fail == 0:
			p = append(p, fmt.Sprintf("%s: exit %d without a --- FAIL line (last started: %s)", b.Name, b.Exit, b.LastRun))
		case b.Exit != 0:
			p = append(p, fmt.Sprintf("%s: %d failed (%s)", b.Name, b.Counts.Fail, strings.Join(b.Failed(), ", ")))
		case b.Counts.Fail != 0:
			p = append(p, fmt.Sprintf("%s: %d --- FAIL lines but exit 0", b.Name, b.Counts.Fail))
		}
	}
	if r.Summary == nil {
		p = append(p, "the guest printed no summary")
	}
	return p
}

// Hook subtests follow the project convention ".../hook=<name>".
var hookRe = regexp.MustCompile(`(?:^|/)hook=([^/]+)`)

// Hooks describes which attach strategies were exercised: every hook with at
// least one PASSing subtest, plus "(exact: skipped)" when an exact-hook
// subtest was skipped (the kernel offers no exact adoption hook) and none
// passed. Empty when no test follows the convention.
func (r *Run) Hooks() string {
	pass := map[string]bool{}
	skip := map[string]bool{}
	for _, b := range r.Binaries {
		for _, t := range b.Tests {
			m := hookRe.FindStringSubmatch(t.Name)
			if m == nil {
				continue
			}
			switch t.Result {
			case "PASS":
				pass[m[1]] = true
			case "SKIP":
				skip[m[1]] = true
			}
		}
	}
	var used []string
	for h := range pass {
		used = append(used, h)
	}
	sort.Strings(used)
	s := strings.Join(used, ",")
	var skipped []string
	for h := range skip {
		if !pass[h] {
			skipped = append(skipped, h)
		}
	}
	sort.Strings(skipped)
	if len(skipped) > 0 {
		note := "(" + strings.Join(skipped, ",") + ": skipped)"
		if s == "" {
			return note
		}
		s += " " + note
	}
	return s
}
