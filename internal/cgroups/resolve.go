package cgroups

import (
	"container/list"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// State says how far a cgroup id could be resolved.
type State string

const (
	// Resolved: Path names the cgroup.
	Resolved State = "resolved"
	// Gone: the cgroup has been removed since the kernel saw it. Cgroup ids
	// are 64-bit and never reused, so this is a fact, not a guess.
	Gone State = "gone"
	// Unresolved: not found yet, and no lookup could be made now (the rescan
	// budget was spent, or the hierarchy could not be read). Not cached.
	Unresolved State = "unresolved"
)

// Info is what an id resolved to.
type Info struct {
	ID      uint64
	State   State
	Path    string  // hierarchy path ("/system.slice/cron.service") when Resolved
	Context Context // what Path means (Describe), when Resolved
}

// Stats counts the resolver's work, so the bounds can be reported.
type Stats struct {
	Hits      uint64 // lookups answered from the cache
	Misses    uint64 // lookups not in the cache
	Evictions uint64 // entries dropped to keep the cache within its size
	Lookups   uint64 // by-handle lookups made (open_by_handle_at)
	Rescans   uint64 // walks of the whole hierarchy made
	Skipped   uint64 // misses left unresolved because a rescan was too recent
}

// fileidKernfs is the file-handle type kernfs (and so cgroupfs) hands out:
// the 64-bit node id, which is also the directory's inode number on 64-bit
// kernels and what bpf reads as task->cgroups->dfl_cgrp->kn->id.
const fileidKernfs = 0xfe

// Resolver maps cgroup v2 ids to paths through a bounded LRU cache. On a miss
// it asks the kernel directly (open_by_handle_at on the v2 mount, which needs
// CAP_DAC_READ_SEARCH); where that is refused it walks the hierarchy, at most
// once per MinRescan. Safe for concurrent use.
type Resolver struct {
	mount Mount
	// MinRescan is the least time between two walks of the hierarchy.
	MinRescan time.Duration

	mu       sync.Mutex
	size     int
	lru      *list.List // of *Info, most recent first
	byID     map[uint64]*list.Element
	mountFD  int  // mount.Dir, opened, for open_by_handle_at; -1 if unusable
	byHandle bool // open_by_handle_at works here
	lastScan time.Time
	stats    Stats
}

// NewResolver returns a resolver for the hierarchy at m that caches up to size ids.
func NewResolver(m Mount, size int) (*Resolver, error) {
	if size < 1 {
		size = 1
	}
	fd, err := unix.Open(m.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0) // not O_PATH: open_by_handle_at refuses it (EBADF)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: m.Dir, Err: err}
	}
	return &Resolver{
		mount: m, MinRescan: time.Second, size: size,
		lru: list.New(), byID: make(map[uint64]*list.Element),
		mountFD: fd, byHandle: true,
	}, nil
}

// Close releases the mount's file descriptor.
func (r *Resolver) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mountFD < 0 {
		return nil
	}
	err := unix.Close(r.mountFD)
	r.mountFD = -1
	return err
}

// Mount is the hierarchy this resolver reads.
func (r *Resolver) Mount() Mount { return r.mount }

// Stats returns the counters so far.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Lookup resolves id. Resolved and Gone answers are cached (ids are never
// reused); Unresolved ones are not, so a later lookup tries again.
func (r *Resolver) Lookup(id uint64) Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byID[id]; ok {
		r.stats.Hits++
		r.lru.MoveToFront(e)
		return *e.Value.(*Info)
	}
	r.stats.Misses++
	info := r.lookupHandle(id)
	if info.State == Unresolved {
		info = r.rescan(id)
	}
	if info.State != Unresolved {
		r.add(info)
	}
	return info
}

// add caches info, evicting the least recently used entry when full.
func (r *Resolver) add(info Info) {
	if e, ok := r.byID[info.ID]; ok {
		e.Value = &info
		r.lru.MoveToFront(e)
		return
	}
	for r.lru.Len() >= r.size {
		old := r.lru.Back()
		r.lru.Remove(old)
		delete(r.byID, old.Value.(*Info).ID)
		r.stats.Evictions++
	}
	r.byID[info.ID] = r.lru.PushFront(&info)
}

func (r *Resolver) resolved(id uint64, path string) Info {
	return Info{ID: id, State: Resolved, Path: path, Context: Describe(path)}
}

// lookupHandle asks the kernel for the directory with node id. It returns
// Unresolved when this way is not available, and switches itself off then.
func (r *Resolver) lookupHandle(id uint64) Info {
	if !r.byHandle || r.mountFD < 0 {
		return Info{ID: id, State: Unresolved}
	}
	r.stats.Lookups++
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], id)
	fd, err := unix.OpenByHandleAt(r.mountFD, unix.NewFileHandle(fileidKernfs, b[:]), unix.O_PATH|unix.O_CLOEXEC)
	switch {
	case errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT):
		return Info{ID: id, State: Gone}
	case err != nil:
		// EPERM without CAP_DAC_READ_SEARCH, or a kernel that will not decode
		// kernfs handles: walk the tree from now on.
		r.byHandle = false
		return Info{ID: id, State: Unresolved}
	}
	defer unix.Close(fd)
	dir, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return Info{ID: id, State: Unresolved}
	}
	p, ok := r.mount.CgroupPath(dir)
	if !ok {
		return Info{ID: id, State: Unresolved}
	}
	return r.resolved(id, p)
}

// rescan walks the hierarchy for id, unless the last walk was less than
// MinRescan ago. A walk that does not find id proves it gone, since it began
// after the kernel saw the id. Other directories found fill free cache slots
// (never evicting), so a burst of new cgroups costs one walk.
func (r *Resolver) rescan(id uint64) Info {
	now := time.Now()
	if !r.lastScan.IsZero() && now.Sub(r.lastScan) < r.MinRescan {
		r.stats.Skipped++
		return Info{ID: id, State: Unresolved}
	}
	r.lastScan = now
	r.stats.Rescans++
	found := Info{ID: id, State: Gone}
	err := Walk(r.mount, func(cid uint64, path string) {
		if cid == id {
			found = r.resolved(id, path)
		} else if _, ok := r.byID[cid]; !ok && r.lru.Len() < r.size-1 {
			r.add(r.resolved(cid, path))
		}
	})
	if err != nil && found.State != Resolved {
		return Info{ID: id, State: Unresolved}
	}
	return found
}

// Walk calls fn for every cgroup directory under m (the root included) with
// its id and hierarchy path. Directories removed during the walk are skipped.
func Walk(m Mount, fn func(id uint64, path string)) error {
	return filepath.WalkDir(m.Dir, func(dir string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && dir != m.Dir {
				return nil // removed while we walked
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if p, ok := m.CgroupPath(dir); ok {
			fn(st.Ino, p)
		}
		return nil
	})
}

// ID returns the id of the cgroup directory dir (its inode number).
func ID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	return st.Ino, nil
}
