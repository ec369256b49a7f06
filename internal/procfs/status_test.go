package procfs

import (
	"os"
	"slices"
	"testing"
)

func TestParseNSpid(t *testing.T) {
	for in, want := range map[string][]uint32{
		"Name:\tsh\nState:\tS (sleeping)\nNSpid:\t4242\n":        {4242},
		"Name:\tnode\nNSpid:\t4242\t1\nNSpgid:\t4242\t1\n":       {4242, 1},
		"Tgid:\t9\nNSpid:\t9000\t300\t1\nNSsid:\t9000\t300\t1\n": {9000, 300, 1},
	} {
		got, err := ParseNSpid([]byte(in))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"Name:\tx\n", "NSpid:\n", "NSpid:\tx\n"} {
		if _, err := ParseNSpid([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestNSpidSelf(t *testing.T) {
	got, err := NSpid(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got[len(got)-1] != uint32(os.Getpid()) { // the innermost is the one it sees
		t.Errorf("NSpid of this process %v, want its pid %d last", got, os.Getpid())
	}
}
