package events

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"github.com/adoptwatch/adoptwatch/bpf"
)

func ident(pid, ppid, sid uint32, start time.Duration, comm string) bpf.AdoptwatchTaskIdent {
	id := bpf.AdoptwatchTaskIdent{Pid: pid, Tid: pid, Ppid: ppid, Sid: sid, Pgid: sid, StartNs: uint64(start)}
	for i := 0; i < len(comm) && i < 15; i++ {
		id.Comm[i] = int8(comm[i])
	}
	return id
}

func ancestor(pid, sid uint32, start time.Duration, comm string, flags uint32) bpf.AdoptwatchAncestor {
	id := ident(pid, 0, sid, start, comm)
	return bpf.AdoptwatchAncestor{Pid: pid, Sid: sid, Pgid: sid, Flags: flags, StartNs: id.StartNs, Comm: id.Comm}
}

func encode(t testing.TB, v any) []byte {
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// doubleForkRecord is the daemon's adoption after bash > launcher > middle(setsid) > daemon.
func doubleForkRecord() bpf.AdoptwatchAdoptRecord {
	rec := bpf.AdoptwatchAdoptRecord{
		Hdr:          bpf.AdoptwatchRecordHeader{TsNs: 5e9, Kind: uint32(bpf.AdoptwatchRecordKindRECORD_ADOPT)},
		Hook:         uint32(bpf.AdoptwatchAdoptHookHOOK_EXIT_WALK),
		ReaperFlags:  uint32(bpf.AdoptwatchReaperFlagREAPER_IS_CHILD_SUBREAPER),
		Child:        ident(103, 50, 102, 4*time.Second, "mydaemon"),
		PrevParent:   ident(102, 101, 102, 3*time.Second, "mydaemon"),
		NewParent:    ident(50, 1, 50, time.Second, "supervisor"),
		LineageLen:   3,
		LineageFlags: uint32(bpf.AdoptwatchLineageFlagLINEAGE_PREEXISTING),
	}
	rec.Lineage[0] = ancestor(100, 100, 2*time.Second, "bash", 0)
	rec.Lineage[1] = ancestor(101, 100, 3*time.Second, "mydaemon", uint32(bpf.AdoptwatchLineageFlagLINEAGE_EXECED))
	rec.Lineage[2] = ancestor(102, 102, 3*time.Second, "mydaemon", 0)
	return rec
}

func TestDecodeAdoption(t *testing.T) {
	clock := Clock{bootEpoch: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	rec, err := decodeSample(clock, encode(t, doubleForkRecord()))
	if err != nil {
		t.Fatal(err)
	}
	a := rec.Adoption
	if a == nil || rec.Task != nil {
		t.Fatalf("want an adoption, got %+v", rec)
	}
	if !a.Time.Equal(clock.bootEpoch.Add(5 * time.Second)) {
		t.Errorf("time %v", a.Time)
	}
	if a.Hook != HookExitWalk || a.Reaper != ReaperSubreaper || a.Child.Comm != "mydaemon" ||
		a.PrevParent.PID != 102 || a.NewParent.Comm != "supervisor" || a.Zombie {
		t.Errorf("decoded %+v", a)
	}
	var pids []uint32
	for _, s := range a.Lineage {
		pids = append(pids, s.PID)
	}
	if len(pids) != 4 || pids[0] != 100 || pids[3] != 103 {
		t.Fatalf("lineage pids %v, want [100 101 102 103]", pids)
	}
	if !a.Lineage[1].Exec || a.Lineage[0].Exec {
		t.Errorf("exec flags: %+v", a.Lineage)
	}
	if a.Lineage[1].Setsid || !a.Lineage[2].Setsid || a.Lineage[3].Setsid {
		t.Errorf("setsid should mark only the middle: %+v", a.Lineage)
	}
	if a.LineageComplete {
		t.Errorf("a lineage rooted in a pre-existing process is not complete until resolved")
	}
	if DaemonPattern(a.Lineage) != PatternDoubleFork {
		t.Errorf("pattern %s", DaemonPattern(a.Lineage))
	}
}

func TestDecodeTask(t *testing.T) {
	raw := bpf.AdoptwatchTaskRecord{
		Hdr:      bpf.AdoptwatchRecordHeader{Kind: uint32(bpf.AdoptwatchRecordKindRECORD_EXIT)},
		Task:     ident(7, 1, 7, time.Second, "worker"),
		ExitCode: 9,
		Flags:    uint32(bpf.AdoptwatchExitFlagEXIT_GROUP_DEAD),
	}
	rec, err := decodeSample(Clock{}, encode(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	if ev := rec.Task; ev == nil || ev.Kind != KindExit || !ev.ProcessExit || ev.ExitStatus != 9 || ev.Process.Comm != "worker" {
		t.Errorf("decoded %+v", rec.Task)
	}
	raw.Hdr.Kind = uint32(bpf.AdoptwatchRecordKindRECORD_FORK)
	raw.Other = ident(8, 7, 7, 2*time.Second, "worker")
	rec, err = decodeSample(Clock{}, encode(t, raw))
	if err != nil || rec.Task.Kind != KindFork || rec.Task.Child == nil || rec.Task.Child.PID != 8 {
		t.Errorf("fork: %+v, %v", rec.Task, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := encode(t, doubleForkRecord())
	bad := doubleForkRecord()
	bad.LineageLen = 9
	unknownHook := doubleForkRecord()
	unknownHook.Hook = 7
	for name, sample := range map[string][]byte{
		"empty":          nil,
		"short header":   good[:8],
		"truncated":      good[:len(good)-1],
		"too long":       append(append([]byte{}, good...), 0),
		"lineage len":    encode(t, bad),
		"unknown hook":   encode(t, unknownHook),
		"unknown kind":   encode(t, bpf.AdoptwatchRecordHeader{Kind: 99}),
		"task too short": encode(t, bpf.AdoptwatchRecordHeader{Kind: uint32(bpf.AdoptwatchRecordKindRECORD_EXEC)}),
	} {
		if _, err := decodeSample(Clock{}, sample); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// FuzzDecode: no input may crash the decoder, and what it accepts is consistent.
func FuzzDecode(f *testing.F) {
	f.Add(encode(f, doubleForkRecord()))
	f.Add(encode(f, bpf.AdoptwatchTaskRecord{Hdr: bpf.AdoptwatchRecordHeader{Kind: 2}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, sample []byte) {
		rec, err := decodeSample(Clock{}, sample)
		if err != nil {
			return
		}
		switch {
		case rec.Adoption != nil && rec.Task == nil:
			a := rec.Adoption
			if len(a.Lineage) < 1 || len(a.Lineage) > 9 || a.Lineage[len(a.Lineage)-1].PID != a.Child.PID {
				t.Fatalf("lineage must end with the adopted process: %+v", a)
			}
		case rec.Task != nil && rec.Adoption == nil:
			if rec.Task.Kind == KindFork && rec.Task.Child == nil {
				t.Fatalf("fork without child")
			}
		default:
			t.Fatalf("decoded to %+v", rec)
		}
	})
}

// decodeSample decodes without finishing: what the kernel sent, as sent.
func decodeSample(c Clock, sample []byte) (Record, error) {
	rec, _, err := decoder{clock: c}.decode(sample)
	return rec, err
}

// TestRecordLayout: the records are decoded by copying bytes (copyRaw), which
// is right only if Go lays them out exactly as their binary encoding.
func TestRecordLayout(t *testing.T) {
	for name, sizes := range map[string][2]int{
		"header": {binary.Size(bpf.AdoptwatchRecordHeader{}), int(unsafe.Sizeof(bpf.AdoptwatchRecordHeader{}))},
		"adopt":  {binary.Size(bpf.AdoptwatchAdoptRecord{}), int(unsafe.Sizeof(bpf.AdoptwatchAdoptRecord{}))},
		"task":   {binary.Size(bpf.AdoptwatchTaskRecord{}), int(unsafe.Sizeof(bpf.AdoptwatchTaskRecord{}))},
	} {
		if sizes[0] != sizes[1] {
			t.Errorf("%s record: binary size %d, Go size %d: copyRaw would misread it", name, sizes[0], sizes[1])
		}
	}
	// A record copied raw equals the one binary.Decode reads.
	want := doubleForkRecord()
	sample := encode(t, want)
	var viaDecode, viaCopy bpf.AdoptwatchAdoptRecord
	if _, err := binary.Decode(sample, binary.NativeEndian, &viaDecode); err != nil {
		t.Fatal(err)
	}
	copyRaw(&viaCopy, sample)
	if viaCopy != viaDecode || viaCopy != want {
		t.Errorf("copyRaw read %+v, binary.Decode %+v", viaCopy, viaDecode)
	}
}
