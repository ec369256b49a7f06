package journaltest

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestParse(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("A=1\nB\n")
	binary.Write(&b, binary.LittleEndian, uint64(3))
	b.WriteString("x\ny\nC=\nD=a=b\n")
	got, err := Parse(b.Bytes())
	if err != nil || len(got) != 4 || got["A"] != "1" || got["B"] != "x\ny" || got["C"] != "" || got["D"] != "a=b" {
		t.Fatalf("Parse = %q, %v", got, err)
	}
	for _, bad := range []string{"A=1", "=1\n", "B\n\x05\x00\x00\x00\x00\x00\x00\x00ab\n", "B\n\x01\x00", "A=1\nA=2\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}
