package cgroups

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TrackerStats counts what a Tracker did and what its bounds dropped.
type TrackerStats struct {
	Selected      int    // cgroups chosen now
	Dropped       uint64 // chosen cgroups the add function refused (its map full), each counted once per walk
	WatchFailures uint64 // directories inotify would not watch (max_user_watches): periodic rescans cover them
	Overflows     uint64 // inotify queue overflows, each followed by a rescan
	Rescans       uint64 // walks of the whole hierarchy
}

// Tracker keeps the set of cgroups a Selector chooses current as cgroups
// come and go, calling add and remove for each change.
//
// It watches every directory of the v2 hierarchy with inotify rather than
// rescanning on a timer: a runtime creates a container's cgroup (mkdir) just
// before it moves the container's first process in, and inotify reports the
// mkdir at once, so the id usually reaches the kernel's map before anything
// runs there; a timer would miss the first seconds of every container, which
// is when daemons start. One watch per cgroup directory is cheap (a few
// thousand on a busy host). Where inotify falls short (watch limit reached,
// queue overflow) it falls back to walks: once on overflow, and every
// RescanInterval while some directory could not be watched.
type Tracker struct {
	// RescanInterval is how often the hierarchy is walked while some
	// directory could not be watched.
	RescanInterval time.Duration

	m      Mount
	sel    Selector
	add    func(id uint64, path string) error
	remove func(id uint64, path string)

	file *os.File // the inotify instance
	fd   int

	mu       sync.Mutex
	wds      map[int32]string  // watch descriptor -> directory
	selected map[string]uint64 // directory -> id of the cgroups chosen
	refused  map[string]bool   // chosen, but add refused them: counted once, retried at rescans
	stats    TrackerStats
}

const trackMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_ONLYDIR

// NewTracker walks the hierarchy once, calling add for every chosen cgroup,
// and sets up the watches; Run then follows changes.
func NewTracker(m Mount, sel Selector, add func(id uint64, path string) error, remove func(id uint64, path string)) (*Tracker, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	t := &Tracker{
		RescanInterval: 10 * time.Second,
		m:              m, sel: sel, add: add, remove: remove,
		file: os.NewFile(uintptr(fd), "inotify"), fd: fd,
		wds: make(map[int32]string), selected: make(map[string]uint64), refused: make(map[string]bool),
	}
	t.mu.Lock()
	err = t.scan(m.Dir)
	t.mu.Unlock()
	if err != nil {
		t.file.Close()
		return nil, err
	}
	return t, nil
}

// Stats returns the counters so far.
func (t *Tracker) Stats() TrackerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Selected = len(t.selected)
	return s
}

// Selected returns the chosen cgroups now: id -> hierarchy path.
func (t *Tracker) Selected() map[uint64]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[uint64]string, len(t.selected))
	for dir, id := range t.selected {
		p, _ := t.m.CgroupPath(dir)
		out[id] = p
	}
	return out
}

// Close stops Run and releases the inotify instance.
func (t *Tracker) Close() error { return t.file.Close() }

// Run follows cgroup creation and removal until Close.
func (t *Tracker) Run() error {
	buf := make([]byte, 64<<10)
	for {
		t.mu.Lock()
		degraded := t.stats.WatchFailures > 0
		t.mu.Unlock()
		if degraded {
			t.file.SetReadDeadline(time.Now().Add(t.RescanInterval))
		} else {
			t.file.SetReadDeadline(time.Time{})
		}
		n, err := t.file.Read(buf)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.mu.Lock()
			t.rescan()
			t.mu.Unlock()
			continue
		case errors.Is(err, os.ErrClosed):
			return nil
		case err != nil:
			return err
		}
		t.mu.Lock()
		t.handle(buf[:n])
		t.mu.Unlock()
	}
}

// handle processes a buffer of inotify events (t.mu held).
func (t *Tracker) handle(b []byte) {
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return
		}
		name := string(b[unix.SizeofInotifyEvent:end])
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		b = b[end:]

		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			t.stats.Overflows++
			t.rescan()
			continue
		}
		if ev.Mask&unix.IN_IGNORED != 0 {
			delete(t.wds, ev.Wd)
			continue
		}
		parent, ok := t.wds[ev.Wd]
		if !ok || ev.Mask&unix.IN_ISDIR == 0 || name == "" {
			continue
		}
		dir := filepath.Join(parent, name)
		switch {
		case ev.Mask&unix.IN_CREATE != 0:
			t.scan(dir) // also what was created inside before the watch was up
		case ev.Mask&unix.IN_DELETE != 0:
			t.drop(dir)
		case ev.Mask&(unix.IN_MOVED_FROM|unix.IN_MOVED_TO) != 0:
			t.rescan() // a renamed cgroup: every path beneath it changed
		}
	}
}

// drop forgets a removed directory (t.mu held).
func (t *Tracker) drop(dir string) {
	delete(t.refused, dir)
	if id, ok := t.selected[dir]; ok {
		delete(t.selected, dir)
		if t.remove != nil {
			p, _ := t.m.CgroupPath(dir)
			t.remove(id, p)
		}
	}
}

// rescan walks the whole hierarchy again and drops chosen cgroups no longer
// there (t.mu held).
func (t *Tracker) rescan() {
	t.stats.Rescans++
	t.stats.WatchFailures = 0
	clear(t.refused) // the map may have room now
	t.scan(t.m.Dir)
	for dir, id := range t.selected {
		if cur, err := ID(dir); err != nil || cur != id {
			t.drop(dir)
		}
	}
}

// scan watches dir and everything beneath it, choosing what the selector
// chooses (t.mu held).
func (t *Tracker) scan(top string) error {
	return filepath.WalkDir(top, func(dir string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && dir != t.m.Dir {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		wd, err := unix.InotifyAddWatch(t.fd, dir, trackMask)
		switch {
		case err == nil:
			t.wds[int32(wd)] = dir
		case errors.Is(err, unix.ENOENT):
			return fs.SkipDir
		default:
			t.stats.WatchFailures++
		}
		t.consider(dir)
		return nil
	})
}

// consider chooses dir if the selector does (t.mu held).
func (t *Tracker) consider(dir string) {
	if _, ok := t.selected[dir]; ok || t.refused[dir] {
		return
	}
	p, ok := t.m.CgroupPath(dir)
	if !ok || !t.sel.Selects(p) {
		return
	}
	id, err := ID(dir)
	if err != nil {
		return
	}
	if err := t.add(id, p); err != nil {
		if !t.refused[dir] {
			t.stats.Dropped++
		}
		t.refused[dir] = true
		return
	}
	t.selected[dir] = id
}
