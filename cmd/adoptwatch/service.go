package main

import (
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/adoptwatch/adoptwatch/internal/service"
)

// serviceFlags tell the supervisor that started adoptwatch (systemd through
// NOTIFY_SOCKET, s6 and others through --notify-fd) when it is ready.
type serviceFlags struct {
	notifyFD int
}

func (f *serviceFlags) add(fs *pflag.FlagSet, when string) {
	fs.IntVar(&f.notifyFD, "notify-fd", 0, "once "+when+", write a newline to descriptor `N` and close it (s6's readiness notification); with NOTIFY_SOCKET set, systemd is told as well")
}

// notifier checks --notify-fd (an error is a usage error: exit 2) and returns
// the notifier: it tells systemd when NOTIFY_SOCKET is set, and writes to
// the notify fd when one was given.
func (f *serviceFlags) notifier(fs *pflag.FlagSet, stderr io.Writer) (*service.Notifier, error) {
	var fd *os.File
	if fs.Changed("notify-fd") {
		var err error
		if fd, err = service.OpenNotifyFD(f.notifyFD); err != nil {
			return nil, err
		}
	}
	return service.New(fd, stderr), nil
}
