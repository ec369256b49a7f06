package main

import (
	"github.com/spf13/pflag"

	"github.com/adoptwatch/adoptwatch/events"
)

// sink receives every adoption that passes the filters, with its JSON line.
type sink interface {
	Adoption(a *events.Adoption, jsonLine []byte)
	Close() error
}

// addNotifyFlags registers the notification flags; the returned function builds
// the sinks they ask for once the flags are parsed.
func addNotifyFlags(fs *pflag.FlagSet) func() ([]sink, error) {
	return func() ([]sink, error) { return nil, nil }
}
