package loader

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Capabilities adoptwatch needs (CAP_BPF and CAP_PERFMON exist from 5.8; older
// kernels and most setups use root, which has CAP_SYS_ADMIN).
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// CheckPrerequisites returns one clear error for the first thing missing:
// privileges, kernel BTF, BPF ring buffers. It also lifts the memlock limit that
// kernels before 5.11 charge BPF maps to.
func CheckPrerequisites() error {
	if !hasCapabilities() {
		return errors.New("adoptwatch needs root (CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON) to load BPF programs: run it with sudo")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return errors.New("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): it needs CONFIG_DEBUG_INFO_BTF=y, as Debian, Ubuntu, Fedora and RHEL kernels have since 2020")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("cannot lift RLIMIT_MEMLOCK for BPF maps: %w", err)
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		return fmt.Errorf("this kernel is too old: BPF ring buffers need Linux 5.8 or later (%v)", err)
	}
	return nil
}

func hasCapabilities() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return os.Geteuid() == 0
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	return has(capSysAdmin) || (has(capBPF) && has(capPerfmon))
}
