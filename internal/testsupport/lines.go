package testsupport

import (
	"bufio"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"time"
)

// Lines collects what a stream (a command's stdout or stderr) printed, line
// by line: the one way tests read a command's output, as text or JSON.
type Lines struct {
	mu   sync.Mutex
	cond *sync.Cond
	all  []string
	eof  bool
}

// NewLines reads r until EOF.
func NewLines(r io.Reader) *Lines {
	l := &Lines{}
	l.cond = sync.NewCond(&l.mu)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l.mu.Lock()
			l.all = append(l.all, sc.Text())
			l.cond.Broadcast()
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.eof = true
		l.cond.Broadcast()
		l.mu.Unlock()
	}()
	return l
}

// WaitFor returns the first line for which match is true, waiting up to timeout.
func (l *Lines) WaitFor(timeout time.Duration, match func(string) bool) (string, bool) {
	return l.wait(timeout, func(all []string) (string, bool) {
		for _, s := range all {
			if match(s) {
				return s, true
			}
		}
		return "", false
	})
}

// WaitEOF waits up to timeout for the stream to end.
func (l *Lines) WaitEOF(timeout time.Duration) {
	l.WaitFor(timeout, func(string) bool { return false })
}

// JSON waits until at least n lines are JSON objects that match (n = 0: no
// waiting), and returns all that do, in order.
func (l *Lines) JSON(n int, timeout time.Duration, match func(map[string]any) bool) []map[string]any {
	var out []map[string]any
	l.wait(timeout, func(all []string) (string, bool) {
		out = nil
		for _, s := range all {
			var m map[string]any
			if json.Unmarshal([]byte(s), &m) == nil && match(m) {
				out = append(out, m)
			}
		}
		return "", len(out) >= n
	})
	return out
}

// wait calls check with the lines so far until it is done, the stream ends
// or timeout passes.
func (l *Lines) wait(timeout time.Duration, check func([]string) (string, bool)) (string, bool) {
	deadline := time.Now().Add(timeout)
	wake := time.AfterFunc(timeout, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer wake.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if got, done := check(l.all); done {
			return got, true
		}
		if l.eof || !time.Now().Before(deadline) {
			return "", false
		}
		l.cond.Wait()
	}
}

// Text is everything so far, one line each.
func (l *Lines) Text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

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
