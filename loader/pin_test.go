package loader_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/testsupport"
	"github.com/adoptwatch/adoptwatch/loader"
)

// privateBPFFS mounts a BPF file system of the test's own, so nothing
// machine-wide changes.
func privateBPFFS(t *testing.T) string {
	t.Helper()
	fs := t.TempDir()
	if err := unix.Mount("bpf", fs, "bpf", 0, ""); err != nil {
		t.Skipf("cannot mount a BPF file system: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(fs, unix.MNT_DETACH) })
	return fs
}

func pinnedID(t *testing.T, path string) ebpf.MapID {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

// pinDummies pins small maps of its own under the pin names, as pins a
// watcher left when it was killed look to the next one.
func pinDummies(t *testing.T, dir string, names ...string) map[string]ebpf.MapID {
	t.Helper()
	os.MkdirAll(dir, 0o700)
	ids := map[string]ebpf.MapID{}
	for _, name := range names {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := m.Pin(path); err != nil {
			t.Fatal(err)
		}
		m.Close() // the pin keeps it
		ids[name] = pinnedID(t, path)
	}
	return ids
}

var pinNames = []string{"lineages", "seeds", "watch_settings"}

// TestPinsOneOwner: a second watcher on the same pin directory is refused while
// the first runs, and the first's pins stay its own; on exit a watcher removes
// only the pins that are still its maps.
func TestPinsOneOwner(t *testing.T) {
	testsupport.RequireBPF(t)
	dir := filepath.Join(privateBPFFS(t), "adoptwatch")
	first, err := loader.Open(loader.Options{PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if first.ReplacedStalePins {
		t.Errorf("fresh directory reported as stale pins")
	}
	ids := map[string]ebpf.MapID{}
	for _, name := range pinNames {
		ids[name] = pinnedID(t, filepath.Join(dir, name))
	}
	second, err := loader.Open(loader.Options{PinDir: dir})
	if err == nil {
		second.Close()
		t.Fatal("a second watcher took over the pins of a running one")
	}
	if !errors.Is(err, loader.ErrPinsLive) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("second watcher: %v, want ErrPinsLive naming pid %d", err, os.Getpid())
	}
	for _, name := range pinNames {
		if id := pinnedID(t, filepath.Join(dir, name)); id != ids[name] {
			t.Errorf("%s: pinned map %d after the refused watcher, was %d", name, id, ids[name])
		}
	}
	if pid, err := loader.PinOwner(dir); err != nil || pid != os.Getpid() {
		t.Errorf("PinOwner = %d, %v; want this process %d", pid, err, os.Getpid())
	}
	if err := loader.UnwatchPinned(dir, os.Getpid()); err != nil {
		t.Errorf("UnwatchPinned with a live watcher: %v", err)
	}

	// Someone pins another map at one of the paths: it is not ours to remove.
	os.Remove(filepath.Join(dir, "seeds"))
	foreign := pinDummies(t, dir, "seeds")
	first.Close()
	for _, name := range []string{"lineages", "watch_settings"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still pinned after Close: %v", name, err)
		}
	}
	if id := pinnedID(t, filepath.Join(dir, "seeds")); id != foreign["seeds"] {
		t.Errorf("the foreign pin was replaced or removed")
	}
}

// TestStalePins: pins with no running watcher are stale: UnwatchPinned says
// so and changes nothing; the next watcher replaces them and says so.
func TestStalePins(t *testing.T) {
	testsupport.RequireBPF(t)
	dir := filepath.Join(privateBPFFS(t), "adoptwatch")
	stale := pinDummies(t, dir, pinNames...)
	err := loader.UnwatchPinned(dir, os.Getpid())
	if !errors.Is(err, loader.ErrStalePins) {
		t.Errorf("UnwatchPinned on stale pins: %v, want ErrStalePins", err)
	}
	if _, err := loader.PinOwner(dir); !errors.Is(err, loader.ErrStalePins) {
		t.Errorf("PinOwner on stale pins: %v", err)
	}
	obs, err := loader.Open(loader.Options{PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	if !obs.ReplacedStalePins {
		t.Errorf("stale pins replaced without saying so")
	}
	for _, name := range pinNames {
		if id := pinnedID(t, filepath.Join(dir, name)); id == stale[name] {
			t.Errorf("%s: still the stale map", name)
		}
	}
	if err := loader.UnwatchPinned(dir, os.Getpid()); err != nil {
		t.Errorf("UnwatchPinned after the takeover: %v", err)
	}
	obs.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory left after Close: %v", err)
	}
}

// TestPinDirErrors: what is wrong with a pin directory is said plainly.
func TestPinDirErrors(t *testing.T) {
	testsupport.RequireBPF(t)
	_, err := loader.Open(loader.Options{PinDir: filepath.Join(t.TempDir(), "missing", "adoptwatch")})
	if err == nil || !strings.Contains(err.Error(), "missing does not exist") {
		t.Errorf("pin dir under a missing parent: %v", err)
	}
	_, err = loader.Open(loader.Options{PinDir: filepath.Join(t.TempDir(), "adoptwatch")})
	if err == nil || !strings.Contains(err.Error(), "not on a BPF file system") {
		t.Errorf("pin dir outside bpffs: %v", err)
	}
}
