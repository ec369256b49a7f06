package events

// Assembler is the one place a raw ring-buffer sample becomes a finished
// record: decoded, its lineage completed from the process table, and the table
// updated with what the record says. Every consumer (the watcher, run, the
// benchmark, the tests) reads records through it (loader.Observer.Read), so
// they all see the same complete record. It is not safe for concurrent use.
type Assembler struct {
	dec      decoder
	table    *Table
	contexts *Contexts // nil: adoptions carry no Context
}

// NewAssembler finishes records against table, which it owns from now on.
// The clock turns the kernel's timestamps into wall-clock times.
func NewAssembler(clock Clock, table *Table) *Assembler {
	return &Assembler{dec: decoder{clock: clock}, table: table}
}

// ResolveContexts makes every adoption from now on carry its Context,
// resolved through c.
func (as *Assembler) ResolveContexts(c *Contexts) { as.contexts = c }

// Assemble decodes one sample and finishes it. A sample that does not decode
// is an error, and changes nothing.
func (as *Assembler) Assemble(sample []byte) (Record, error) {
	rec, preexisting, err := as.dec.decode(sample)
	if err != nil {
		return Record{}, err
	}
	switch {
	case rec.Adoption != nil:
		as.table.finishAdoption(rec.Adoption, preexisting)
		if as.contexts != nil {
			as.contexts.resolve(rec.Adoption)
		}
	case rec.Task != nil:
		as.table.observeTask(rec.Task)
	case rec.Adoptee != nil && rec.Adoptee.Kind == KindAdopteeReaped:
		// Released: no longer anyone's ancestor. Without --all this is the
		// only exit the table hears of, and it must not keep every daemon
		// ever adopted (the GC would scan them all, issue 12).
		as.table.Forget(rec.Adoptee.Process.ID)
	}
	return rec, nil
}

// Known is how many processes the table holds, and how many it has forgotten
// to stay within its bound.
func (as *Assembler) Known() (known int, evicted uint64) {
	return as.table.Len(), as.table.Evicted
}
