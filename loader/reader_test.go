package loader_test

import (
	"errors"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"github.com/adoptwatch/adoptwatch/loader"
)

// TestWakeupPromise: the reader's promise to look again reaches the kernel
// through the mapped variable, and an adoption sent under it (without a
// wakeup) is still delivered, once.
func TestWakeupPromise(t *testing.T) {
	testsupport.EachHook(t, func(t *testing.T, hook events.Hook) {
		obs := testsupport.Open(t, loader.Options{Hook: hook})
		far := uint64(events.SinceBoot() + time.Hour)
		if !loader.PromiseBy(obs, far) {
			t.Fatal("the reader cannot promise: the object has no mapped reader_looks_by_ns")
		}
		if got, err := loader.Promised(obs); err != nil || got != far {
			t.Fatalf("kernel's promise = %d (%v), want %d", got, err, far)
		}
		tree := testsupport.StartTree(t, "doublefork")
		testsupport.Next(t, tree, "middle")
		daemon := testsupport.Next(t, tree, "daemon").Int(0)
		testsupport.KillAtEnd(t, daemon)

		got := 0
		deadline := time.AfterFunc(20*time.Second, func() { obs.Close() })
		defer deadline.Stop()
		for got == 0 {
			rec, err := obs.Read()
			if errors.Is(err, loader.ErrClosed) {
				t.Fatalf("no adoption of the daemon %d in 20 s", daemon)
			}
			if err == nil && rec.Adoption != nil && rec.Adoption.Child.PID == uint32(daemon) {
				got++
			}
		}
		// The reader withdrew the promise when it had to wait; a duplicate
		// would be in the ring by now.
		for obs.Pending() {
			rec, err := obs.Read()
			if err == nil && rec.Adoption != nil && rec.Adoption.Child.PID == uint32(daemon) {
				t.Errorf("the daemon's adoption was delivered twice")
			}
		}
	})
}
