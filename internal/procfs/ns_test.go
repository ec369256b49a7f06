package procfs

import (
	"fmt"
	"os"
	"slices"
	"testing"
)

func TestParseNSpid(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []uint32
		bad  bool
	}{
		{"\t4242", []uint32{4242}, false},
		{"\t4242\t7\t1", []uint32{4242, 7, 1}, false},
		{"", nil, true},
		{"\t12\tx", nil, true},
		{"\t0", nil, true},
		{"\t99999999999", nil, true},
	} {
		got, err := ParseNSpid(tt.in)
		if (err != nil) != tt.bad || !slices.Equal(got, tt.want) {
			t.Errorf("ParseNSpid(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestSelf(t *testing.T) {
	ino, err := PidNS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	link, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("pid:[%d]", ino); link != want {
		t.Errorf("ns/pid links to %q, inode %d", link, ino)
	}
	pids, err := NSpids(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) == 0 || pids[0] != uint32(os.Getpid()) {
		t.Errorf("NSpids(self) = %v, want our pid %d first", pids, os.Getpid())
	}
}

func TestCgroup(t *testing.T) {
	p, err := Cgroup(os.Getpid())
	if err != nil {
		t.Skipf("no cgroup v2 here: %v", err)
	}
	if len(p) == 0 || p[0] != '/' {
		t.Errorf("Cgroup(self) = %q, want an absolute path", p)
	}
}

func TestCmdline(t *testing.T) {
	args, err := Cmdline(os.Getpid())
	if err != nil || !slices.Equal(args, os.Args) {
		t.Errorf("Cmdline(self) = %q, %v; want %q", args, err, os.Args)
	}
}
