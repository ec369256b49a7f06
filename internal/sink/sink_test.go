package sink

import (
	"bytes"
	"testing"
	"time"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/output"
	"github.com/adoptwatch/adoptwatch/internal/procfs"
)

// TestSetDelivers: every sink of a set gets the same adoption, with the one
// JSON line built for it.
func TestSetDelivers(t *testing.T) {
	var text, jsonOut, errOut bytes.Buffer
	set := Set{output.NewPrinter(&text, &errOut, false), output.NewPrinter(&jsonOut, &errOut, true)}
	a := output.NewAdoption(&events.Adoption{
		Time:  time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC),
		Hook:  events.HookExitWalk,
		Child: events.Process{ID: procfs.ID{PID: 42}, Comm: "d"},
	})
	set.Adoption(a)
	if err := set.Close(); err != nil {
		t.Fatal(err)
	}
	if want := output.AdoptionText(a.Adoption) + "\n"; text.String() != want {
		t.Errorf("text sink got %q, want %q", text.String(), want)
	}
	if !bytes.Equal(jsonOut.Bytes(), a.Line()) {
		t.Errorf("JSON sink got %q, want the line built once: %q", jsonOut.String(), a.Line())
	}
}
