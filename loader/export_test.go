package loader

import (
	"time"

	"github.com/adoptwatch/adoptwatch/bpf"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// Hooks into the reader's wakeup promise for the tests of package loader_test.

// PromiseBy makes the reader's promise to look again by bootNs.
func PromiseBy(o *Observer, bootNs uint64) bool { return o.ring.promiseBy(bootNs) }

// Promised reads the promise back from the kernel's variable.
func Promised(o *Observer) (uint64, error) {
	var v uint64
	err := o.coll.Variables[bpf.AdoptwatchVarReaderLooksByNs].Get(&v)
	return v, err
}

// AdopteeKeys lists the processes the kernel's adoptees map still follows,
// walking the map through the Observer's collection.
func AdopteeKeys(o *Observer) ([]procfs.ID, error) {
	var (
		key   bpf.AdoptwatchProcKey
		value bpf.AdoptwatchAdoptee
		out   []procfs.ID
	)
	it := o.coll.Maps[bpf.AdoptwatchMapAdoptees].Iterate()
	for it.Next(&key, &value) {
		out = append(out, procfs.ID{PID: key.Pid, Start: time.Duration(key.StartNs)})
	}
	return out, it.Err()
}
