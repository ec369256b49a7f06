package bench

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{5, 1, 3, 2, 4})
	if s.N != 5 || s.Median != 3 || s.Min != 1 || s.Max != 5 || s.P25 != 2 || s.P75 != 4 {
		t.Fatalf("summary = %+v", s)
	}
	if got := s.Spread(); math.Abs(got-2.0/3) > 1e-9 {
		t.Errorf("spread = %v", got)
	}
	if e := Summarize(nil); e.N != 0 || !math.IsNaN(e.Spread()) {
		t.Errorf("empty summary = %+v", e)
	}
	if m := Summarize([]float64{1, 2, 3, 4}).Median; m != 2.5 {
		t.Errorf("even median = %v", m)
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	for _, tc := range []struct{ q, want float64 }{{0, 10}, {1, 100}, {0.5, 55}, {0.99, 99.1}, {-1, 10}, {2, 100}} {
		if got := Quantile(xs, tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestRatios(t *testing.T) {
	got := Ratios([]float64{9, 20, 5}, []float64{10, 0, 5})
	if len(got) != 2 || got[0] != 0.9 || got[1] != 1 {
		t.Errorf("ratios = %v", got)
	}
}

func TestLatencies(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Microsecond)
	}
	l := SummarizeLatencies(ds)
	if l.N != 100 || l.Max != 100*time.Microsecond || l.P50 != 50500*time.Nanosecond || l.P99 < 99*time.Microsecond {
		t.Errorf("latencies = %+v", l)
	}
	if (SummarizeLatencies(nil) != Latencies{}) {
		t.Errorf("empty latencies not zero")
	}
}

func TestTable(t *testing.T) {
	var tb Table
	tb.Header = []string{"config", "rate", "ratio"}
	tb.Add("baseline", "12000/s", "1.000×")
	tb.Add("adoptwatch (all)", "11800/s", "0.983×")
	var b bytes.Buffer
	if err := tb.Write(&b); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"config            rate     ratio\n" +
		"----------------  -------  ------\n" +
		"baseline          12000/s  1.000×\n" +
		"adoptwatch (all)  11800/s  0.983×\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestTargetString(t *testing.T) {
	for _, tc := range []struct {
		t    Target
		want string
	}{
		{Target{Name: "a", Pass: true, Known: true, Detail: "0.99×"}, "PASS a (0.99×)"},
		{Target{Name: "b", Known: true}, "MISS b"},
		{Target{Name: "c"}, "N/A  c"},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if s := FormatRatio(Summarize([]float64{0.98, 0.99, 1.0})); !strings.HasPrefix(s, "0.990× ±") {
		t.Errorf("FormatRatio = %q", s)
	}
}

func TestTinyELF(t *testing.T) {
	b := TinyELF()
	if len(b) != 64+56+9 || string(b[1:4]) != "ELF" {
		t.Fatalf("tiny ELF: %d bytes %q", len(b), b[:4])
	}
}
