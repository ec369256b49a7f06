package cgroups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// testMount returns the v2 mount, skipping where cgroups cannot be made.
func testMount(t *testing.T) Mount {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	m, err := FindMount()
	if errors.Is(err, ErrNoV2) {
		t.Skip("no cgroup v2 hierarchy mounted here")
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// makeCgroup creates a cgroup below the mount and removes it at the end.
func makeCgroup(t *testing.T, m Mount, rel string) (dir, path string) {
	t.Helper()
	dir = filepath.Join(m.Dir, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(m.Dir, strings.SplitN(rel, "/", 2)[0])
	t.Cleanup(func() { removeTree(top) })
	p, ok := m.CgroupPath(dir)
	if !ok {
		t.Fatalf("%s is not under %+v", dir, m)
	}
	return dir, p
}

// removeTree removes empty cgroup directories, deepest first.
func removeTree(dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Remove(dirs[i])
	}
}

func testRoot() string { return fmt.Sprintf("adoptwatch-cgtest-%d", os.Getpid()) }

// TestIDIsInodeAndHandle checks, on this kernel, that a cgroup's id as user
// space can read it (the directory's inode) is the kernfs file handle's id.
func TestIDIsInodeAndHandle(t *testing.T) {
	m := testMount(t)
	dir, _ := makeCgroup(t, m, testRoot()+"/a")
	ino, err := ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		t.Fatalf("name_to_handle_at: %v", err)
	}
	if h.Type() != fileidKernfs || h.Size() != 8 {
		t.Fatalf("handle type %#x size %d, want kernfs (%#x) and 8 bytes", h.Type(), h.Size(), fileidKernfs)
	}
	if got := binary.NativeEndian.Uint64(h.Bytes()); got != ino {
		t.Errorf("handle id %d, inode %d", got, ino)
	}
}

// TestIDIsKernelCgroupID checks the id against what a BPF program reads:
// bpf_get_current_cgroup_id() is task->cgroups->dfl_cgrp->kn->id. The test
// process is moved into a fresh cgroup for the run and moved back.
func TestIDIsKernelCgroupID(t *testing.T) {
	m := testMount(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.RawTracepoint,
		Instructions: asm.Instructions{
			asm.FnGetCurrentCgroupId.Call(),
			asm.Mov.Reg(asm.R6, asm.R0),
			asm.RSh.Imm(asm.R0, 32), // the high half first: Run returns 32 bits
			asm.JEq.Imm(asm.R0, 0, "low"),
			asm.Mov.Imm(asm.R0, -1), // an id beyond 32 bits: report it as such
			asm.Return(),
			asm.Mov.Reg(asm.R0, asm.R6).WithSymbol("low"),
			asm.Return(),
		},
		License: "GPL",
	})
	if err != nil {
		t.Skipf("this kernel will not load a raw_tp program calling bpf_get_current_cgroup_id: %v", err)
	}
	defer prog.Close()

	dir, _ := makeCgroup(t, m, testRoot()+"/self")
	want, err := ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	origPath := ""
	for _, l := range strings.Split(string(orig), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			origPath = p
		}
	}
	origDir, ok := m.HostPath(origPath)
	if !ok {
		t.Fatalf("our own cgroup %q is not under %+v", origPath, m)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0); err != nil {
		t.Fatal(err)
	}
	ret, runErr := prog.Run(&ebpf.RunOptions{})
	if err := os.WriteFile(filepath.Join(origDir, "cgroup.procs"), pid, 0); err != nil {
		t.Fatalf("moving back to %s: %v", origDir, err)
	}
	if runErr != nil {
		t.Skipf("BPF_PROG_TEST_RUN of raw_tp refused here: %v", runErr)
	}
	if uint64(ret) != want {
		t.Errorf("bpf_get_current_cgroup_id() = %d, inode of %s = %d", ret, dir, want)
	}
}

func TestResolverByHandle(t *testing.T) {
	m := testMount(t)
	dirA, pathA := makeCgroup(t, m, testRoot()+"/system.slice/forker.service")
	idA, _ := ID(dirA)
	r, err := NewResolver(m, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	got := r.Lookup(idA)
	if !r.byHandle {
		t.Skip("this kernel refuses open_by_handle_at on the cgroup v2 mount: the walk (TestResolverRescan) is used instead")
	}
	if got.State != Resolved || got.Path != pathA || got.Context.Unit != "forker.service" {
		t.Fatalf("Lookup = %+v, want %s resolved with unit forker.service", got, pathA)
	}
	if s := r.Stats(); s.Lookups != 1 || s.Rescans != 0 || s.Misses != 1 {
		t.Errorf("stats after a by-handle miss: %+v", s)
	}
	if again := r.Lookup(idA); again != got || r.Stats().Hits != 1 {
		t.Errorf("second lookup %+v (stats %+v), want a cache hit", again, r.Stats())
	}

	dirB, _ := makeCgroup(t, m, testRoot()+"/gone")
	idB, _ := ID(dirB)
	if err := os.Remove(dirB); err != nil {
		t.Fatal(err)
	}
	if got := r.Lookup(idB); got.State != Gone || got.Path != "" {
		t.Errorf("removed cgroup: %+v, want gone", got)
	}
	if got := r.Lookup(idB); got.State != Gone || r.Stats().Hits != 2 {
		t.Errorf("gone is cached: %+v, stats %+v", got, r.Stats())
	}
}

func TestResolverEvicts(t *testing.T) {
	m := testMount(t)
	r, err := NewResolver(m, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var ids []uint64
	for i := range 3 {
		dir, _ := makeCgroup(t, m, fmt.Sprintf("%s/e%d", testRoot(), i))
		id, _ := ID(dir)
		ids = append(ids, id)
		if got := r.Lookup(id); got.State != Resolved {
			t.Fatalf("lookup %d: %+v", i, got)
		}
	}
	if s := r.Stats(); s.Evictions != 1 {
		t.Errorf("evictions %d, want 1 (size 2, 3 ids)", s.Evictions)
	}
	r.Lookup(ids[0]) // evicted: a miss again
	if s := r.Stats(); s.Hits != 0 || s.Misses != 4 || s.Evictions != 2 {
		t.Errorf("stats %+v, want 0 hits, 4 misses, 2 evictions", s)
	}
}

// TestResolverRescan exercises the walk used where open_by_handle_at is not
// allowed: found, rate-limited, and gone only after a walk that missed it.
func TestResolverRescan(t *testing.T) {
	m := testMount(t)
	r, err := NewResolver(m, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.byHandle = false

	dirA, pathA := makeCgroup(t, m, testRoot()+"/user.slice/user-1000.slice/user@1000.service/app.slice/x.service")
	idA, _ := ID(dirA)
	if got := r.Lookup(idA); got.State != Resolved || got.Path != pathA || got.Context.UserManager != "user@1000.service" {
		t.Fatalf("Lookup by walk = %+v, want %s", got, pathA)
	}
	dirB, pathB := makeCgroup(t, m, testRoot()+"/late")
	idB, _ := ID(dirB)
	r.MinRescan = 1 << 62
	if got := r.Lookup(idB); got.State != Unresolved {
		t.Errorf("lookup within the rescan interval = %+v, want unresolved", got)
	}
	if s := r.Stats(); s.Rescans != 1 || s.Skipped != 1 || s.Lookups != 0 {
		t.Errorf("stats %+v, want 1 rescan, 1 skipped, no handle lookups", s)
	}
	r.MinRescan = 0
	if got := r.Lookup(idB); got.State != Resolved || got.Path != pathB {
		t.Errorf("lookup after the interval = %+v, want %s", got, pathB)
	}
	dirC, _ := makeCgroup(t, m, testRoot()+"/removed")
	idC, _ := ID(dirC)
	os.Remove(dirC)
	if got := r.Lookup(idC); got.State != Gone {
		t.Errorf("removed cgroup by walk = %+v, want gone", got)
	}
}
