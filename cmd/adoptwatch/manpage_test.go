package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestManPageCurrent: dist/adoptwatch.8 is what the current flag definitions
// produce. A flag added, removed or reworded without `make man` fails here.
func TestManPageCurrent(t *testing.T) {
	committed, err := os.ReadFile("../../dist/adoptwatch.8")
	if errors.Is(err, os.ErrNotExist) && os.Getenv("ADOPTWATCH_IN_VM") != "" {
		t.Skip("no source tree in the test VM")
	}
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := dispatch([]string{"gen-man"}, &out, &errOut); code != 0 {
		t.Fatalf("gen-man: exit %d: %s", code, errOut.String())
	}
	if bytes.Equal(out.Bytes(), committed) {
		return
	}
	got, want := strings.Split(out.String(), "\n"), strings.Split(string(committed), "\n")
	for i := 0; i < len(got) || i < len(want); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Fatalf("dist/adoptwatch.8 is stale: run `make man` and commit it. First difference, line %d:\n  committed: %q\n  current:   %q", i+1, w, g)
		}
	}
}

// TestManPageListsHelpFlags: each command's section of the page lists the
// flags its --help lists, in the same order.
func TestManPageListsHelpFlags(t *testing.T) {
	var page bytes.Buffer
	dispatch([]string{"gen-man"}, &page, io.Discard)
	sections := map[string]string{}
	for _, s := range strings.Split(page.String(), "\n.SS ")[1:] {
		name, body, _ := strings.Cut(s, "\n")
		sections[strings.Trim(name, `"`)] = body
	}
	manFlag := regexp.MustCompile(`(?m)^\.TP\n(?:\\fB\\-\w\\fR, )?\\fB\\-\\-([\w\\-]+)\\fR`)
	helpFlag := regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([\w-]+)`)
	for _, c := range []struct {
		name string
		help func(stdout, stderr io.Writer) int
	}{
		{"adoptwatch", func(o, e io.Writer) int { return watchCommand([]string{"--help"}, o, e) }},
		{"adoptwatch unwatch", func(o, e io.Writer) int { return unwatchCommand([]string{"--help"}, o, e) }},
		{"adoptwatch run", func(o, e io.Writer) int { return runCommand([]string{"--help"}, o, e) }},
	} {
		var help bytes.Buffer
		c.help(&help, &help)
		var inHelp, inMan []string
		_, flagsPart, _ := strings.Cut(help.String(), "\nFlags:\n")
		for _, m := range helpFlag.FindAllStringSubmatch(flagsPart, -1) {
			inHelp = append(inHelp, m[1])
		}
		for _, m := range manFlag.FindAllStringSubmatch(sections[c.name], -1) {
			inMan = append(inMan, strings.ReplaceAll(m[1], `\-`, "-"))
		}
		if len(inHelp) == 0 || !slices.Equal(inHelp, inMan) {
			t.Errorf("%s: --help lists %q, the man page %q", c.name, inHelp, inMan)
		}
	}
}
