// Command pidfd-reaper subscribes to `adoptwatch --socket PATH`, keeps the
// pidfd that comes with each adoption, waits for each adopted daemon to exit
// through it, and says which daemon died, by its lineage: of two apache2
// daemons, the one started by which launcher. The pidfd names exactly the
// adopted process, so a reused pid can never be mistaken for it.
//
//	pidfd-reaper [-filter "parent 1"] /run/adoptwatch.sock
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// adoption is the part of an adoption record this example uses.
type adoption struct {
	Event     string `json:"event"`
	PID       int    `json:"pid"`
	Comm      string `json:"comm"`
	Zombie    bool   `json:"zombie"`
	NewParent struct {
		PID int `json:"pid"`
	} `json:"new_parent"`
	Lineage []struct {
		PID    int    `json:"pid"`
		Comm   string `json:"comm"`
		Exec   bool   `json:"exec"`
		Setsid bool   `json:"setsid"`
	} `json:"lineage"`
	Pidfd  string `json:"pidfd"`  // "passed": a pidfd came with this line
	Reason string `json:"reason"` // refused, error and overflow lines
}

func (a adoption) lineage() string {
	var parts []string
	for _, s := range a.Lineage {
		marks := ""
		if s.Exec {
			marks += " exec"
		}
		if s.Setsid {
			marks += " setsid"
		}
		parts = append(parts, fmt.Sprintf("%s[%d%s]", s.Comm, s.PID, marks))
	}
	return strings.Join(parts, " > ")
}

func main() {
	filter := flag.String("filter", "all", `"all", "parent PID" or "root PID"`)
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: pidfd-reaper [-filter F] SOCKET")
		os.Exit(2)
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: flag.Arg(0), Net: "unix"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := conn.Write([]byte(*filter + "\n")); err != nil {
		log.Fatal(err)
	}
	var pending []byte // bytes of a line not yet complete
	var fds []int      // pidfds received, in order, not yet paired with their line
	for {
		data := make([]byte, 64<<10)
		oob := make([]byte, unix.CmsgSpace(64*4))
		n, oobn, _, _, err := conn.ReadMsgUnix(data, oob)
		if err != nil {
			log.Fatalf("adoptwatch went away: %v", err)
		}
		if n == 0 {
			log.Fatal("adoptwatch closed the connection")
		}
		// The kernel delivers a line's pidfd with the line's first byte, never
		// later: a FIFO of fds pairs them with lines that say "passed".
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if got, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, got...)
				}
			}
		}
		pending = append(pending, data[:n]...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			var a adoption
			if err := json.Unmarshal(pending[:i], &a); err != nil {
				log.Fatalf("bad line: %v", err)
			}
			pending = pending[i+1:]
			fd := -1
			if a.Pidfd == "passed" {
				fd, fds = fds[0], fds[1:]
			}
			handle(a, fd)
		}
	}
}

func handle(a adoption, fd int) {
	switch a.Event {
	case "subscribed":
		log.Printf("subscribed")
	case "refused", "error", "overflow":
		log.Fatalf("%s: %s", a.Event, a.Reason)
	case "adopt":
		if fd < 0 {
			log.Printf("%s[%d] adopted by %d, but no pidfd (%s): cannot follow it", a.Comm, a.PID, a.NewParent.PID, a.Pidfd)
			return
		}
		log.Printf("following %s[%d], adopted by %d: %s", a.Comm, a.PID, a.NewParent.PID, a.lineage())
		go waitExit(a, fd)
	}
}

// waitExit polls the pidfd: it becomes readable when the process exits.
func waitExit(a adoption, fd int) {
	defer unix.Close(fd)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(pfd, -1); err == unix.EINTR {
			continue
		} else if err != nil {
			log.Printf("poll pidfd of %d: %v", a.PID, err)
			return
		}
		break
	}
	fmt.Printf("died: %s[%d], launched as %s\n", a.Comm, a.PID, a.lineage())
}
