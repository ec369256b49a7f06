package pidns

import (
	"sync"

	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// Kinds names namespace reapers, reading /proc at most once per reaper:
// reapers live long and adopt often, so an adoption costs a map lookup. The
// cache is bounded; Evicted counts what the bound dropped.
type Kinds struct {
	mu      sync.Mutex
	size    int
	byID    map[key]string
	order   []key // insertion order, for eviction (oldest first)
	evicted uint64
}

// key is a process identity at /proc's precision (the kernel's start times
// are finer).
type key struct {
	pid   uint32
	ticks uint64
}

// NewKinds caches up to size reapers.
func NewKinds(size int) *Kinds {
	if size < 1 {
		size = 1
	}
	return &Kinds{size: size, byID: make(map[key]string)}
}

// Kind names the reaper id, whose comm the kernel recorded. comm alone
// decides where it can (no /proc read); otherwise /proc is asked, and if the
// process is gone or is no longer id, comm's answer stands.
func (k *Kinds) Kind(id procfs.ID, comm string) string {
	if kind := kindOf(comm); kind != "" && comm != "busybox" {
		return kind
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	kk := key{id.PID, id.StartTicks()}
	if kind, ok := k.byID[kk]; ok {
		return kind
	}
	kind := ReaperKind(comm, "")
	if now, err := procfs.Lookup(int(id.PID)); err == nil && now.Same(id) {
		if r, err := Reaper(int(id.PID)); err == nil {
			kind = r
		}
	}
	if len(k.order) >= k.size {
		delete(k.byID, k.order[0])
		k.order = k.order[1:]
		k.evicted++
	}
	k.byID[kk] = kind
	k.order = append(k.order, kk)
	return kind
}

// Evicted is how many reapers the bound dropped.
func (k *Kinds) Evicted() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.evicted
}
