package events

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"github.com/adoptwatch/adoptwatch/bpf"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// Sizes of the records as the kernel writes them (bpf/records.h).
var (
	headerSize  = binary.Size(bpf.AdoptwatchRecordHeader{})
	adoptSize   = binary.Size(bpf.AdoptwatchAdoptRecord{})
	taskSize    = binary.Size(bpf.AdoptwatchTaskRecord{})
	adopteeSize = binary.Size(bpf.AdoptwatchAdopteeRecord{})
)

// decoder turns raw ring-buffer samples into records, not yet finished (the
// Assembler does that). It needs the boot clock's offset for wall-clock times.
type decoder struct {
	clock Clock
}

// decode parses one sample. It rejects samples whose size does not match their
// kind, so a layout mismatch between the object and this binary is caught.
// preexisting says the oldest generation the kernel recorded predates
// adoptwatch, so the process table may know its ancestors.
func (d decoder) decode(sample []byte) (rec Record, preexisting bool, err error) {
	if len(sample) < headerSize {
		return Record{}, false, fmt.Errorf("record of %d bytes is shorter than its header (%d)", len(sample), headerSize)
	}
	var hdr bpf.AdoptwatchRecordHeader
	copyRaw(&hdr, sample)
	switch bpf.AdoptwatchRecordKind(hdr.Kind) {
	case bpf.AdoptwatchRecordKindRECORD_ADOPT:
		var raw bpf.AdoptwatchAdoptRecord
		if err := decodeExact(sample, adoptSize, &raw); err != nil {
			return Record{}, false, err
		}
		a, preexisting, err := d.adoption(&raw)
		if err != nil {
			return Record{}, false, err
		}
		return Record{Adoption: a}, preexisting, nil
	case bpf.AdoptwatchRecordKindRECORD_FORK, bpf.AdoptwatchRecordKindRECORD_EXEC, bpf.AdoptwatchRecordKindRECORD_EXIT:
		var raw bpf.AdoptwatchTaskRecord
		if err := decodeExact(sample, taskSize, &raw); err != nil {
			return Record{}, false, err
		}
		return Record{Task: d.task(&raw)}, false, nil
	case bpf.AdoptwatchRecordKindRECORD_ADOPTEE_EXIT, bpf.AdoptwatchRecordKindRECORD_ADOPTEE_REAPED:
		var raw bpf.AdoptwatchAdopteeRecord
		if err := decodeExact(sample, adopteeSize, &raw); err != nil {
			return Record{}, false, err
		}
		return Record{Adoptee: d.adoptee(&raw)}, false, nil
	default:
		return Record{}, false, fmt.Errorf("unknown record kind %d", hdr.Kind)
	}
}

func decodeExact[T any](sample []byte, size int, out *T) error {
	if len(sample) != size {
		return fmt.Errorf("record of %d bytes, want %d for its kind", len(sample), size)
	}
	copyRaw(out, sample)
	return nil
}

// copyRaw fills out with the sample's bytes. The record types are the
// kernel's, laid out as in C on this host (structs.HostLayout, no implicit
// padding: TestRecordLayout checks that their Go size is their binary size),
// so a byte copy decodes them; binary.Decode's reflection cost more than all
// the rest of a record's handling (issue 12's profile).
func copyRaw[T any](out *T, sample []byte) {
	copy(unsafe.Slice((*byte)(unsafe.Pointer(out)), unsafe.Sizeof(*out)), sample)
}

func (d decoder) adoption(raw *bpf.AdoptwatchAdoptRecord) (*Adoption, bool, error) {
	if raw.LineageLen > uint32(len(raw.Lineage)) {
		return nil, false, fmt.Errorf("lineage length %d exceeds %d", raw.LineageLen, len(raw.Lineage))
	}
	var hook Hook
	switch bpf.AdoptwatchAdoptHook(raw.Hook) {
	case bpf.AdoptwatchAdoptHookHOOK_EXACT:
		hook = HookExact
	case bpf.AdoptwatchAdoptHookHOOK_EXIT_WALK:
		hook = HookExitWalk
	default:
		return nil, false, fmt.Errorf("unknown hook %d", raw.Hook)
	}
	a := &Adoption{
		Time:       d.clock.Wall(raw.Hdr.TsNs),
		Hook:       hook,
		Child:      process(raw.Child),
		PrevParent: process(raw.PrevParent),
		NewParent:  process(raw.NewParent),
		Reaper:     ReaperKind(raw.ReaperFlags, raw.NsLevel),
		NSLevel:    raw.NsLevel,
		Zombie:     raw.ExitState != 0,
	}
	a.Lineage = make([]Step, 0, raw.LineageLen+1)
	for i, g := range raw.Lineage[:raw.LineageLen] {
		a.Lineage = append(a.Lineage, Step{
			ID:     procfs.ID{PID: g.Pid, Start: time.Duration(g.StartNs)},
			Comm:   comm(g.Comm),
			SID:    g.Sid,
			PGID:   g.Pgid,
			Exec:   g.Flags&uint32(bpf.AdoptwatchLineageFlagLINEAGE_EXECED) != 0,
			Source: "kernel",
		})
		a.Lineage[i].CgroupID = g.CgroupId
	}
	a.Lineage = append(a.Lineage, Step{
		ID: a.Child.ID, Comm: a.Child.Comm,
		SID: a.Child.SID, PGID: a.Child.PGID, Source: "kernel", CgroupID: a.Child.CgroupID,
	})
	flags := raw.LineageFlags
	a.LineageComplete = flags&uint32(bpf.AdoptwatchLineageFlagLINEAGE_TRUNCATED|bpf.AdoptwatchLineageFlagLINEAGE_PREEXISTING) == 0
	if flags&uint32(bpf.AdoptwatchLineageFlagLINEAGE_TRUNCATED) != 0 {
		// Dropped generations cannot be recovered; PREEXISTING no longer applies.
		flags &^= uint32(bpf.AdoptwatchLineageFlagLINEAGE_PREEXISTING)
	}
	markSetsid(a.Lineage)
	return a, flags&uint32(bpf.AdoptwatchLineageFlagLINEAGE_PREEXISTING) != 0, nil
}

func (d decoder) task(raw *bpf.AdoptwatchTaskRecord) *Task {
	t := &Task{
		Time:    d.clock.Wall(raw.Hdr.TsNs),
		Process: process(raw.Task),
	}
	switch bpf.AdoptwatchRecordKind(raw.Hdr.Kind) {
	case bpf.AdoptwatchRecordKindRECORD_FORK:
		t.Kind = KindFork
		child := process(raw.Other)
		t.Child = &child
	case bpf.AdoptwatchRecordKindRECORD_EXEC:
		t.Kind = KindExec
	case bpf.AdoptwatchRecordKindRECORD_EXIT:
		t.Kind = KindExit
		t.ExitStatus = raw.ExitCode
		t.ProcessExit = raw.Flags&uint32(bpf.AdoptwatchExitFlagEXIT_GROUP_DEAD) != 0
	}
	return t
}

func (d decoder) adoptee(raw *bpf.AdoptwatchAdopteeRecord) *Adoptee {
	a := &Adoptee{
		Time:                 d.clock.Wall(raw.Hdr.TsNs),
		Kind:                 KindAdopteeExit,
		Process:              process(raw.Adoptee),
		Reaper:               process(raw.Reaper),
		ExitStatus:           raw.ExitCode,
		ExitedBeforeAdoption: raw.Flags&uint32(bpf.AdoptwatchAdopteeFlagADOPTEE_EXITED_BEFORE) != 0,
	}
	if bpf.AdoptwatchRecordKind(raw.Hdr.Kind) == bpf.AdoptwatchRecordKindRECORD_ADOPTEE_REAPED {
		a.Kind = KindAdopteeReaped
	}
	if raw.ExitNs != 0 && raw.Flags&uint32(bpf.AdoptwatchAdopteeFlagADOPTEE_EXIT_UNSEEN) == 0 {
		a.ExitTime = d.clock.Wall(raw.ExitNs)
	}
	return a
}

func process(id bpf.AdoptwatchTaskIdent) Process {
	return Process{
		ID:  procfs.ID{PID: id.Pid, Start: time.Duration(id.StartNs)},
		TID: id.Tid, PPID: id.Ppid, SID: id.Sid, PGID: id.Pgid, UID: id.Uid, Comm: comm(id.Comm),
		CgroupID: id.CgroupId, PidNSInode: id.PidnsInum, NSPid: id.NsPid, ReaperNSPid: id.ReaperNsPid,
	}
}

// comm converts the kernel's NUL-padded command name.
func comm(c [16]int8) string {
	var b [16]byte
	for i, ch := range c {
		b[i] = byte(ch)
	}
	n := bytes.IndexByte(b[:], 0)
	if n < 0 {
		n = len(b)
	}
	return string(b[:n])
}
