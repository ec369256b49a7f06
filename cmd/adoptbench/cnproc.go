package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The proc connector (netlink, NETLINK_CONNECTOR, CN_IDX_PROC): the kernel
// broadcasts one message per fork, exec, exit, setsid... to every listener, as
// forkstat and Upstart used. This listener decodes every message's header and
// event type, and nothing more: a lower bound for a real consumer (forkstat
// also reads /proc for names).
const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	nlmsgHdrLen       = 16
	cnMsgLen          = 20
)

type cnProc struct {
	fd      int
	events  atomic.Uint64
	drops   atomic.Uint64
	closing atomic.Bool
}

func openCnProc() (*cnProc, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("netlink connector socket: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc, Pid: uint32(os.Getpid())}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind proc connector: %w", err)
	}
	msg := make([]byte, nlmsgHdrLen+cnMsgLen+4)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.NLMSG_DONE)
	ne.PutUint32(msg[12:], uint32(os.Getpid()))
	ne.PutUint32(msg[16:], cnIdxProc)
	ne.PutUint32(msg[20:], cnValProc)
	ne.PutUint16(msg[32:], 4) // payload length
	ne.PutUint32(msg[36:], procCnMcastListen)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("subscribe to the proc connector: %w", err)
	}
	return &cnProc{fd: fd}, nil
}

func (c *cnProc) run() {
	buf := make([]byte, 64<<10)
	ne := binary.NativeEndian
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.ENOBUFS) {
			c.drops.Add(1)
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || c.closing.Load() {
			return
		}
		for off := 0; off+nlmsgHdrLen+cnMsgLen+4 <= n; {
			l := int(ne.Uint32(buf[off:]))
			if l < nlmsgHdrLen || off+l > n {
				break
			}
			what := ne.Uint32(buf[off+nlmsgHdrLen+cnMsgLen:])
			_ = what // fork, exec, exit, sid...: counted alike
			c.events.Add(1)
			off += (l + 3) &^ 3
		}
	}
}

func (c *cnProc) counts() (events, drops uint64) { return c.events.Load(), c.drops.Load() }

func (c *cnProc) Close() {
	c.closing.Store(true)
	unix.Shutdown(c.fd, unix.SHUT_RDWR)
	unix.Close(c.fd)
}
