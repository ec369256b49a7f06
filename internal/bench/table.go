package bench

import (
	"fmt"
	"io"
	"strings"
)

// Table is a plain text table: columns padded to their widest cell, numbers
// (cells starting with a digit, sign or ×) right-aligned.
type Table struct {
	Header []string
	Rows   [][]string
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

func numeric(s string) bool {
	if s == "" {
		return false
	}
	c := s[0]
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.'
}

// Write prints the table to w.
func (t *Table) Write(w io.Writer) error {
	widths := make([]int, len(t.Header))
	all := append([][]string{t.Header}, t.Rows...)
	for _, row := range all {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			if n := len([]rune(c)); n > widths[i] {
				widths[i] = n
			}
		}
	}
	line := func(row []string) string {
		var b strings.Builder
		for i := range widths {
			c := ""
			if i < len(row) {
				c = row[i]
			}
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			if i > 0 {
				b.WriteString("  ")
			}
			if i > 0 && numeric(c) {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		return strings.TrimRight(b.String(), " ")
	}
	rule := make([]string, len(widths))
	for i, w := range widths {
		rule[i] = strings.Repeat("-", w)
	}
	for _, row := range append([][]string{t.Header, rule}, t.Rows...) {
		if _, err := fmt.Fprintln(w, line(row)); err != nil {
			return err
		}
	}
	return nil
}

// Target is one goal the benchmark checks and reports (never asserts).
type Target struct {
	Name   string
	Pass   bool
	Known  bool // false: could not be measured
	Detail string
}

// String renders "PASS name (detail)", "MISS ..." or "N/A ...".
func (t Target) String() string {
	verdict := "MISS"
	switch {
	case !t.Known:
		verdict = "N/A "
	case t.Pass:
		verdict = "PASS"
	}
	if t.Detail == "" {
		return verdict + " " + t.Name
	}
	return fmt.Sprintf("%s %s (%s)", verdict, t.Name, t.Detail)
}

// FormatRate renders cycles per second compactly.
func FormatRate(r float64) string {
	switch {
	case r >= 10000:
		return fmt.Sprintf("%.0f/s", r)
	case r >= 100:
		return fmt.Sprintf("%.0f/s", r)
	default:
		return fmt.Sprintf("%.1f/s", r)
	}
}

// FormatRatio renders a ratio with its spread, e.g. "0.981× ±1.2%".
func FormatRatio(s Summary) string {
	if s.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f× ±%.1f%%", s.Median, 50*s.Spread())
}
