// Package qemu boots a kernel and initramfs in qemu-system-x86_64 under TCG
// (software emulation: a KVM boot hung on the development machines) and
// collects the serial console. The VM never outlives its deadline or its
// caller's context: qemu runs in its own process group, which is killed.
package qemu

import (
	"context"
	"fmt"
	"github.com/adoptwatch/adoptwatch/internal/syncbuf"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// Config is one boot.
type Config struct {
	Accel   string // qemu -accel value; DefaultAccel if empty
	Kernel  string
	Initrd  string
	Append  string // kernel command line
	MemMB   int
	CPUs    int
	Timeout time.Duration
	LogPath string    // the whole console is saved here
	Tee     io.Writer // optional live copy of the console
}

// Result is what the boot produced.
type Result struct {
	Console  string
	TimedOut bool
	Duration time.Duration
	Err      error // qemu failed to start or exited with an error
}

// DefaultAccel is TCG with all vCPUs in one host thread. Multi-threaded TCG
// crashed 6.12 guests ("Oops: int3" in __schedule) and hung a 5.10 guest when
// a test attached a tracepoint: the kernel patches live code (text_poke_bp)
// while the other vCPU runs it, which MTTCG does not handle reliably. A single
// thread keeps the guest SMP (two vCPUs, interleaved) and takes one host core,
// so two VMs can run side by side on two cores.
const DefaultAccel = "tcg,thread=single"

// Args returns qemu's command line for cfg.
func Args(cfg Config) []string {
	accel := cfg.Accel
	if accel == "" {
		accel = DefaultAccel
	}
	return []string{
		"-accel", accel,
		"-m", strconv.Itoa(cfg.MemMB),
		"-smp", strconv.Itoa(cfg.CPUs),
		"-nographic", "-no-reboot",
		"-nic", "none", // no network: the tests need none, and no PXE ROM to load
		"-kernel", cfg.Kernel,
		"-initrd", cfg.Initrd,
		"-append", cfg.Append,
	}
}

// Boot runs the VM until it powers off, the timeout passes or ctx ends.
func Boot(ctx context.Context, cfg Config) Result {
	start := time.Now()
	logf, err := os.Create(cfg.LogPath)
	if err != nil {
		return Result{Err: err}
	}
	defer logf.Close()
	var console syncbuf.Buffer
	var out io.Writer = io.MultiWriter(logf, &console)
	if cfg.Tee != nil {
		out = io.MultiWriter(out, cfg.Tee)
	}

	cmd := exec.Command("qemu-system-x86_64", Args(cfg)...)
	cmd.Stdin = nil // /dev/null: qemu must not put a terminal in raw mode
	cmd.Stdout = out
	cmd.Stderr = out
	// Own process group, so one kill reaches qemu and anything it forks;
	// Pdeathsig for when this program dies without the chance to kill it.
	// Pdeathsig fires when the starting thread exits, so stay on it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return Result{Err: err}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	timer := time.NewTimer(cfg.Timeout)
	defer timer.Stop()
	res := Result{}
	select {
	case err := <-done:
		if err != nil {
			res.Err = fmt.Errorf("qemu: %w", err)
		}
	case <-timer.C:
		res.TimedOut = true
		killGroup(cmd)
		<-done
	case <-ctx.Done():
		killGroup(cmd)
		<-done
		res.Err = ctx.Err()
	}
	res.Console = console.String()
	res.Duration = time.Since(start)
	return res
}

func killGroup(cmd *exec.Cmd) {
	// Negative pid: the whole process group qemu leads.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
