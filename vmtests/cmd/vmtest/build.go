package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/adoptwatch/adoptwatch/vmtests/internal/initramfs"
)

// testPkg is a package with tests, to be compiled into one binary.
type testPkg struct {
	ImportPath string
	Name       string // binary name in /tests, without ".test"
}

// smokePkg runs in every guest although it lives under vmtests/, whose other
// packages are host-side tools with plain unit tests.
const smokePkg = "/vmtests/internal/smoketest"

// listTestPackages finds every package of the module that has tests, minus
// vmtests' own host-side packages. go list -e keeps going past packages that
// do not build: their failure is reported when they are compiled.
func listTestPackages(ctx context.Context, goBin, root, module string) ([]testPkg, error) {
	cmd := exec.CommandContext(ctx, goBin, "list", "-e", "-f",
		"{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Name}}{{end}}", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %v: %s", err, stderr.String())
	}
	return selectTestPackages(string(out), module), nil
}

// selectTestPackages filters go list output ("importpath name" lines) and
// gives each binary a unique name: the package name (a command's directory
// name), or its path below the module with "/" turned into "_" when two
// packages share a name.
func selectTestPackages(list, module string) []testPkg {
	var pkgs []testPkg
	count := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		path, name, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if strings.HasPrefix(path, module+"/vmtests") && path != module+smokePkg {
			continue
		}
		name = strings.TrimSuffix(name, "_test")
		if name == "main" {
			// A command's tests are named after the command, not "main".
			name = path[strings.LastIndex(path, "/")+1:]
		}
		pkgs = append(pkgs, testPkg{ImportPath: path, Name: name})
		count[name]++
	}
	for i, p := range pkgs {
		if count[p.Name] > 1 {
			rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
			if rel == "" {
				rel = p.Name
			}
			pkgs[i].Name = strings.ReplaceAll(rel, "/", "_")
		}
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	return pkgs
}

// guestEnv builds static amd64 binaries whatever the host has.
func guestEnv() []string {
	return append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
}

// buildResult is the outcome of compiling everything the guest runs.
type buildResult struct {
	Dir      string
	Initrd   string
	Binaries []string // names in /tests
	Failed   []buildFailure
}

type buildFailure struct {
	Package string `json:"package"`
	Output  string `json:"output"`
}

// buildTests compiles /init and every test binary (two at a time: the
// machine has two cores and the linker is mostly serial).
func buildTests(ctx context.Context, goBin, root, module, dir string, logf func(string, ...any)) (*buildResult, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tests"), 0o755); err != nil {
		return nil, err
	}
	pkgs, err := listTestPackages(ctx, goBin, root, module)
	if err != nil {
		return nil, err
	}
	initBin := filepath.Join(dir, "init")
	if out, err := goCmd(ctx, goBin, root, "build", "-trimpath", "-ldflags=-s -w", "-o", initBin, "./vmtests/cmd/vminit"); err != nil {
		return nil, fmt.Errorf("building the guest init: %v\n%s", err, out)
	}

	res := &buildResult{Dir: dir}
	var mu sync.Mutex
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for _, p := range pkgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out, err := goCmd(ctx, goBin, root, "test", "-c", "-trimpath", "-ldflags=-s -w",
				"-o", filepath.Join(dir, "tests", p.Name+".test"), p.ImportPath)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				logf("build %s FAILED", p.ImportPath)
				res.Failed = append(res.Failed, buildFailure{Package: p.ImportPath, Output: strings.TrimSpace(out)})
				return
			}
			res.Binaries = append(res.Binaries, p.Name+".test")
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	sort.Strings(res.Binaries)
	sort.Slice(res.Failed, func(i, j int) bool { return res.Failed[i].Package < res.Failed[j].Package })
	return res, nil
}

// writeInitramfs packs /init, the test binaries and busybox (if any: /init
// installs its applets, sh among them, into /bin) into b.Initrd.
func writeInitramfs(b *buildResult, busybox string) error {
	a := initramfs.New()
	// /sys/fs/bpf, /sys/kernel/tracing... are not created here: they are
	// directories of sysfs itself, which /init mounts on /sys.
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "root", "tests", "bin", "usr/bin", "sbin", "usr/sbin"} {
		a.Dir(d)
	}
	a.Copy("init", filepath.Join(b.Dir, "init"), 0o755)
	for _, t := range b.Binaries {
		a.Copy("tests/"+t, filepath.Join(b.Dir, "tests", t), 0o755)
	}
	if busybox != "" {
		a.Copy("bin/busybox", busybox, 0o755)
	}
	// Enough of a user database for code that looks up root by name.
	a.Bytes("etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
	a.Bytes("etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
	b.Initrd = filepath.Join(b.Dir, "initramfs.cpio")
	return a.WriteFile(b.Initrd)
}

func goCmd(ctx context.Context, goBin, root string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	cmd.Env = guestEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}
