package subscribe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Client reads a subscription: JSON lines, and pidfds that arrive through
// SCM_RIGHTS in the same order as the lines whose "pidfd" is "passed". On a
// stream socket the kernel may deliver one recvmsg with several lines but
// never attaches a line's fd after its text, so a FIFO pairs them.
type Client struct {
	Conn *net.UnixConn
	buf  []byte
	fds  []int
}

// Record is one line from the server. Pidfd is -1 unless Fields["pidfd"] is "passed".
type Record struct {
	Line   []byte
	Fields map[string]any
	Pidfd  int
}

// Dial connects and sends the filter line ("" sends none: the server waits
// briefly, then serves everything).
func Dial(path, filter string) (*Client, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if filter != "" {
		if _, err := conn.Write([]byte(filter + "\n")); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return &Client{Conn: conn}, nil
}

// Next returns the next line, with its pidfd if one was passed.
func (c *Client) Next() (Record, error) {
	for {
		if i := bytes.IndexByte(c.buf, '\n'); i >= 0 {
			line := append([]byte(nil), c.buf[:i+1]...)
			c.buf = c.buf[i+1:]
			rec := Record{Line: line, Pidfd: -1}
			if err := json.Unmarshal(line, &rec.Fields); err != nil {
				return rec, fmt.Errorf("bad line %q: %w", line, err)
			}
			if rec.Fields["pidfd"] == PidfdPassed {
				if len(c.fds) == 0 {
					return rec, fmt.Errorf("line says a pidfd was passed, but none arrived")
				}
				rec.Pidfd, c.fds = c.fds[0], c.fds[1:]
			}
			return rec, nil
		}
		data := make([]byte, 64<<10)
		oob := make([]byte, unix.CmsgSpace(64*4))
		n, oobn, _, _, err := c.Conn.ReadMsgUnix(data, oob)
		if oobn > 0 && err == nil {
			msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
			if perr != nil {
				return Record{}, perr
			}
			for _, m := range msgs {
				fds, perr := unix.ParseUnixRights(&m)
				if perr == nil {
					c.fds = append(c.fds, fds...)
				}
			}
		}
		if n > 0 {
			c.buf = append(c.buf, data[:n]...)
		}
		if err != nil {
			return Record{}, err
		}
		if n == 0 {
			return Record{}, fmt.Errorf("connection closed")
		}
	}
}

// Close closes the connection and any pidfds not yet handed out.
func (c *Client) Close() error {
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	c.fds = nil
	return c.Conn.Close()
}
