package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// observer watches one workload run at a time: begin before it starts, end
// once it has finished (cycles: what the workload did), stop when the
// configuration's round is over.
type observer interface {
	begin(workloadPID int) error
	end(cycles int) (segment, error)
	stop()
}

// procObserver is one of adoptbench's own observer processes (__observer).
type procObserver struct{ p *proc }

func (o procObserver) begin(pid int) error {
	if err := o.p.send(fmt.Sprintf("begin %d", pid)); err != nil {
		return err
	}
	if l, err := o.p.line(); err != nil || l != "ok" {
		return fmt.Errorf("observer: %q %v", l, err)
	}
	return nil
}

func (o procObserver) end(int) (segment, error) {
	var seg segment
	if err := o.p.send("end"); err != nil {
		return seg, err
	}
	err := o.p.json(&seg)
	return seg, err
}

func (o procObserver) stop() { o.p.stop() }

// extObserver is an external tool (bpftrace, forkstat): only its CPU is known.
type extObserver struct {
	cmd  *exec.Cmd
	cpu0 int64
}

func (o *extObserver) begin(int) error { o.cpu0 = procCPU(o.cmd); return nil }

func (o *extObserver) end(int) (segment, error) {
	return segment{CPUNanos: procCPU(o.cmd) - o.cpu0}, nil
}

func (o *extObserver) stop() { o.cmd.Process.Signal(unix.SIGINT); o.cmd.Wait() } // our own child, by pid

// watcherSpec is a configuration of the adoptwatch binary itself.
type watcherSpec struct {
	path string
	args []string
	json bool // --json to a pipe whose adoption lines are counted; else text to /dev/null
}

// watcherObserver runs the real adoptwatch command: its CPU is read from
// /proc/PID/stat (utime+stime) around each run, and in JSON mode the adoptions
// it printed into the workload are counted.
type watcherObserver struct {
	spec    watcherSpec
	cmd     *exec.Cmd
	done    chan struct{} // closed once adoptwatch has exited and been reaped
	dir     string
	stderr  *lockedBuffer
	cpu0    int64
	targets atomic.Pointer[[]int64] // workload pids whose adoptions count
	counted atomic.Uint64           // adoption lines naming a target as the new parent
	lines   atomic.Uint64           // every adoption line
}

func startWatcher(spec watcherSpec) (*watcherObserver, error) {
	dir, err := os.MkdirTemp("", "adoptbench-watch-")
	if err != nil {
		return nil, err
	}
	ready := filepath.Join(dir, "ready")
	args := append([]string{"--ready-file", ready}, spec.args...)
	if spec.json {
		args = append(args, "--json")
	}
	o := &watcherObserver{spec: spec, dir: dir, stderr: &lockedBuffer{}, done: make(chan struct{})}
	o.cmd = exec.Command(spec.path, args...)
	o.cmd.Stderr = o.stderr
	var stdout io.ReadCloser
	if spec.json {
		if stdout, err = o.cmd.StdoutPipe(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	} else {
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		defer null.Close()
		o.cmd.Stdout = null
	}
	if err := o.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() {
		if stdout != nil {
			o.count(stdout)
		}
		o.cmd.Wait() // after the last read of stdout
		close(o.done)
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return o, nil
		}
		select {
		case <-o.done:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("adoptwatch exited before it was ready: %s", o.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			o.stop()
			return nil, errors.New("adoptwatch did not get ready in 30 s")
		}
	}
}

// count reads JSON lines; the schema puts new_parent's pid right after its key.
func (o *watcherObserver) count(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	key := []byte(`"new_parent":{"pid":`)
	for sc.Scan() {
		l := sc.Bytes()
		if !bytes.HasPrefix(l, []byte(`{"event":"adopt"`)) {
			continue
		}
		o.lines.Add(1)
		i := bytes.Index(l, key)
		if i < 0 {
			continue
		}
		rest := l[i+len(key):]
		if j := bytes.IndexByte(rest, ','); j > 0 {
			if pid, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil && o.isTarget(pid) {
				o.counted.Add(1)
			}
		}
	}
}

func (o *watcherObserver) begin(pid int) error { return o.beginAll([]int{pid}) }

// beginAll begins a run of several workloads at once (the high-rate run).
func (o *watcherObserver) beginAll(pids []int) error {
	targets := make([]int64, len(pids))
	for i, pid := range pids {
		targets[i] = int64(pid)
	}
	o.targets.Store(&targets)
	o.counted.Store(0)
	o.cpu0 = procCPU(o.cmd)
	return nil
}

func (o *watcherObserver) isTarget(pid int64) bool {
	if t := o.targets.Load(); t != nil {
		return slices.Contains(*t, pid)
	}
	return false
}

func (o *watcherObserver) end(cycles int) (segment, error) {
	var seg segment
	if o.spec.json {
		// Until every adoption of the run has been printed (2 s at most).
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && o.counted.Load() < uint64(cycles); {
			time.Sleep(5 * time.Millisecond)
		}
		seg.Adoptions = int(o.counted.Load())
		seg.Events = o.counted.Load()
	} else {
		// Text goes to /dev/null: let the last records be printed, and take
		// the workload's count (the storm checks that each is reported once).
		time.Sleep(100 * time.Millisecond)
		seg.Adoptions = cycles
	}
	seg.CPUNanos = procCPU(o.cmd) - o.cpu0
	select {
	case <-o.done:
		return seg, fmt.Errorf("adoptwatch exited: %s", o.stderr.String())
	default:
	}
	return seg, nil
}

func (o *watcherObserver) stop() {
	select {
	case <-o.done:
	default:
		o.cmd.Process.Signal(unix.SIGTERM) // our own child, by pid
		select {
		case <-o.done:
		case <-time.After(10 * time.Second):
			o.cmd.Process.Kill()
			<-o.done
		}
	}
	os.RemoveAll(o.dir)
}

// warnings is what adoptwatch said on stderr beyond its ready line.
func (o *watcherObserver) warnings() string {
	var out []byte
	for _, l := range bytes.Split([]byte(o.stderr.String()), []byte("\n")) {
		if len(l) > 0 && !bytes.Contains(l, []byte("ready:")) {
			out = append(append(out, l...), '\n')
		}
	}
	return string(out)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		return len(p), nil // bounded: the first 64 KiB tell what went wrong
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
