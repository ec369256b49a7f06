package bench

import (
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/internal/rawfork"
)

// The workloads fork without exec from a Go process, the way C programs do:
// each child half is a nosplit function making raw system calls only, run
// through rawfork.Run. The caller reaps.

// ForkExit forks a child that exits at once; it returns the child's pid.
func ForkExit() (int, error) { return rawfork.Run(forkExit) }

//go:nosplit
//go:norace
func forkExit() (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if errno != 0 || pid != 0 {
		return pid, errno
	}
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	return 0, 0
}

// Execer runs one program with fork + execve (no vfork), argv = {path}.
type Execer struct {
	path *byte
	argv []*byte
	envp []*byte
}

// NewExecer prepares the pointers the child will use (it may not allocate).
func NewExecer(path string) (*Execer, error) {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return nil, err
	}
	return &Execer{path: p, argv: []*byte{p, nil}, envp: []*byte{nil}}, nil
}

// ForkExec forks a child that execs the program; it returns the child's pid.
// If execve fails the child exits with status 127.
func (e *Execer) ForkExec() (int, error) {
	pid, err := rawfork.Run(func() (uintptr, syscall.Errno) {
		return forkExec(uintptr(unsafe.Pointer(e.path)),
			uintptr(unsafe.Pointer(&e.argv[0])), uintptr(unsafe.Pointer(&e.envp[0])))
	})
	runtime.KeepAlive(e)
	return pid, err
}

//go:nosplit
//go:norace
func forkExec(path, argv, envp uintptr) (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if errno != 0 || pid != 0 {
		return pid, errno
	}
	syscall.RawSyscall(syscall.SYS_EXECVE, path, argv, envp)
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 127, 0, 0)
	return 0, 0
}

// DoubleFork daemonises C-style: it forks a middle, which calls setsid(),
// forks the daemon and exits; the daemon exits at once. The daemon (alive or
// already a zombie) is adopted when the middle exits: one adoption each. It
// returns the middle's pid; the daemon is reaped by the caller's subreaper.
func DoubleFork() (int, error) { return rawfork.Run(doubleFork) }

//go:nosplit
//go:norace
func doubleFork() (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if errno != 0 || pid != 0 {
		return pid, errno
	}
	syscall.RawSyscall(syscall.SYS_SETSID, 0, 0, 0)
	syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	// Middle and daemon alike: exit. The daemon is adopted, alive or zombie.
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	return 0, 0
}

// ForkPause forks a child that sleeps in pause() until killed. It dies with its
// parent too (PR_SET_PDEATHSIG), so none is ever left to PID 1.
func ForkPause() (int, error) { return rawfork.Run(forkPause) }

//go:nosplit
//go:norace
func forkPause() (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if errno != 0 || pid != 0 {
		return pid, errno
	}
	syscall.RawSyscall(syscall.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	for {
		syscall.RawSyscall(syscall.SYS_PAUSE, 0, 0, 0)
	}
}

// TinyELF is a complete static x86-64 executable that calls exit(0): the
// cheapest program to exec (no dynamic loader, no runtime).
func TinyELF() []byte {
	const base = 0x400000
	code := []byte{
		0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (exit)
		0x31, 0xff, //                  xor edi, edi
		0x0f, 0x05, //                  syscall
	}
	const ehsize, phsize = 64, 56
	entry := uint64(base + ehsize + phsize)
	b := make([]byte, 0, ehsize+phsize+len(code))
	le16 := func(v uint16) { b = append(b, byte(v), byte(v>>8)) }
	le32 := func(v uint32) { le16(uint16(v)); le16(uint16(v >> 16)) }
	le64 := func(v uint64) { le32(uint32(v)); le32(uint32(v >> 32)) }
	b = append(b, 0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	le16(2)    // ET_EXEC
	le16(0x3e) // EM_X86_64
	le32(1)
	le64(entry)
	le64(ehsize) // phoff
	le64(0)      // shoff
	le32(0)
	le16(ehsize)
	le16(phsize)
	le16(1) // phnum
	le16(0)
	le16(0)
	le16(0)
	// PT_LOAD, R+X, the whole file at base.
	le32(1)
	le32(5)
	le64(0)
	le64(base)
	le64(base)
	total := uint64(ehsize + phsize + len(code))
	le64(total)
	le64(total)
	le64(0x1000)
	return append(b, code...)
}
