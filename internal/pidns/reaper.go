package pidns

import (
	"path"

	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// Reaper describes pid's kind as a namespace reaper, from its comm, exe and,
// for busybox, the applet it runs.
func Reaper(pid int) (string, error) {
	comm, err := procfs.Comm(pid)
	if err != nil {
		return "", err
	}
	exe, _ := procfs.Exe(pid) // unreadable exe: decide by comm alone
	if comm == "busybox" {
		// "busybox sh" and the like: the applet is the program.
		if applet := busyboxApplet(pid); applet != "" {
			comm = applet
		}
	}
	return ReaperKind(comm, exe), nil
}

// busyboxApplet returns the applet a busybox process runs, from its argv:
// argv[0]'s base name unless that is busybox itself, else argv[1].
func busyboxApplet(pid int) string {
	args, err := procfs.Cmdline(pid)
	if err != nil || len(args) == 0 {
		return ""
	}
	if name := path.Base(args[0]); name != "busybox" && name != "." && name != "/" {
		return name
	}
	if len(args) > 1 {
		return path.Base(args[1])
	}
	return ""
}
