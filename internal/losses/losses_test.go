package losses

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/loader"
)

// counters is a source whose readings the test sets (the kernel's own are
// tested in loader); closed makes it fail as a closed observer does.
type counters struct {
	now    loader.Counters
	closed bool
}

func (c *counters) Counters() (loader.Counters, error) {
	if c.closed {
		return loader.Counters{}, loader.ErrClosed
	}
	return c.now, nil
}

func TestReporterReportsDifferences(t *testing.T) {
	var out, errOut bytes.Buffer
	src := &counters{}
	r := New(src, output.NewPrinter(&out, &errOut, true))
	r.Check()
	if out.Len() != 0 {
		t.Fatalf("nothing counted, yet reported: %s", out.String())
	}
	src.now = loader.Counters{LostAdoptions: 3, LineageFull: 2, UnfollowedAdoptions: 4, SnapshotFull: 1, ChildrenTruncated: 1}
	r.Check()
	src.now.LostAdoptions = 5
	r.Check()
	src.closed = true
	r.Check()
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		switch m["event"] {
		case "lost":
			got = append(got, "lost "+m["records"].(string)+" "+string(rune('0'+int(m["count"].(float64)))))
		case "warning":
			got = append(got, "warning "+m["message"].(string)[:1])
		}
	}
	want := []string{"lost adopt 3", "warning 2", "lost adopt 4", "warning 1", "warning 1", "lost adopt 2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("reports %q, want %q", got, want)
	}
	if errOut.Len() != 0 {
		t.Errorf("JSON mode wrote warnings to stderr: %s", errOut.String())
	}
}
