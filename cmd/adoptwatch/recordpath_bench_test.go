package main

import (
	"io"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/adoptwatch/adoptwatch/bpf"
	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/cgroups"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/pidns"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
	"github.com/adoptwatch/adoptwatch/internal/reapwatch"
	"github.com/adoptwatch/adoptwatch/internal/sink"
)

// BenchmarkRecordPath is the watcher's user-space work for one adoption of
// `make bench`'s double-fork workload (issue 12), without the wait for the
// ring: the three records the kernel sends (the adoption, then the adoptee's
// exit and its reap), each assembled as Observer.Read does (lineage completed
// from a table seeded from /proc, contexts resolved on this host's cgroup
// tree) and delivered as the watch loop does (printer to io.Discard, reaping
// monitor). One op is one adoption; allocs/op is what the GC pays for.
// Compare builds with `go test -run '^$' -bench RecordPath -benchmem -count 6
// ./cmd/adoptwatch/` and benchstat.
func BenchmarkRecordPath(b *testing.B) {
	for _, mode := range []struct {
		name string
		json bool
	}{{"text", false}, {"json", true}} {
		b.Run(mode.name, func(b *testing.B) { benchRecordPath(b, mode.json) })
	}
}

func benchRecordPath(b *testing.B, json bool) {
	table := events.NewTable(65536)
	if err := table.SeedFromProc(); err != nil {
		b.Fatal(err)
	}
	as := events.NewAssembler(events.NewClock(), table)
	ctx := &events.Contexts{Reapers: pidns.NewKinds(1024)}
	cgroupID := uint64(0)
	if m, err := cgroups.FindMount(); err == nil {
		if ctx.Cgroups, err = cgroups.NewResolver(m, 8192); err != nil {
			b.Fatal(err)
		}
		if path, err := procfs.Cgroup(os.Getpid()); err == nil {
			if dir, ok := m.HostPath(path); ok {
				cgroupID, _ = cgroups.ID(dir)
			}
		}
	}
	as.ResolveContexts(ctx)

	p := output.NewPrinter(io.Discard, io.Discard, json)
	p.Buffer(output.MaxOutputDelay)
	defer p.Close()
	monitor, err := reapwatch.New(reapwatch.Config{Printer: p})
	if err != nil {
		b.Fatal(err)
	}
	defer monitor.Close()
	sinks := sink.Set{p, monitor}

	// The workload: this process (started before the table was seeded, so
	// the lineage is completed from the table) forks a middle that calls
	// setsid and forks the daemon; the daemon is adopted by this process.
	self, err := procfs.ReadStat(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	ident := func(pid, ppid, sid uint32, start time.Duration, comm string) bpf.AdoptwatchTaskIdent {
		id := bpf.AdoptwatchTaskIdent{Pid: pid, Tid: pid, Ppid: ppid, Sid: sid, Pgid: sid,
			StartNs: uint64(start), CgroupId: cgroupID, PidnsInum: 4026531836, NsPid: pid, ReaperNsPid: pid}
		for i := 0; i < len(comm) && i < 15; i++ {
			id.Comm[i] = int8(comm[i])
		}
		return id
	}
	step := func(id bpf.AdoptwatchTaskIdent) bpf.AdoptwatchAncestor {
		return bpf.AdoptwatchAncestor{Pid: id.Pid, Sid: id.Sid, Pgid: id.Pgid, StartNs: id.StartNs, Comm: id.Comm, CgroupId: id.CgroupId}
	}
	var adopt bpf.AdoptwatchAdoptRecord
	var exit, reaped bpf.AdoptwatchAdopteeRecord
	adoptSample := unsafe.Slice((*byte)(unsafe.Pointer(&adopt)), unsafe.Sizeof(adopt))
	exitSample := unsafe.Slice((*byte)(unsafe.Pointer(&exit)), unsafe.Sizeof(exit))
	reapedSample := unsafe.Slice((*byte)(unsafe.Pointer(&reaped)), unsafe.Sizeof(reaped))

	selfID := ident(uint32(self.PID), self.PPID, self.SID, self.Start, self.Comm)
	base := uint32(1 << 21) // pids no process here has (pid_max is at most 4M)
	now := events.SinceBoot()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		middlePID, daemonPID := base+uint32(2*i%1000000), base+uint32(2*i%1000000)+1
		at := now + time.Duration(i)*time.Microsecond
		middle := ident(middlePID, selfID.Pid, middlePID, at, "adoptbench")
		daemon := ident(daemonPID, selfID.Pid, middlePID, at, "adoptbench")
		adopt = bpf.AdoptwatchAdoptRecord{
			Hdr:          bpf.AdoptwatchRecordHeader{TsNs: uint64(at), Kind: uint32(bpf.AdoptwatchRecordKindRECORD_ADOPT)},
			Hook:         uint32(bpf.AdoptwatchAdoptHookHOOK_EXIT_WALK),
			ReaperFlags:  uint32(bpf.AdoptwatchReaperFlagREAPER_IS_CHILD_SUBREAPER),
			Child:        daemon,
			PrevParent:   middle,
			NewParent:    selfID,
			LineageLen:   2,
			LineageFlags: uint32(bpf.AdoptwatchLineageFlagLINEAGE_PREEXISTING),
		}
		adopt.Lineage[0], adopt.Lineage[1] = step(selfID), step(middle)
		exit = bpf.AdoptwatchAdopteeRecord{Hdr: bpf.AdoptwatchRecordHeader{TsNs: uint64(at), Kind: uint32(bpf.AdoptwatchRecordKindRECORD_ADOPTEE_EXIT)},
			ExitNs: uint64(at), Adoptee: daemon, Reaper: selfID}
		reaped = exit
		reaped.Hdr.Kind = uint32(bpf.AdoptwatchRecordKindRECORD_ADOPTEE_REAPED)
		for _, sample := range [][]byte{adoptSample, exitSample, reapedSample} {
			rec, err := as.Assemble(sample)
			if err != nil {
				b.Fatal(err)
			}
			deliver(rec, sinks, p, monitor)
		}
	}
}
