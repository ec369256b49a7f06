package testsupport

import (
	"bufio"
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/adoptwatch/adoptwatch/internal/waitlog"
)

// Lines collects what a stream (a command's stdout or stderr) printed, line
// by line: the one way tests read a command's output, as text or JSON.
type Lines struct {
	log *waitlog.Log[string]
}

// NewLines reads r until EOF.
func NewLines(r io.Reader) *Lines {
	l := &Lines{log: waitlog.New[string]()}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l.log.Add(sc.Text())
		}
		l.log.End()
	}()
	return l
}

// WaitFor returns the first line for which match is true, waiting up to timeout.
func (l *Lines) WaitFor(timeout time.Duration, match func(string) bool) (string, bool) {
	var got string
	ok := l.log.Wait(timeout, func(all []string, _ bool) bool {
		for _, s := range all {
			if match(s) {
				got = s
				return true
			}
		}
		return false
	})
	return got, ok
}

// WaitEOF waits up to timeout for the stream to end.
func (l *Lines) WaitEOF(timeout time.Duration) {
	l.log.Wait(timeout, func(_ []string, ended bool) bool { return ended })
}

// JSON waits until at least n lines are JSON objects that match (n = 0: no
// waiting), and returns all that do, in order.
func (l *Lines) JSON(n int, timeout time.Duration, match func(map[string]any) bool) []map[string]any {
	var out []map[string]any
	l.log.Wait(timeout, func(all []string, _ bool) bool {
		out = nil
		for _, s := range all {
			var m map[string]any
			if json.Unmarshal([]byte(s), &m) == nil && match(m) {
				out = append(out, m)
			}
		}
		return len(out) >= n
	})
	return out
}

// Text is everything so far, one line each.
func (l *Lines) Text() string { return strings.Join(l.log.Items(), "\n") }

// Decode converts a JSON object read by JSON into a typed value (such as
// output.AdoptionJSON).
func Decode(m map[string]any, v any) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Num reads a JSON number field as an int.
func Num(m map[string]any, key string) int {
	f, _ := m[key].(float64)
	return int(f)
}

// PartyPID reads the pid of a process field ("prev_parent", "new_parent").
func PartyPID(m map[string]any, key string) int {
	p, _ := m[key].(map[string]any)
	return Num(p, "pid")
}
