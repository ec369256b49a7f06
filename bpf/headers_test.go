package bpf

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestHeadersStandAlone compiles each header on its own, and all of them in
// reverse order: each must include what it needs and be guarded. It needs
// clang (make deps), as `make generate` does; without it there is nothing to check.
func TestHeadersStandAlone(t *testing.T) {
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Skip("clang is not installed (make deps): the headers cannot be compiled here")
	}
	headers, err := filepath.Glob("*.h")
	if err != nil || len(headers) == 0 {
		t.Fatalf("no headers found: %v", err)
	}
	compile := func(t *testing.T, includes []string) {
		t.Helper()
		var src strings.Builder
		for _, h := range includes {
			src.WriteString("#include \"" + h + "\"\n")
		}
		dir := t.TempDir()
		file := filepath.Join(dir, "check.c")
		if err := os.WriteFile(file, []byte(src.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		wd, _ := os.Getwd()
		cmd := exec.Command(clang, "-target", "bpf", "-D__TARGET_ARCH_x86", "-I"+wd,
			"-I/usr/include/x86_64-linux-gnu", "-Wall", "-Werror", "-Wno-unused-function",
			"-fsyntax-only", file)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(includes, ", "), err, out)
		}
	}
	for _, h := range headers {
		t.Run(h, func(t *testing.T) { compile(t, []string{h, h}) }) // twice: the guard
	}
	t.Run("reverse", func(t *testing.T) {
		rev := slices.Clone(headers)
		slices.Reverse(rev)
		compile(t, rev)
	})
}
