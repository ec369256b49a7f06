//go:build linux

// Package smoketest proves, inside each test VM, what every integration test
// takes for granted: BPF programs load and attach to tracepoints, PID 1 is
// vmtest's init, and it reaps orphans while tests run. Outside a VM the tests
// that need root or our init skip with the reason.
package smoketest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// inVM is set by vmtest's init in every guest.
var inVM = os.Getenv("ADOPTWATCH_IN_VM") == "1"

func TestMain(m *testing.M) {
	// The binary re-executes itself to play the processes of a double fork.
	switch os.Getenv("SMOKETEST_ROLE") {
	case "middle":
		middle()
		return
	case "daemon":
		time.Sleep(60 * time.Second)
		return
	}
	os.Exit(m.Run())
}

// needBPF fails on a BPF error inside a test VM, whose whole point is that
// BPF works there. Outside one (no root, tracefs not mounted, lockdown) the
// test skips and says why.
func needBPF(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if !inVM {
		t.Skipf("outside a test VM (ADOPTWATCH_IN_VM unset), BPF setup failed: %v", err)
	}
	t.Fatal(err)
}

func TestSocketFilterLoads(t *testing.T) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, 0, asm.DWord), asm.Return()},
		License:      "GPL",
	})
	needBPF(t, err)
	prog.Close()
}

// TestTracepointCounts attaches a counter to sched_process_exit (which needs
// tracefs and perf events in the guest) and checks it sees a child exit.
func TestTracepointCounts(t *testing.T) {
	counter, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	needBPF(t, err)
	defer counter.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.TracePoint,
		Instructions: asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word), // key 0 on the stack
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, counter.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
		License: "GPL",
	})
	needBPF(t, err)
	defer prog.Close()
	tp, err := link.Tracepoint("sched", "sched_process_exit", prog, nil)
	needBPF(t, err)
	defer tp.Close()

	if err := exec.Command(os.Args[0], "-test.run=^$").Run(); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := counter.Lookup(uint32(0), &n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("sched_process_exit never fired for a child that exited")
	}
	t.Logf("sched_process_exit ran %d times", n)
}

func TestInitIsVminit(t *testing.T) {
	if !inVM {
		t.Skip("PID 1 is the machine's own init outside a test VM")
	}
	exe, err := os.Readlink("/proc/1/exe")
	if err != nil {
		t.Fatal(err)
	}
	if exe != "/init" {
		t.Fatalf("PID 1 runs %s, want /init", exe)
	}
}

// TestOrphanReaped double-forks: the middle process exits, so the daemon is
// re-parented to PID 1, which must also reap it once it dies.
func TestOrphanReaped(t *testing.T) {
	if !inVM {
		t.Skip("needs vmtest's init as PID 1")
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SMOKETEST_ROLE=middle")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	daemon, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("middle said %q", out)
	}
	if ppid := parentOf(daemon); ppid != 1 {
		t.Fatalf("daemon %d has parent %d after its parent exited, want 1", daemon, ppid)
	}
	if err := syscallKill(daemon); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", daemon)); errors.Is(err, os.ErrNotExist) {
			return // gone: PID 1 reaped it
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon %d still in /proc (a zombie?) 10s after it was killed: PID 1 does not reap", daemon)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func middle() {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SMOKETEST_ROLE=daemon")
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(cmd.Process.Pid)
	os.Exit(0) // without waiting: the daemon is orphaned
}

// parentOf reads the PPid line of /proc/<pid>/status.
func parentOf(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

func syscallKill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
