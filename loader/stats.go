package loader

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/adoptwatch/adoptwatch/bpf"
)

// MapMemory is one map's kernel memory as the kernel accounts it (fdinfo memlock).
type MapMemory struct {
	Name       string
	MaxEntries uint32
	Bytes      uint64
}

// MapMemory lists the kernel memory each of the Observer's maps holds. Hash
// maps are preallocated: their memory is fixed by their bound, not by use.
func (o *Observer) MapMemory() ([]MapMemory, error) {
	release, err := o.hold()
	if err != nil {
		return nil, err
	}
	defer release()
	var out []MapMemory
	for name, m := range o.coll.Maps {
		b, err := memlock(m)
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", name, err)
		}
		out = append(out, MapMemory{Name: name, MaxEntries: m.MaxEntries(), Bytes: b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func memlock(m *ebpf.Map) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "memlock:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no memlock in fdinfo")
}

// LineageEntries counts the processes the kernel holds a lineage entry for
// (watched, or switched off beneath a watched default). It walks the map.
func (o *Observer) LineageEntries() (int, error) {
	release, err := o.hold()
	if err != nil {
		return 0, err
	}
	defer release()
	var (
		key   bpf.AdoptwatchProcKey
		value bpf.AdoptwatchLineage
		n     int
	)
	it := o.coll.Maps[bpf.AdoptwatchMapLineages].Iterate()
	for it.Next(&key, &value) {
		n++
	}
	return n, it.Err()
}

// ProgramStats are one program's run count and time (kernel.bpf_stats_enabled=1).
type ProgramStats struct {
	Name     string
	RunCount uint64
	RunTime  uint64 // ns
	// RecursionMisses counts runs the kernel skipped because the program was
	// already running on that CPU: each is an event the program never saw.
	RecursionMisses uint64
}

// ProgramStats reads run counts and times of the loaded programs; they stay 0
// unless the sysctl kernel.bpf_stats_enabled is 1.
func (o *Observer) ProgramStats() ([]ProgramStats, error) {
	release, err := o.hold()
	if err != nil {
		return nil, err
	}
	defer release()
	var out []ProgramStats
	for name, p := range o.coll.Programs {
		st, err := p.Stats()
		if err != nil {
			return nil, err
		}
		out = append(out, ProgramStats{Name: name, RunCount: st.RunCount, RunTime: uint64(st.Runtime), RecursionMisses: st.RecursionMisses})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
