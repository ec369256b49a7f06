package waitlog

import (
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	l := New[int]()
	go func() {
		for i := 1; i <= 3; i++ {
			time.Sleep(time.Millisecond)
			l.Add(i)
		}
	}()
	if !l.Wait(5*time.Second, func(items []int, _ bool) bool { return len(items) == 3 }) {
		t.Fatalf("three items never arrived: %v", l.Items())
	}
	start := time.Now()
	if l.Wait(20*time.Millisecond, func(items []int, _ bool) bool { return len(items) > 3 }) {
		t.Errorf("a fourth item that never came was reported")
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Errorf("gave up before the timeout")
	}
	l.End()
	start = time.Now()
	var sawEnd bool
	l.Wait(time.Hour, func(_ []int, ended bool) bool { sawEnd = ended; return false })
	if !sawEnd || time.Since(start) > time.Second {
		t.Errorf("an ended log should stop the wait at once")
	}
}
