package main

import (
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// roundTrip serves on 127.0.0.1 and connects to it, on the calling thread.
func roundTrip() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// In a new network namespace lo is down, as at boot: loopbackUp makes
// 127.0.0.1 an address one can serve on.
func TestLoopbackUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace of its own")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if err := roundTrip(); err == nil {
			t.Errorf("127.0.0.1 reachable before lo is up: the test proves nothing")
			return
		}
		if err := loopbackUp(); err != nil {
			t.Errorf("loopbackUp: %v", err)
			return
		}
		if err := roundTrip(); err != nil {
			t.Errorf("127.0.0.1 after loopbackUp: %v", err)
		}
	}()
	<-done
}
