package notify

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// QueueInfo is the siginfo_t adoptwatch queues, laid out as the kernel's
// struct siginfo on 64-bit little-endian Linux (x86-64, arm64). Measured with
// offsetof against glibc's <signal.h> on x86-64:
//
//	offset  0  si_signo
//	offset  4  si_errno
//	offset  8  si_code                  SI_QUEUE (-1)
//	offset 12  (padding: the union below is 8-byte aligned)
//	offset 16  si_pid    _rt._pid      the adopted process
//	offset 20  si_uid    _rt._uid      its real uid
//	offset 24  si_value  _rt._sigval   sival_int (low half, little-endian): the previous parent
//	offset 24  si_status _sigchld._status, the same 4 bytes
//	size 128
//
// For SI_QUEUE the union holds _rt {pid, uid, sigval}; _sigchld is {pid, uid,
// status, utime, stime}: pid, uid and status/sival_int share their offsets, so
// a SIGCHLD-style reader that reads si_status gets the previous parent's pid.
// signalfd readers get it in ssi_int (the kernel fills ssi_status only for
// SIGCHLD), and ssi_pid, ssi_uid as usual.
type QueueInfo struct {
	Signo      int32
	Errno      int32
	Code       int32
	_          int32
	PID        uint32
	UID        uint32
	PrevParent int32 // sival_int, read as si_status
	_          int32 // upper half of sival_ptr
	_          [96]byte
}

// SIQueue is si_code for sigqueue(3) and rt_sigqueueinfo(2).
const SIQueue = -1

// Offsets of the fields readers use, for tests and documentation.
const (
	OffsetCode   = 8
	OffsetPID    = 16
	OffsetUID    = 20
	OffsetStatus = 24
	SiginfoSize  = 128
)

var _ [SiginfoSize]byte = [unsafe.Sizeof(QueueInfo{})]byte{}

// NewQueueInfo fills the siginfo for one adoption.
func NewQueueInfo(sig int, adopted, uid, prevParent uint32) *QueueInfo {
	return &QueueInfo{Signo: int32(sig), Code: SIQueue, PID: adopted, UID: uid, PrevParent: int32(prevParent)}
}

func (q *QueueInfo) raw() *unix.Siginfo { return (*unix.Siginfo)(unsafe.Pointer(q)) }

// queue is rt_sigqueueinfo(2): the kernel keeps si_pid and si_uid as given
// because si_code is SI_QUEUE (negative) and the sender has kill permission.
func (q *QueueInfo) queue(pid int) error {
	_, _, errno := unix.Syscall(unix.SYS_RT_SIGQUEUEINFO, uintptr(pid), uintptr(q.Signo), uintptr(unsafe.Pointer(q)))
	if errno != 0 {
		return errno
	}
	return nil
}

// Info is what a reaper learns from one notification.
type Info struct {
	Signal     int
	Code       int32 // SI_QUEUE from adoptwatch
	PID        uint32
	UID        uint32
	PrevParent uint32 // si_status, or ssi_int from signalfd
}

// DecodeSiginfo reads a raw siginfo_t as sigwaitinfo(2) or an SA_SIGINFO
// handler receives it.
func DecodeSiginfo(raw *[SiginfoSize]byte) Info {
	le := binary.LittleEndian
	return Info{
		Signal:     int(int32(le.Uint32(raw[0:]))),
		Code:       int32(le.Uint32(raw[OffsetCode:])),
		PID:        le.Uint32(raw[OffsetPID:]),
		UID:        le.Uint32(raw[OffsetUID:]),
		PrevParent: le.Uint32(raw[OffsetStatus:]),
	}
}

// FromSignalfd reads a notification from a signalfd record.
func FromSignalfd(s *unix.SignalfdSiginfo) Info {
	return Info{Signal: int(s.Signo), Code: s.Code, PID: s.Pid, UID: s.Uid, PrevParent: uint32(s.Int)}
}
