// Package manpage renders a roff man page from the same pflag.FlagSets that
// print --help, so that the page and the program cannot disagree about
// which flags exist, what they take and what they default to.
package manpage

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// Page is one man page.
type Page struct {
	Name     string // "adoptwatch"
	Section  string // "8"
	Summary  string // the NAME line: "name \- summary"
	Source   string // footer, e.g. "adoptwatch"
	Manual   string // header, e.g. "System Administration"
	Synopsis []string
	// Description and each Section's Text are plain text: paragraphs separated
	// by blank lines; lines that start with a space are kept as they are
	// (examples, tables).
	Description string
	Commands    []Command
	Sections    []Section // after COMMANDS: EXIT STATUS, FILES, SEE ALSO...
}

// Command is a subcommand (or the command itself) and its flags.
type Command struct {
	Name  string // "adoptwatch run"
	Usage string // "adoptwatch run [flags] -- CMD [ARGS...]"
	Text  string
	Flags *pflag.FlagSet // visited in its own order; hidden flags are left out
}

// Section is a free-text section.
type Section struct {
	Heading string
	Text    string
}

// Render writes the page as roff (man(7) macros). The output depends only on
// its input: no date, so a committed page can be compared byte for byte.
func Render(w io.Writer, p Page) error {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s %s \"\" %s %s\n", quote(strings.ToUpper(p.Name)), p.Section, quote(p.Source), quote(p.Manual))
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", escape(p.Name), escape(p.Summary))
	b.WriteString(".SH SYNOPSIS\n")
	for i, s := range p.Synopsis {
		if i > 0 {
			b.WriteString(".br\n")
		}
		fmt.Fprintf(&b, "%s\n", line(s))
	}
	if p.Description != "" {
		b.WriteString(".SH DESCRIPTION\n")
		text(&b, p.Description)
	}
	if len(p.Commands) > 0 {
		b.WriteString(".SH COMMANDS\n")
	}
	for _, c := range p.Commands {
		fmt.Fprintf(&b, ".SS %s\n", quote(c.Name))
		if c.Usage != "" {
			fmt.Fprintf(&b, "\\fB%s\\fR\n", escape(c.Usage))
		}
		text(&b, c.Text)
		if c.Flags != nil {
			flags(&b, c.Flags)
		}
	}
	for _, s := range p.Sections {
		fmt.Fprintf(&b, ".SH %s\n", quote(strings.ToUpper(s.Heading)))
		text(&b, s.Text)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// flags writes one tagged paragraph per visible flag, as --help lists them.
func flags(b *strings.Builder, fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		arg, usage := pflag.UnquoteUsage(f)
		tag := ""
		if f.Shorthand != "" && f.ShorthandDeprecated == "" {
			tag = "\\fB\\-" + escape(f.Shorthand) + "\\fR, "
		}
		tag += "\\fB\\-\\-" + escape(f.Name) + "\\fR"
		if arg != "" {
			tag += " \\fI" + escape(arg) + "\\fR"
		}
		b.WriteString(".TP\n" + tag + "\n")
		if f.Deprecated != "" {
			usage += " (deprecated: " + f.Deprecated + ")"
		}
		if !zeroDefault(f) {
			usage += fmt.Sprintf(" (default: %s)", f.DefValue)
		}
		b.WriteString(line(usage) + "\n")
	})
}

// zeroDefault says whether --help would leave out the default, as pflag does
// for false, 0, empty strings and empty lists.
func zeroDefault(f *pflag.Flag) bool {
	switch f.DefValue {
	case "", "false", "0", "0s", "[]", "<nil>":
		return true
	}
	return false
}

// text writes paragraphs; lines starting with a space are set verbatim.
func text(b *strings.Builder, s string) {
	s = strings.Trim(s, "\n")
	if s == "" {
		return
	}
	verbatim := false
	para := false
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(l, " "):
			if !verbatim {
				b.WriteString(".PP\n.nf\n")
				verbatim, para = true, false
			}
			b.WriteString(line(l) + "\n")
		case strings.TrimSpace(l) == "":
			if verbatim {
				b.WriteString(".fi\n")
				verbatim = false
			}
			para = false
		default:
			if verbatim {
				b.WriteString(".fi\n")
				verbatim = false
			}
			if !para {
				b.WriteString(".PP\n")
				para = true
			}
			b.WriteString(line(l) + "\n")
		}
	}
	if verbatim {
		b.WriteString(".fi\n")
	}
}

// escape makes text safe inside a roff line: backslashes and minus signs.
func escape(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
}

// line escapes a whole input line, which must not start with a control
// character (a dot or an apostrophe) nor be read as a macro.
func line(s string) string {
	s = escape(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// quote is a macro argument: double quotes inside are doubled.
func quote(s string) string {
	return `"` + strings.ReplaceAll(escape(s), `"`, `""`) + `"`
}
