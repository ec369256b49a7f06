// Package sink defines the one interface every destination of finished
// adoptions implements: the printer (internal/output), reaper signals
// (internal/notify), the subscriber socket (internal/subscribe), and those to
// come (journal, metrics). The command builds the sinks its flags ask for and
// hands each adoption to all of them.
package sink

import "github.com/adoptwatch/adoptwatch/internal/output"

// Sink receives every adoption that passes the kernel's scope, finished, with
// its JSON form built once (output.NewAdoption). Adoption must not block for
// long: it runs in the record loop. Close flushes and reports final counts.
type Sink interface {
	Adoption(a *output.Adoption)
	Close() error
}

// Set is several sinks, served in order.
type Set []Sink

// Adoption hands a to every sink.
func (s Set) Adoption(a *output.Adoption) {
	for _, k := range s {
		k.Adoption(a)
	}
}

// Close closes every sink, last first (the printer, usually first, outlives
// the sinks that report through it).
func (s Set) Close() error {
	var first error
	for i := len(s) - 1; i >= 0; i-- {
		if err := s[i].Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
