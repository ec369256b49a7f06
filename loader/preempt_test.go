package loader

import (
	"errors"
	"os"
	"testing"
)

// text and missing build preemptSources entries for the tests.
func text(s string) func() (string, error) { return func() (string, error) { return s, nil } }

var errMissing = errors.New("not readable")

func missing() (string, error) { return "", errMissing }

// unread fails the test if the detection reads a source it should not need.
func unread(t *testing.T, name string) func() (string, error) {
	return func() (string, error) {
		t.Errorf("%s was read, but an earlier source decides", name)
		return "", errMissing
	}
}

const (
	configNone = `CONFIG_PREEMPT_BUILD=y
CONFIG_PREEMPT_NONE=y
# CONFIG_PREEMPT_VOLUNTARY is not set
# CONFIG_PREEMPT is not set
# CONFIG_PREEMPT_LAZY is not set
CONFIG_PREEMPT_COUNT=y
CONFIG_PREEMPTION=y
CONFIG_PREEMPT_DYNAMIC=y
CONFIG_PREEMPT_RCU=y
CONFIG_PREEMPT_NOTIFIERS=y
# CONFIG_PREEMPT_TRACER is not set
`
	configVoluntary = "# CONFIG_PREEMPT_NONE is not set\nCONFIG_PREEMPT_VOLUNTARY=y\n# CONFIG_PREEMPT is not set\nCONFIG_PREEMPT_COUNT=y\n"
	configFull      = "CONFIG_PREEMPT_BUILD=y\n# CONFIG_PREEMPT_NONE is not set\nCONFIG_PREEMPT=y\nCONFIG_PREEMPT_DYNAMIC=y\n"
	configLazy      = "CONFIG_PREEMPT_BUILD=y\nCONFIG_PREEMPT_LAZY=y\nCONFIG_PREEMPT_DYNAMIC=y\n"
	configRT        = "CONFIG_PREEMPT_BUILD=y\nCONFIG_PREEMPT=y\nCONFIG_PREEMPT_RT=y\n"

	unameDynamic = "#1 SMP PREEMPT_DYNAMIC Debian 6.12.57-1 (2025-11-05)"
	kmsgNone     = "6,1,0,-;Linux version 6.18.0\n6,212,249487,-;Dynamic Preempt: none\n6,213,250000,-;rcu: Preemptible hierarchical RCU implementation.\n"
	cmdlineDebug = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet"
)

func TestDetectPreemption(t *testing.T) {
	for _, tc := range []struct {
		name   string
		src    func(t *testing.T) preemptSources
		want   Preemption
		copies int
	}{
		{"debugfs decides first", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: text("none voluntary (full) lazy \n"), uname: unread(t, "uname"),
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: unread(t, "config")}
		}, Preemption{"full", "debugfs"}, 3},
		{"debugfs voluntary", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: text("none (voluntary) full\n"), uname: unread(t, "uname"),
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: unread(t, "config")}
		}, Preemption{"voluntary", "debugfs"}, 1},
		{"debugfs RT kernel (modes full and lazy only)", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: text("full (lazy) \n"), uname: unread(t, "uname"),
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: unread(t, "config")}
		}, Preemption{"lazy", "debugfs"}, 3},
		{"debugfs garbled: uname next", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: text("none voluntary full"), uname: text("#1 SMP PREEMPT_RT Fri"),
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: unread(t, "config")}
		}, Preemption{"rt", "uname -v"}, 3},
		{"uname RT", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text("#1 SMP PREEMPT_RT Debian 6.12.57-1 (2025-11-05)"),
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: unread(t, "config")}
		}, Preemption{"rt", "uname -v"}, 3},
		{"uname lazy", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text("#1 SMP PREEMPT_LAZY Thu Jan  1 00:00:00 UTC 2026"),
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: unread(t, "config")}
		}, Preemption{"lazy", "uname -v"}, 3},
		{"uname plain PREEMPT", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text("#1 SMP PREEMPT Tue Dec 1 2026"),
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: unread(t, "config")}
		}, Preemption{"full", "uname -v"}, 3},
		{"PREEMPT_DYNAMIC and preempt= on the command line", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text(unameDynamic),
				cmdline: text("root=/dev/vda preempt=full quiet preempt=voluntary\n"), kmsg: unread(t, "kmsg"), config: unread(t, "config")}
		}, Preemption{"voluntary", "the command line"}, 1},
		{"PREEMPT_DYNAMIC, preempt= for init only (after --): the kernel log", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text(unameDynamic),
				cmdline: text("console=ttyS0 rdinit=/init -- preempt=full"), kmsg: text(kmsgNone), config: unread(t, "config")}
		}, Preemption{"none", "the kernel log"}, 1},
		{"PREEMPT_DYNAMIC, bad preempt=: the kernel log, its last mode", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text(unameDynamic), cmdline: text("preempt=fast"),
				kmsg:   text("4,5,6,-;Dynamic Preempt: unsupported mode: fast\n6,7,8,-;Dynamic Preempt: voluntary\n6,9,10,-;Dynamic Preempt: full\n"),
				config: unread(t, "config")}
		}, Preemption{"full", "the kernel log"}, 3},
		{"PREEMPT_DYNAMIC, log rotated: the config's default", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text(unameDynamic), cmdline: text(cmdlineDebug),
				kmsg: text("6,100000,99,-;eth0: link up\n"), config: text(configNone)}
		}, Preemption{"none", "the kernel config"}, 1},
		{"PREEMPT_DYNAMIC, no kernel log access: lazy default", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text(unameDynamic), cmdline: text(cmdlineDebug),
				kmsg: missing, config: text(configLazy)}
		}, Preemption{"lazy", "the kernel config"}, 3},
		{"PREEMPT_DYNAMIC, full default", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text(unameDynamic), cmdline: missing,
				kmsg: missing, config: text(configFull)}
		}, Preemption{"full", "the kernel config"}, 3},
		{"PREEMPT_DYNAMIC and nothing else readable: unknown", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text(unameDynamic), cmdline: missing, kmsg: missing, config: missing}
		}, Preemption{}, 3},
		{"no preemption flag, voluntary config", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text("#1 SMP Debian 5.10.223-1 (2024-08-10)"),
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: text(configVoluntary)}
		}, Preemption{"voluntary", "the kernel config"}, 1},
		{"no preemption flag, config disagrees (RT): believed", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text("#1 SMP Debian"),
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: text(configRT)}
		}, Preemption{"rt", "the kernel config"}, 3},
		{"no preemption flag, no config", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text("#1 SMP Debian 5.10.223-1 (2024-08-10)"),
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: missing}
		}, Preemption{"none/voluntary", "uname -v"}, 1},
		{"a word containing PREEMPT is not the flag", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: text("#1 SMP NOPREEMPT_RTX build"),
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: missing}
		}, Preemption{"none/voluntary", "uname -v"}, 1},
		{"uname unreadable: unknown", func(t *testing.T) preemptSources {
			return preemptSources{debugfs: missing, uname: missing,
				cmdline: unread(t, "cmdline"), kmsg: unread(t, "kmsg"), config: unread(t, "config")}
		}, Preemption{}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := detectPreemption(tc.src(t))
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if got.Copies() != tc.copies {
				t.Errorf("%v: %d copies, want %d", got, got.Copies(), tc.copies)
			}
		})
	}
}

func TestPreemptionString(t *testing.T) {
	if s := (Preemption{"none", "the kernel log"}).String(); s != "preempt none, from the kernel log" {
		t.Errorf("String() = %q", s)
	}
	if s := (Preemption{}).String(); s != "preemption model unknown" {
		t.Errorf("String() of unknown = %q", s)
	}
}

// TestDetectPreemptionHere reads this machine's sources for real; whatever
// it finds must be consistent with what uname -v says of the build.
func TestDetectPreemptionHere(t *testing.T) {
	p := detectPreemption(systemPreemptSources())
	src := systemPreemptSources()
	v, err := src.uname()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("uname -v %q: %v, %d copies (root: %v)", v, p, p.Copies(), os.Geteuid() == 0)
	switch unameFlag(v) {
	case "rt", "lazy", "full":
		if p.Copies() != 3 {
			t.Errorf("uname says %q but %v chose %d copies", unameFlag(v), p, p.Copies())
		}
	case "dynamic":
		if p.Model != "" && !dynamicModes[p.Model] {
			t.Errorf("a PREEMPT_DYNAMIC kernel in mode %q", p.Model)
		}
	}
}
