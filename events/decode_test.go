package events

import (
	"bytes"
	"encoding/binary"
	"slices"
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

// inContainer puts doubleForkRecord's processes in a container: the daemon and
// its previous parent in a child pid namespace whose reaper is the new parent
// (pids 1, 7, 8 inside), each lineage step in its cgroup of the time.
func inContainer(rec bpf.AdoptwatchAdoptRecord) bpf.AdoptwatchAdoptRecord {
	const hostNS, containerNS = 4026531836, 4026532999
	set := func(id *bpf.AdoptwatchTaskIdent, cgroup uint64, ns, nsPid, reaperNSPid uint32) {
		id.CgroupId, id.PidnsInum, id.NsPid, id.ReaperNsPid = cgroup, ns, nsPid, reaperNSPid
	}
	set(&rec.Child, 9003, containerNS, 8, 8)
	set(&rec.PrevParent, 9003, containerNS, 7, 7)
	set(&rec.NewParent, 9002, containerNS, 1, 1)
	for i := range rec.Lineage[:rec.LineageLen] {
		rec.Lineage[i].CgroupId = 9000 + uint64(i)
	}
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

func TestDecodeContext(t *testing.T) {
	rec, err := decodeSample(Clock{}, encode(t, inContainer(doubleForkRecord())))
	if err != nil {
		t.Fatal(err)
	}
	a := rec.Adoption
	for _, c := range []struct {
		name                   string
		got                    Process
		cgroup                 uint64
		ns, nsPid, reaperNSPid uint32
	}{
		{"child", a.Child, 9003, 4026532999, 8, 8},
		{"previous parent", a.PrevParent, 9003, 4026532999, 7, 7},
		{"new parent", a.NewParent, 9002, 4026532999, 1, 1},
	} {
		if c.got.CgroupID != c.cgroup || c.got.PidNSInode != c.ns || c.got.NSPid != c.nsPid || c.got.ReaperNSPid != c.reaperNSPid {
			t.Errorf("%s: cgroup %d, pid ns %d, ns pid %d, reaper's ns pid %d; want %d, %d, %d, %d", c.name,
				c.got.CgroupID, c.got.PidNSInode, c.got.NSPid, c.got.ReaperNSPid, c.cgroup, c.ns, c.nsPid, c.reaperNSPid)
		}
	}
	var cgroups []uint64
	for _, s := range a.Lineage {
		cgroups = append(cgroups, s.CgroupID)
	}
	if want := []uint64{9000, 9001, 9002, 9003}; !slices.Equal(cgroups, want) {
		t.Errorf("lineage cgroups %v, want %v (each step's, the daemon's last)", cgroups, want)
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

func TestDecodeAdoptee(t *testing.T) {
	clock := Clock{bootEpoch: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	exit := bpf.AdoptwatchAdopteeRecord{
		Hdr:      bpf.AdoptwatchRecordHeader{TsNs: 7e9, Kind: uint32(bpf.AdoptwatchRecordKindRECORD_ADOPTEE_EXIT)},
		ExitNs:   7e9,
		ExitCode: 3 << 8,
		Adoptee:  ident(103, 50, 102, 4*time.Second, "mydaemon"),
		Reaper:   ident(50, 1, 50, time.Second, "supervisor"),
	}
	rec, err := decodeSample(clock, encode(t, exit))
	if err != nil {
		t.Fatal(err)
	}
	a := rec.Adoptee
	if a == nil || rec.Adoption != nil || rec.Task != nil {
		t.Fatalf("want an adoptee record, got %+v", rec)
	}
	if a.Kind != KindAdopteeExit || a.Process.PID != 103 || a.Process.Start != 4*time.Second || a.Reaper.Comm != "supervisor" ||
		a.ExitStatus != 3<<8 || !a.ExitTime.Equal(clock.bootEpoch.Add(7*time.Second)) || !a.Time.Equal(a.ExitTime) || a.ExitedBeforeAdoption {
		t.Errorf("exit decoded as %+v", a)
	}

	reaped := exit
	reaped.Hdr.Kind = uint32(bpf.AdoptwatchRecordKindRECORD_ADOPTEE_REAPED)
	reaped.Hdr.TsNs = 9e9
	rec, err = decodeSample(clock, encode(t, reaped))
	if err != nil {
		t.Fatal(err)
	}
	if a := rec.Adoptee; a.Kind != KindAdopteeReaped || a.Time.Sub(a.ExitTime) != 2*time.Second || a.Reaper.PID != 50 {
		t.Errorf("reaped decoded as %+v", a)
	}

	reaped.Flags = uint32(bpf.AdoptwatchAdopteeFlagADOPTEE_EXIT_UNSEEN)
	reaped.ExitNs = 0
	rec, _ = decodeSample(clock, encode(t, reaped))
	if a := rec.Adoptee; !a.ExitTime.IsZero() {
		t.Errorf("an unseen exit has no time: %+v", a)
	}

	exit.Flags = uint32(bpf.AdoptwatchAdopteeFlagADOPTEE_EXITED_BEFORE)
	rec, _ = decodeSample(clock, encode(t, exit))
	if a := rec.Adoptee; !a.ExitedBeforeAdoption {
		t.Errorf("zombie adoptee's exit decoded as %+v", a)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := encode(t, doubleForkRecord())
	bad := doubleForkRecord()
	bad.LineageLen = 9
	unknownHook := doubleForkRecord()
	unknownHook.Hook = 7
	for name, sample := range map[string][]byte{
		"empty":           nil,
		"short header":    good[:8],
		"truncated":       good[:len(good)-1],
		"too long":        append(append([]byte{}, good...), 0),
		"lineage len":     encode(t, bad),
		"unknown hook":    encode(t, unknownHook),
		"unknown kind":    encode(t, bpf.AdoptwatchRecordHeader{Kind: 99}),
		"task too short":  encode(t, bpf.AdoptwatchRecordHeader{Kind: uint32(bpf.AdoptwatchRecordKindRECORD_EXEC)}),
		"adoptee as task": encode(t, bpf.AdoptwatchTaskRecord{Hdr: bpf.AdoptwatchRecordHeader{Kind: uint32(bpf.AdoptwatchRecordKindRECORD_ADOPTEE_EXIT)}}),
	} {
		if _, err := decodeSample(Clock{}, sample); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// FuzzDecode: no input may crash the decoder, and what it accepts is consistent.
func FuzzDecode(f *testing.F) {
	f.Add(encode(f, doubleForkRecord()))
	f.Add(encode(f, inContainer(doubleForkRecord())))
	f.Add(encode(f, bpf.AdoptwatchTaskRecord{Hdr: bpf.AdoptwatchRecordHeader{Kind: 2}}))
	f.Add(encode(f, bpf.AdoptwatchAdopteeRecord{Hdr: bpf.AdoptwatchRecordHeader{Kind: uint32(bpf.AdoptwatchRecordKindRECORD_ADOPTEE_EXIT)}, ExitNs: 1}))
	f.Add(encode(f, bpf.AdoptwatchAdopteeRecord{Hdr: bpf.AdoptwatchRecordHeader{Kind: uint32(bpf.AdoptwatchRecordKindRECORD_ADOPTEE_REAPED)}, Flags: 2}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, sample []byte) {
		rec, err := decodeSample(Clock{}, sample)
		if err != nil {
			return
		}
		switch {
		case rec.Adoption != nil && rec.Task == nil && rec.Adoptee == nil:
			a := rec.Adoption
			if len(a.Lineage) < 1 || len(a.Lineage) > 9 || a.Lineage[len(a.Lineage)-1].PID != a.Child.PID {
				t.Fatalf("lineage must end with the adopted process: %+v", a)
			}
			if last := a.Lineage[len(a.Lineage)-1]; last.CgroupID != a.Child.CgroupID {
				t.Fatalf("the last lineage step is the adopted process, in its cgroup: %+v", a)
			}
		case rec.Task != nil && rec.Adoption == nil && rec.Adoptee == nil:
			if rec.Task.Kind == KindFork && rec.Task.Child == nil {
				t.Fatalf("fork without child")
			}
		case rec.Adoptee != nil && rec.Adoption == nil && rec.Task == nil:
			if k := rec.Adoptee.Kind; k != KindAdopteeExit && k != KindAdopteeReaped {
				t.Fatalf("adoptee record of kind %q", k)
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
		"header":  {binary.Size(bpf.AdoptwatchRecordHeader{}), int(unsafe.Sizeof(bpf.AdoptwatchRecordHeader{}))},
		"adopt":   {binary.Size(bpf.AdoptwatchAdoptRecord{}), int(unsafe.Sizeof(bpf.AdoptwatchAdoptRecord{}))},
		"task":    {binary.Size(bpf.AdoptwatchTaskRecord{}), int(unsafe.Sizeof(bpf.AdoptwatchTaskRecord{}))},
		"adoptee": {binary.Size(bpf.AdoptwatchAdopteeRecord{}), int(unsafe.Sizeof(bpf.AdoptwatchAdopteeRecord{}))},
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
