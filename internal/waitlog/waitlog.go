// Package waitlog is an append-only list that readers wait on, with a bound:
// what the tests' collectors (a command's output lines, fixture reports,
// observed records) have in common.
package waitlog

import (
	"sync"
	"time"
)

// Log collects items from one writer for any number of waiting readers.
type Log[T any] struct {
	mu    sync.Mutex
	cond  *sync.Cond
	items []T
	ended bool
}

// New returns an empty log.
func New[T any]() *Log[T] {
	l := &Log[T]{}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// Add appends one item and wakes the readers.
func (l *Log[T]) Add(v T) {
	l.mu.Lock()
	l.items = append(l.items, v)
	l.cond.Broadcast()
	l.mu.Unlock()
}

// End says no item will follow.
func (l *Log[T]) End() {
	l.mu.Lock()
	l.ended = true
	l.cond.Broadcast()
	l.mu.Unlock()
}

// Wait calls done with the items so far (under the log's lock: it must not
// keep the slice) until it returns true, the log has ended or timeout has
// passed. It returns done's last answer.
func (l *Log[T]) Wait(timeout time.Duration, done func(items []T, ended bool) bool) bool {
	deadline := time.Now().Add(timeout)
	wake := time.AfterFunc(timeout, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer wake.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if done(l.items, l.ended) {
			return true
		}
		if l.ended || !time.Now().Before(deadline) {
			return false
		}
		l.cond.Wait()
	}
}

// Items returns a copy of the items so far.
func (l *Log[T]) Items() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.items...)
}
