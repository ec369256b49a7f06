package output

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
)

// Printer writes the program's output: data (adoptions, task events) on out
// as text or JSON lines, diagnostics on errOut. It serialises the lines of the
// record loop, the loss reporter and the sinks. It is the first sink
// (Adoption, Close).
//
// With Buffer, data lines are gathered and written together, each at most a
// bounded delay after it was printed: a write(2) per line costs more than the
// line (issue 12), and nothing waits on stdout that cannot wait milliseconds
// (reapers are notified by their own sinks, at once).
type Printer struct {
	mu     sync.Mutex
	out    io.Writer
	errOut io.Writer
	json   bool

	maxDelay time.Duration // 0: every line is written at once
	pending  []byte        // data lines not yet written
	since    time.Time     // when the oldest pending line was printed
	timer    *time.Timer   // writes pending lines that no later line flushes
}

// NewPrinter prints text, or JSON lines if json is set, to out; diagnostics to errOut.
func NewPrinter(out, errOut io.Writer, json bool) *Printer {
	return &Printer{out: out, errOut: errOut, json: json}
}

// MaxOutputDelay is the bound the watcher gives Buffer: a data line reaches
// stdout at most this long after its record was read.
const MaxOutputDelay = 2 * time.Millisecond

// maxPending bounds the bytes gathered before a write.
const maxPending = 64 << 10

// Buffer makes data lines wait up to maxDelay to be written together. Call it
// before printing; Close writes what is left.
func (p *Printer) Buffer(maxDelay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxDelay = maxDelay
	if p.timer == nil {
		p.timer = time.AfterFunc(time.Hour, p.Flush)
		p.timer.Stop()
	}
}

// JSON says whether the data stream is JSON lines.
func (p *Printer) JSON() bool { return p.json }

// Adoption prints one adoption, building only the form it prints.
func (p *Printer) Adoption(a *Adoption) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.add(a.Line())
	} else {
		p.addLine(a.Text())
	}
}

// Task prints one fork, exec or exit.
func (p *Printer) Task(ev *events.Task) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.add(TaskLine(ev))
	} else {
		p.addLine(TaskText(ev))
	}
}

// Flush writes the pending data lines now.
func (p *Printer) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flush()
}

// Close writes the pending data lines; the streams are the caller's.
func (p *Printer) Close() error {
	p.Flush()
	return nil
}

func (p *Printer) addLine(text string) {
	p.pending = append(append(p.pending, text...), '\n')
	p.added()
}

func (p *Printer) add(line []byte) {
	p.pending = append(p.pending, line...)
	p.added()
}

// added writes the pending lines if the oldest has waited long enough (or
// there is no waiting), else makes sure the timer will.
func (p *Printer) added() {
	if p.maxDelay <= 0 || len(p.pending) >= maxPending {
		p.flush()
		return
	}
	now := time.Now()
	if p.since.IsZero() {
		p.since = now
		p.timer.Reset(p.maxDelay)
		return
	}
	if now.Sub(p.since) >= p.maxDelay {
		p.flush()
	}
}

func (p *Printer) flush() {
	if len(p.pending) == 0 {
		return
	}
	p.out.Write(p.pending)
	p.pending = p.pending[:0]
	if !p.since.IsZero() {
		p.since = time.Time{}
		p.timer.Stop()
	}
}

// Warn goes to stderr in text mode (it is not data) and to the stream in JSON
// mode, so consumers of the JSON see it in order.
func (p *Printer) Warn(jsonLine []byte, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flush()
	if p.json {
		p.out.Write(jsonLine)
	} else {
		fmt.Fprintf(p.errOut, "adoptwatch: warning: "+format+"\n", args...)
	}
}

// Event reports something a consumer must not miss: on stderr always, and in
// the JSON stream as well in JSON mode.
func (p *Printer) Event(jsonLine []byte, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flush()
	fmt.Fprintf(p.errOut, "adoptwatch: "+format+"\n", args...)
	if p.json {
		p.out.Write(jsonLine)
	}
}

// Log writes a diagnostic line to stderr only: it is not data.
func (p *Printer) Log(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flush()
	fmt.Fprintf(p.errOut, "adoptwatch: "+format+"\n", args...)
}
