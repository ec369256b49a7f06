package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// NSpid reads the NSpid line of /proc/PID/status: the process's pid in each
// pid namespace it belongs to, outermost first (Linux 4.1+). A last value of
// 1 makes it the init of its own namespace: that namespace's reaper.
func NSpid(pid int) ([]uint32, error) {
	data, err := os.ReadFile(fmt.Sprintf("%s/%d/status", dir, pid))
	if err != nil {
		return nil, err
	}
	return ParseNSpid(data)
}

// ParseNSpid finds the NSpid line in the contents of /proc/PID/status.
func ParseNSpid(status []byte) ([]uint32, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		val, ok := strings.CutPrefix(sc.Text(), "NSpid:")
		if !ok {
			continue
		}
		var out []uint32
		for _, f := range strings.Fields(val) {
			n, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("malformed NSpid: %w", err)
			}
			out = append(out, uint32(n))
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("empty NSpid")
		}
		return out, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("no NSpid line (Linux 4.1 or later has one)")
}
