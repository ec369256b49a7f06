# adoptwatch: see README.md.
#   make              build ./adoptwatch (no clang needed: the BPF objects are committed)
#   sudo make check   everything CI runs: generated code current, host tests, VM matrix
#   sudo make test    host tests (BPF tests load the real programs: need root)
#   make vmtest       the integration suite in VMs on Linux 5.10, 6.1, 6.12, 7.x
#   make vmtest KERNEL=/path/to/vmlinuz   ... on a kernel image of your own
#   sudo make bench   cost and scale benchmark (BENCHFLAGS="-compare OLD_BINARY -rounds 9" ...)
#   make generate     rebuild the BPF objects and Go bindings (needs clang, libbpf-dev)
#   sudo make deps    install what generate, vmtest and bench need (Debian/Ubuntu)
#   sudo make bench-deps  optional: bpftrace and forkstat, the tools bench compares with
#   sudo make install binary, systemd unit and man page under PREFIX (default /usr/local);
#                     DESTDIR=/tmp/stage stages the same tree for a package
#   make man          regenerate dist/adoptwatch.8 from the flag definitions

GO ?= go
KERNEL ?=
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
# systemd reads units from /usr/local/lib/systemd/system and /usr/lib/systemd/system:
# the unit goes with the binary, and names it by its installed path.
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR ?= $(PREFIX)/share/man

.PHONY: all build generate man check-generated test vmtest bench bench-deps check deps install clean

all: build

build:
	$(GO) build -o adoptwatch ./cmd/adoptwatch

generate:
	$(GO) generate ./bpf

man:
	$(GO) generate ./cmd/adoptwatch

# CI: the committed BPF objects and bindings must be what the C sources produce.
check-generated: generate
	@git diff --exit-code --stat -- bpf/ || { echo "bpf/: committed output is stale: run 'make generate' and commit"; exit 1; }

test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...

vmtest:
	$(GO) run ./vmtests/cmd/vmtest $(if $(KERNEL),--kernel $(KERNEL))

bench: build
	$(GO) run ./cmd/adoptbench -adoptwatch ./adoptwatch $(BENCHFLAGS)

check: check-generated test vmtest

deps:
	./.ci/install-deps

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man8
	install -m 0755 adoptwatch $(DESTDIR)$(BINDIR)/adoptwatch
	sed 's|/usr/local/bin/adoptwatch|$(BINDIR)/adoptwatch|g' dist/adoptwatch.service > $(DESTDIR)$(UNITDIR)/adoptwatch.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/adoptwatch.service
	install -m 0644 dist/adoptwatch.8 $(DESTDIR)$(MANDIR)/man8/adoptwatch.8

bench-deps:
	./.ci/install-bench-deps

clean:
	rm -f adoptwatch
