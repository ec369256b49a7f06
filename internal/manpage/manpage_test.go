package manpage

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func sampleFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Bool("json", false, "print JSON")
	fs.IntSlice("pid", nil, "watch the tree of `PID` (repeatable)")
	fs.Duration("settle", 500*time.Millisecond, "quiet time")
	fs.BoolP("verbose", "v", false, `say more; a \ and a "quote"`)
	fs.String("secret", "", "not shown")
	fs.MarkHidden("secret")
	return fs
}

func samplePage() Page {
	return Page{
		Name: "demo", Section: "8", Summary: "show things",
		Source: "demo", Manual: "System Administration",
		Synopsis:    []string{"demo [--json]", "demo run -- CMD"},
		Description: "First paragraph,\nsecond line.\n\n  $ demo --json\n  .not a macro\n\nAfter.",
		Commands:    []Command{{Name: "demo", Usage: "demo [flags]", Text: ".dot starts", Flags: sampleFlags()}},
		Sections:    []Section{{Heading: "See also", Text: "systemd.service(5)"}},
	}
}

func TestRenderExact(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, samplePage()); err != nil {
		t.Fatal(err)
	}
	want := `.TH "DEMO" 8 "" "demo" "System Administration"
.SH NAME
demo \- show things
.SH SYNOPSIS
demo [\-\-json]
.br
demo run \-\- CMD
.SH DESCRIPTION
.PP
First paragraph,
second line.
.PP
.nf
  $ demo \-\-json
  .not a macro
.fi
.PP
After.
.SH COMMANDS
.SS "demo"
\fBdemo [flags]\fR
.PP
\&.dot starts
.TP
\fB\-\-json\fR
print JSON
.TP
\fB\-\-pid\fR \fIPID\fR
watch the tree of PID (repeatable)
.TP
\fB\-\-settle\fR \fIduration\fR
quiet time (default: 500ms)
.TP
\fB\-v\fR, \fB\-\-verbose\fR
say more; a \e and a "quote"
.SH "SEE ALSO"
.PP
systemd.service(5)
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// groff reads the page without a warning, and a reader sees every visible
// flag, its argument and its default, and nothing of the hidden one.
func TestGroffReadsIt(t *testing.T) {
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff is not installed (apt-get install groff-base)")
	}
	var page bytes.Buffer
	Render(&page, samplePage())
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-rLL=200n")
	cmd.Stdin = &page
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("groff: %v: %s", err, stderr.String())
	}
	plain := stripOverstrike(out.String())
	for _, want := range []string{"--pid PID", "-v, --verbose", "(default: 500ms)", `a \ and a "quote"`, ".not a macro", ".dot starts", "demo - show things"} {
		if !strings.Contains(plain, want) {
			t.Errorf("rendered page lacks %q:\n%s", want, plain)
		}
	}
	if strings.Contains(plain, "secret") {
		t.Error("hidden flag rendered")
	}
}

// stripOverstrike removes grotty's bold and underline (x\bx, _\bx) and SGR codes.
func stripOverstrike(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i := 0; i < len(r); i++ {
		if i+2 < len(r) && r[i+1] == '\b' {
			continue // the overstruck character; the next one stays
		}
		if r[i] == '\b' {
			continue
		}
		if r[i] == 0x1b {
			for i < len(r) && r[i] != 'm' {
				i++
			}
			continue
		}
		b.WriteRune(r[i])
	}
	// groff may use Unicode minus and quotes in utf8 output.
	return strings.NewReplacer("−", "-", "‐", "-", "\u2019", "'", "\u2018", "'").Replace(b.String())
}
