package loader

// Scoping: which processes the kernel side watches. The flag lives in the
// kernel (bpf/watch.bpf.h): a process's lineage entry, inherited at fork, or for
// processes that predate adoptwatch a "seed" user space leaves keyed by pid.
// Unwatched processes make no ring-buffer traffic at all.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/bpf"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// seedPasses bounds how often the /proc walk is repeated to catch processes
// forked while it ran.
const seedPasses = 5

// Names of the pinned maps under Options.PinDir.
const (
	pinLineages = "lineages"
	pinSeeds    = "seeds"
	pinSettings = "watch_settings"
)

// DefaultPinDir is where `adoptwatch --pin` pins the maps `adoptwatch unwatch` needs.
const DefaultPinDir = "/sys/fs/bpf/adoptwatch"

// watchMaps are the maps that hold the watch flags: enough to switch a tree off,
// from the Observer or from another process through the pinned maps.
type watchMaps struct {
	lineages, seeds, settings *ebpf.Map
}

// readProcs lists the running processes by pid.
func readProcs() (map[int]procfs.Stat, error) {
	all, err := procfs.All()
	if err != nil {
		return nil, err
	}
	out := make(map[int]procfs.Stat, len(all))
	for _, st := range all {
		out[int(st.PID)] = st
	}
	return out, nil
}

// subtree returns the roots that are running and all their descendants (by
// parent pid, as /proc shows them now).
func subtree(procs map[int]procfs.Stat, roots []int) map[int]procfs.Stat {
	children := map[int][]int{}
	for _, p := range procs {
		children[int(p.PPID)] = append(children[int(p.PPID)], int(p.PID))
	}
	out := map[int]procfs.Stat{}
	queue := []int{}
	for _, r := range roots {
		if p, ok := procs[r]; ok {
			out[r] = p
			queue = append(queue, r)
		}
	}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if _, seen := out[c]; !seen {
				out[c] = procs[c]
				queue = append(queue, c)
			}
		}
	}
	return out
}

func (w watchMaps) readSettings() (bpf.AdoptwatchSettings, error) {
	var s bpf.AdoptwatchSettings
	err := w.settings.Lookup(uint32(0), &s)
	return s, err
}

func (w watchMaps) writeSettings(s bpf.AdoptwatchSettings) error {
	return w.settings.Update(uint32(0), &s, ebpf.UpdateAny)
}

// useSeeds tells the kernel side to consult the seeds map from now on.
func (w watchMaps) useSeeds() error {
	s, err := w.readSettings()
	if err != nil {
		return fmt.Errorf("read watch settings: %w", err)
	}
	if s.SeedsInUse != 0 {
		return nil
	}
	s.SeedsInUse = 1
	return w.writeSettings(s)
}

func (w watchMaps) putSeed(p procfs.Stat, state bpf.AdoptwatchSeedState) error {
	s := bpf.AdoptwatchSeed{StartTicks: p.StartTicks(), State: uint32(state)}
	if err := w.seeds.Update(p.PID, &s, ebpf.UpdateAny); err != nil {
		if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.ENOMEM) {
			return fmt.Errorf("seed pid %d: the seeds map is full (%d processes): %w", p.PID, w.seeds.MaxEntries(), err)
		}
		return fmt.Errorf("seed pid %d: %w", p.PID, err)
	}
	return nil
}

// seedWatched marks the roots and their running descendants watched. It repeats
// the /proc walk until a pass finds nothing new, so that processes forked
// during the walk by a parent not yet seeded are not missed (those forked after
// their parent was seeded inherit the flag in the kernel).
func (w watchMaps) seedWatched(roots []int) (int, error) {
	if err := w.useSeeds(); err != nil {
		return 0, err
	}
	seeded := map[int]uint64{}
	for pass := 0; pass < seedPasses; pass++ {
		procs, err := readProcs()
		if err != nil {
			return 0, err
		}
		if pass == 0 {
			for _, r := range roots {
				if _, ok := procs[r]; !ok {
					return 0, fmt.Errorf("watch pid %d: no such process", r)
				}
			}
		}
		added := 0
		for pid, p := range subtree(procs, roots) {
			if t, ok := seeded[pid]; ok && t == p.StartTicks() {
				continue
			}
			if err := w.putSeed(p, bpf.AdoptwatchSeedStateSEED_WATCH); err != nil {
				return 0, err
			}
			seeded[pid] = p.StartTicks()
			added++
		}
		if added == 0 {
			break
		}
	}
	return len(seeded), nil
}

// unwatch switches pid's tree off: the process, its descendants as /proc shows
// them, and every process whose kernel lineage has it as an ancestor (daemons
// already adopted away). Their children inherit the flag in the kernel.
func (w watchMaps) unwatch(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("unwatch: invalid pid %d", pid)
	}
	settings, err := w.readSettings()
	if err != nil {
		return fmt.Errorf("read watch settings: %w", err)
	}
	// Two sweeps: a process forked while the first ran may have copied its
	// parent's entry before the parent was marked.
	for sweep := 0; sweep < 2; sweep++ {
		procs, err := readProcs()
		if err != nil {
			return err
		}
		target, ok := procs[pid]
		if !ok {
			return fmt.Errorf("unwatch: no process %d", pid)
		}
		sub := subtree(procs, []int{pid})
		marked, err := w.markLineages(sub, target)
		if err != nil {
			return err
		}
		// Processes without an entry predate adoptwatch: switch them off with a
		// seed, if they would otherwise count as watched.
		for p, info := range sub {
			if marked[p] {
				continue
			}
			var s bpf.AdoptwatchSeed
			seeded := w.seeds.Lookup(uint32(p), &s) == nil && s.StartTicks == info.StartTicks()
			if !seeded && settings.DefaultWatched == 0 {
				continue
			}
			if err := w.putSeed(info, bpf.AdoptwatchSeedStateSEED_UNWATCH); err != nil {
				return err
			}
			if err := w.useSeeds(); err != nil {
				return err
			}
		}
	}
	return nil
}

// markLineages sets WATCH_OFF in the entries of the subtree's processes and of
// every process descended from target according to its own lineage.
func (w watchMaps) markLineages(sub map[int]procfs.Stat, target procfs.Stat) (map[int]bool, error) {
	var (
		key   bpf.AdoptwatchProcKey
		value bpf.AdoptwatchLineage
		keys  []bpf.AdoptwatchProcKey
		vals  []bpf.AdoptwatchLineage
	)
	it := w.lineages.Iterate()
	for it.Next(&key, &value) {
		hit := false
		if p, ok := sub[int(key.Pid)]; ok && p.Same(procfs.ID{PID: key.Pid, Start: time.Duration(key.StartNs)}) {
			hit = true
		}
		for i := uint32(0); !hit && i < value.Len && i < uint32(len(value.Gen)); i++ {
			g := value.Gen[i]
			hit = target.Same(procfs.ID{PID: g.Pid, Start: time.Duration(g.StartNs)})
		}
		if hit && value.Watch&uint32(bpf.AdoptwatchWatchFlagWATCH_OFF) == 0 {
			value.Watch |= uint32(bpf.AdoptwatchWatchFlagWATCH_OFF)
			keys = append(keys, key)
			vals = append(vals, value)
		} else if hit {
			keys = append(keys, key)
			vals = append(vals, value) // already off: count it as marked
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate lineages: %w", err)
	}
	marked := map[int]bool{}
	for i := range keys {
		err := w.lineages.Update(&keys[i], &vals[i], ebpf.UpdateExist)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, fmt.Errorf("mark pid %d unwatched: %w", keys[i].Pid, err)
		}
		if err == nil {
			marked[int(keys[i].Pid)] = true
		}
	}
	return marked, nil
}

// Unwatch switches the tree of a running process off: it and its descendants
// (present and future) are no longer watched and send nothing. Already-adopted
// descendants that carry it in their kernel lineage are switched off too.
func (o *Observer) Unwatch(pid int) error {
	release, err := o.hold()
	if err != nil {
		return err
	}
	defer release()
	return o.watch.unwatch(pid)
}

// UnwatchPinned does what Observer.Unwatch does, from another process, through
// the maps a running adoptwatch pinned under pinDir (Options.PinDir). Pins
// whose watcher is gone are not touched: the error wraps ErrStalePins.
func UnwatchPinned(pinDir string, pid int) error {
	var w watchMaps
	for _, m := range []struct {
		dst  **ebpf.Map
		name string
	}{{&w.lineages, pinLineages}, {&w.seeds, pinSeeds}, {&w.settings, pinSettings}} {
		path := filepath.Join(pinDir, m.name)
		mp, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no running adoptwatch has pinned its maps at %s (start it with --pin): %w", pinDir, err)
			}
			return fmt.Errorf("open pinned map %s: %w", path, err)
		}
		defer mp.Close()
		*m.dst = mp
	}
	if _, err := PinOwner(pinDir); err != nil {
		return err
	}
	return w.unwatch(pid)
}

// pin pins the watch maps under dir and returns the directory's lock, held
// until unpin. dir's parent must be on a BPF file system (mount -t bpf bpf
// /sys/fs/bpf). Pins of a watcher that is still running are refused
// (ErrPinsLive); pins a watcher that is gone left behind are replaced, and
// stale says so.
func (w watchMaps) pin(dir string) (lock *os.File, stale bool, err error) {
	parent := filepath.Dir(dir)
	var fs unix.Statfs_t
	if err := unix.Statfs(parent, &fs); errors.Is(err, unix.ENOENT) {
		return nil, false, fmt.Errorf("pin maps under %s: its parent %s does not exist (the BPF file system is usually mounted at /sys/fs/bpf)", dir, parent)
	} else if err != nil {
		return nil, false, fmt.Errorf("pin maps under %s: %s: %w", dir, parent, err)
	}
	if fs.Type != unix.BPF_FS_MAGIC {
		return nil, false, fmt.Errorf("pin maps under %s: %s is not on a BPF file system (mount it: mount -t bpf bpf %s)",
			dir, parent, parent)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, false, fmt.Errorf("pin directory: %w", err)
	}
	lock, err = lockPinDir(dir)
	if err != nil {
		return nil, false, err
	}
	for name, m := range map[string]*ebpf.Map{pinLineages: w.lineages, pinSeeds: w.seeds, pinSettings: w.settings} {
		path := filepath.Join(dir, name)
		if err := os.Remove(path); err == nil {
			stale = true // nobody holds the lock: a watcher that did not close
		}
		if err := m.Pin(path); err != nil {
			w.unpin(dir, lock)
			return nil, false, fmt.Errorf("pin %s: %w", path, err)
		}
	}
	return lock, stale, nil
}

// unpin removes the pins that are still this watcher's maps (never what
// someone else pinned at those paths since), then the directory if empty,
// and only then lets go of the lock.
func (w watchMaps) unpin(dir string, lock *os.File) {
	for name, m := range map[string]*ebpf.Map{pinLineages: w.lineages, pinSeeds: w.seeds, pinSettings: w.settings} {
		if m == nil {
			continue
		}
		path := filepath.Join(dir, name)
		if sameMap(path, m) {
			os.Remove(path)
		}
	}
	os.Remove(dir) // only if empty
	if lock != nil {
		lock.Close()
	}
}

// sameMap reports whether the object pinned at path is the map m.
func sameMap(path string, m *ebpf.Map) bool {
	pinned, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return false
	}
	defer pinned.Close()
	a, errA := pinned.Info()
	b, errB := m.Info()
	if errA != nil || errB != nil {
		return false
	}
	idA, okA := a.ID()
	idB, okB := b.ID()
	return okA && okB && idA == idB
}

// cgroup2Mounts lists where cgroup v2 is mounted (/sys/fs/cgroup, or
// /sys/fs/cgroup/unified on hybrid systems).
func cgroup2Mounts() []string {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return []string{"/sys/fs/cgroup"}
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "cgroup2" {
			out = append(out, f[1])
		}
	}
	return out
}

// CgroupV2Mounts lists where cgroup v2 is mounted (for callers building paths).
func CgroupV2Mounts() []string { return cgroup2Mounts() }

// cgroupID resolves a cgroup v2 path (a directory under the cgroup2 mount, or a
// path relative to it such as /system.slice/x.service) to its id:
// the directory's inode number, as the kernel's kernfs node id. Its errors say
// what is wrong: no cgroup v2 mounted, a path that exists but is not a cgroup
// v2 directory (and what it is on), or no such cgroup anywhere.
func cgroupID(path string) (uint64, error) {
	if path == "" {
		return 0, errors.New("empty cgroup path")
	}
	mounts := cgroup2Mounts()
	if len(mounts) == 0 {
		return 0, fmt.Errorf("cgroup %s: no cgroup v2 file system is mounted (see /proc/mounts)", path)
	}
	where := strings.Join(mounts, " and ")
	// The path as given, if it exists.
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err == nil {
		if fs.Type == unix.CGROUP2_SUPER_MAGIC {
			return cgroupDir(path)
		}
		if !strings.HasPrefix(path, "/") {
			return 0, fmt.Errorf("cgroup %s: %s is on %s, not cgroup v2 (mounted at %s)", path, path, fsName(fs.Type), where)
		}
		// Perhaps a path relative to the cgroup v2 mount that also exists
		// elsewhere ("/tmp"): try those before saying what it is.
		for _, mnt := range mounts {
			if id, err := cgroupDir(filepath.Join(mnt, path)); err == nil {
				return id, nil
			}
		}
		return 0, fmt.Errorf("cgroup %s: %s is on %s, not cgroup v2 (mounted at %s)", path, path, fsName(fs.Type), where)
	} else if !errors.Is(err, unix.ENOENT) {
		return 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	for _, mnt := range mounts {
		p := filepath.Join(mnt, path)
		if _, err := os.Stat(p); err == nil {
			return cgroupDir(p)
		}
	}
	return 0, fmt.Errorf("cgroup %s: no such cgroup: neither %s nor a cgroup of that name under %s exists", path, path, where)
}

// cgroupDir is the id of a directory on cgroup v2.
func cgroupDir(p string) (uint64, error) {
	var fs unix.Statfs_t
	var st unix.Stat_t
	if err := unix.Statfs(p, &fs); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", p, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("cgroup %s: on %s, not cgroup v2", p, fsName(fs.Type))
	}
	if err := unix.Stat(p, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, fmt.Errorf("cgroup %s: a file in a cgroup, not a cgroup directory", p)
	}
	return st.Ino, nil
}

// fsName names a file system type for messages.
func fsName(magic int64) string {
	switch magic {
	case unix.CGROUP_SUPER_MAGIC:
		return "a cgroup v1 hierarchy"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.EXT4_SUPER_MAGIC:
		return "an ext2/3/4 file system"
	case unix.XFS_SUPER_MAGIC:
		return "XFS"
	case unix.BTRFS_SUPER_MAGIC:
		return "Btrfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.SYSFS_MAGIC:
		return "sysfs"
	case unix.PROC_SUPER_MAGIC:
		return "procfs"
	}
	return fmt.Sprintf("a file system of type %#x", magic)
}

// CheckCgroup says what is wrong with a --cgroup path, or nil if it names a
// cgroup v2 directory.
func CheckCgroup(path string) error {
	_, err := cgroupID(path)
	return err
}
