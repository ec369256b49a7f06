package output

import (
	"fmt"
	"io"
	"sync"

	"github.com/adoptwatch/adoptwatch/events"
)

// Printer writes the program's output: data (adoptions, task events) on out
// as text or JSON lines, diagnostics on errOut. It serialises the lines of the
// record loop, the loss reporter and the sinks. It is the first sink
// (Adoption, Close).
type Printer struct {
	mu     sync.Mutex
	out    io.Writer
	errOut io.Writer
	json   bool
	buf    []byte // a text line being written (reused)
}

// NewPrinter prints text, or JSON lines if json is set, to out; diagnostics to errOut.
func NewPrinter(out, errOut io.Writer, json bool) *Printer {
	return &Printer{out: out, errOut: errOut, json: json}
}

// JSON says whether the data stream is JSON lines.
func (p *Printer) JSON() bool { return p.json }

// Adoption prints one adoption, building only the form it prints.
func (p *Printer) Adoption(a *Adoption) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.out.Write(a.Line())
		return
	}
	p.buf = append(append(p.buf[:0], a.Text()...), '\n')
	p.out.Write(p.buf)
}

// Task prints one fork, exec or exit.
func (p *Printer) Task(ev *events.Task) {
	if p.json {
		p.data("", TaskLine(ev))
	} else {
		p.data(TaskText(ev), nil)
	}
}

// Close does nothing: the streams are the caller's.
func (p *Printer) Close() error { return nil }

func (p *Printer) data(text string, jsonLine []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.out.Write(jsonLine)
	} else {
		io.WriteString(p.out, text+"\n")
	}
}

// Warn goes to stderr in text mode (it is not data) and to the stream in JSON
// mode, so consumers of the JSON see it in order.
func (p *Printer) Warn(jsonLine []byte, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
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
	fmt.Fprintf(p.errOut, "adoptwatch: "+format+"\n", args...)
	if p.json {
		p.out.Write(jsonLine)
	}
}

// Log writes a diagnostic line to stderr only: it is not data.
func (p *Printer) Log(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.errOut, "adoptwatch: "+format+"\n", args...)
}
