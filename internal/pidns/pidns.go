// Package pidns names what a pid namespace's reaper (its PID 1) is: tini,
// docker-init, catatonit, pause, dumb-init, s6-svscan, a shell, or the
// application itself. (The namespace facts themselves, /proc/PID/ns/pid and
// NSpid, are read by internal/procfs.)
package pidns

import (
	"path"
	"strings"
)

// Reaper kinds: what a pid namespace's PID 1 is.
const (
	ReaperTini       = "tini"
	ReaperDockerInit = "docker-init" // tini, as docker --init installs it
	ReaperCatatonit  = "catatonit"   // podman --init
	ReaperPause      = "pause"       // a Kubernetes pod's sandbox (shared pid namespace)
	ReaperDumbInit   = "dumb-init"
	ReaperS6         = "s6-svscan"
	ReaperSystemd    = "systemd"
	ReaperInit       = "init"  // another init system (sysvinit, busybox init, runit, openrc-init, s6-linux-init)
	ReaperShell      = "shell" // sh, bash, ... or a shell script run as PID 1
	// ReaperApplication: none of the above, the container's application itself.
	ReaperApplication = "application"
)

var byName = map[string]string{
	"tini": ReaperTini, "tini-static": ReaperTini,
	"docker-init": ReaperDockerInit,
	"catatonit":   ReaperCatatonit,
	"pause":       ReaperPause,
	"dumb-init":   ReaperDumbInit,
	"s6-svscan":   ReaperS6,
	"systemd":     ReaperSystemd,
	"init":        ReaperInit, "runit": ReaperInit, "runit-init": ReaperInit,
	"openrc-init": ReaperInit, "s6-linux-init": ReaperInit,
	"sh": ReaperShell, "ash": ReaperShell, "bash": ReaperShell, "dash": ReaperShell,
	"zsh": ReaperShell, "ksh": ReaperShell, "mksh": ReaperShell, "fish": ReaperShell,
}

// ReaperKind names a namespace reaper from its comm and the target of its
// /proc/PID/exe (either may be empty). comm decides first: it names the
// program as run (a busybox applet, docker's renamed tini) where exe only says
// "busybox". A script run as PID 1 has the script's name as comm and the
// shell as exe, so exe is asked when comm names nothing known.
func ReaperKind(comm, exe string) string {
	if k := kindOf(comm); k != "" {
		return k
	}
	if exe != "" {
		if k := kindOf(path.Base(strings.TrimSuffix(exe, " (deleted)"))); k != "" {
			return k
		}
	}
	return ReaperApplication
}

func kindOf(name string) string {
	name = strings.TrimPrefix(name, "-") // a login shell: "-bash"
	if k, ok := byName[name]; ok {
		return k
	}
	// comm is cut to 15 bytes: "docker-init" fits, "s6-linux-init" fits; a
	// versioned or suffixed tini ("tini-static-amd64") still starts with tini-.
	if strings.HasPrefix(name, "tini-") {
		return ReaperTini
	}
	return ""
}
