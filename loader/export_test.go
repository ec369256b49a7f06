package loader

import "github.com/adoptwatch/adoptwatch/bpf"

// Hooks into the reader's wakeup promise for the tests of package loader_test.

// PromiseBy makes the reader's promise to look again by bootNs.
func PromiseBy(o *Observer, bootNs uint64) bool { return o.ring.promiseBy(bootNs) }

// Promised reads the promise back from the kernel's variable.
func Promised(o *Observer) (uint64, error) {
	var v uint64
	err := o.coll.Variables[bpf.AdoptwatchVarReaderLooksByNs].Get(&v)
	return v, err
}
