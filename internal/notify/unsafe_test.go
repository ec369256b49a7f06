package notify

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func unsafeBytes(si *unix.Siginfo) unsafe.Pointer { return unsafe.Pointer(si) }
