# smtpguard: one static binary, no cgo.
BIN     ?= bin/smtpguard
ARGS    ?= serve
export CGO_ENABLED = 0

# GO is the Go command: scripts/find-go looks for one that can build go.mod's
# version (PATH, /usr/local/go, the sudo user's Go, Debian's /usr/lib/go-1.*)
# and, as root on Debian without one, installs golang-go (from
# bookworm-backports on Debian 12) running with GOTOOLCHAIN. It runs once, on
# first use; `make GO=/path/to/go` skips it.
ifeq ($(origin GO),undefined)
GO = $(eval GO := $$(or $$(shell scripts/find-go),$$(error no usable Go toolchain: see find-go's message above)))$(GO)
endif

# Debian packages the tests use: nft to inspect rulesets from outside, iproute2
# for network namespaces, passwd (useradd) for test users, chromium for the web
# UI browser tests, iptables for the coexistence tests (CSF- and Docker-style
# rules), systemd-container (systemd-nspawn) and mmdebstrap for the systemd
# unit tests in a booted Debian root, lintian and rpm for the package checks,
# swaks, php-cli and libphp-phpmailer as the real SMTP clients of the explain
# mode tests (none of them pulls in an MTA: libphp-phpmailer only suggests one).
# No MTA: make test must be safe on a live mail server, so
# the Exim and Postfix tests unpack Debian's packages privately (apt-get
# download + dpkg-deb -x into a cache dir) and never install them;
# scripts/test-deps refuses any plan that would install, remove or replace an
# MTA, and `make test` checks that the host's MTA packages and configuration
# are unchanged afterwards (scripts/mta-state).
TEST_DEBS := nftables iproute2 passwd chromium iptables systemd-container mmdebstrap lintian rpm swaks php-cli libphp-phpmailer
IS_ROOT   := $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: all build run test test-deps test-fresh test-fresh-postfix vet bench clean

all: build

# The version and commit come from git (see `smtpguard version`); outside a
# checkout they stay empty and the binary reports "devel". safe.directory lets
# `sudo make install` read a checkout that another user owns: whoever owns it
# already decides what this Makefile runs.
GIT     := git -c safe.directory=$(CURDIR)
VERSION ?= $(shell $(GIT) describe --tags --always --dirty 2>/dev/null)
COMMIT  ?= $(shell $(GIT) rev-parse HEAD 2>/dev/null)
GOLDFLAGS := -s -w -X github.com/smtpguard/smtpguard/internal/cli.linkVersion=$(VERSION) -X github.com/smtpguard/smtpguard/internal/cli.linkCommit=$(COMMIT)

build:
	$(GO) build -trimpath -ldflags='$(GOLDFLAGS)' -o $(BIN) ./cmd/smtpguard

# Build and run the main job: `make run` starts the daemon (`smtpguard serve`,
# state in /var/lib/smtpguard; needs root). Other commands: ARGS, e.g. ARGS=status.
run: build
	./$(BIN) $(ARGS)

# Install what a fresh Debian machine lacks (only when root and apt-get exist),
# after recording the host's mail system for the check at the end of make test.
MTA_STATE := bin/.mta-state-before
test-deps:
	@mkdir -p bin && scripts/mta-state >$(MTA_STATE)
ifeq ($(IS_ROOT),yes)
	@scripts/test-deps $(TEST_DEBS)
endif

vet:
	$(GO) vet ./...

# Privileged tests (network namespaces, real nftables, test users) run when
# root; otherwise they skip with a reason.
test: test-deps vet
ifeq ($(IS_ROOT),yes)
	@st=0; SMTPGUARD_PRIVILEGED_TESTS=1 $(GO) test -count=1 -timeout 30m ./... || st=$$?; \
	scripts/mta-state --check $(MTA_STATE) || st=1; exit $$st
else
	@st=0; $(GO) test -count=1 ./... || st=$$?; scripts/mta-state --check $(MTA_STATE) || st=1; exit $$st
endif

# make test on a fresh Debian 12 root with nothing else installed (minbase
# plus git, make, ca-certificates, sudo; no Go): scripts/test-fresh builds the
# root with mmdebstrap once and caches it under /var/cache/smtpguard-test,
# clones this checkout into a copy and runs `make test` there as root. CI runs
# it after make test. Needs root and mmdebstrap.
test-fresh:
	scripts/test-fresh

# The same on a fresh root that runs Postfix, as a live mail server does:
# make test must leave Postfix installed and its configuration byte-identical.
test-fresh-postfix:
	TEST_FRESH_PREINSTALL=postfix scripts/test-fresh

# Benchmarks (issue P1–P7) report ratios against baselines measured in the same
# run (no rules; CSF-style iptables owner rules), print one table and write it
# to bench-results/latest.json. They need root: private network namespaces.
BENCH_DEBS := iptables nftables iproute2 passwd
bench: build
ifeq ($(IS_ROOT),yes)
	@missing=""; for p in $(BENCH_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	SMTPGUARD_PRIVILEGED_TESTS=1 $(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 15m ./...
else
	@echo "make bench needs root (network namespaces, nftables, iptables)"; exit 1
endif

clean:
	rm -rf bin

# ---- Install and packages -------------------------------------------------
# `make install` is for a local install (PREFIX=/usr/local: paths systemd, man,
# bash-completion, zsh and fish all search by default); the packages install to
# the distribution's own paths (/usr/sbin, /lib/systemd/system on Debian,
# /usr/lib/systemd/system on RPM systems). DESTDIR stages either elsewhere.
# The man pages, completion scripts and unit are generated from the code
# (tools/gendocs): the unit is install-service's own, with ExecStart at SBINDIR.
PREFIX      ?= /usr/local
SBINDIR     ?= $(PREFIX)/sbin
MANDIR      ?= $(PREFIX)/share/man
UNITDIR     ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
GEN         ?= bin/gen

# Reproducible output: the man pages' and packages' dates are the commit's,
# not the build's (given to gendocs and nfpm only).
SOURCE_DATE_EPOCH ?= $(shell $(GIT) log -1 --format=%ct 2>/dev/null || date +%s)

.PHONY: docs install uninstall package package-check distclean

# Man pages, completion scripts and the unit for this PREFIX, into bin/gen.
docs:
	rm -rf $(GEN)
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./tools/gendocs -out $(GEN) -exec $(SBINDIR)/smtpguard -version '$(VERSION)'

install: build docs
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/smtpguard
	install -m 0644 $(GEN)/smtpguard.service $(DESTDIR)$(UNITDIR)/smtpguard.service
	install -m 0644 $(GEN)/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(GEN)/completion/smtpguard.bash $(DESTDIR)$(BASHCOMPDIR)/smtpguard
	install -m 0644 $(GEN)/completion/_smtpguard $(DESTDIR)$(ZSHCOMPDIR)/_smtpguard
	install -m 0644 $(GEN)/completion/smtpguard.fish $(DESTDIR)$(FISHCOMPDIR)/smtpguard.fish
	@echo "installed $(SBINDIR)/smtpguard and $(UNITDIR)/smtpguard.service; start it with:"
	@echo "  systemctl daemon-reload && systemctl enable --now smtpguard   (it enforces nothing until 'smtpguard enable')"

# Removes what install wrote; the state in /var/lib/smtpguard and the kernel
# rules stay (run 'smtpguard disable' first to lift the restriction).
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/smtpguard $(DESTDIR)$(UNITDIR)/smtpguard.service \
		$(DESTDIR)$(MANDIR)/man8/smtpguard.8 $(DESTDIR)$(MANDIR)/man8/smtpguard-*.8 \
		$(DESTDIR)$(BASHCOMPDIR)/smtpguard $(DESTDIR)$(ZSHCOMPDIR)/_smtpguard \
		$(DESTDIR)$(FISHCOMPDIR)/smtpguard.fish

# .deb and .rpm into DIST, with the nfpm pinned in tools/nfpm/go.mod (its
# dependencies stay out of smtpguard's module), from files staged in PKG_ROOT.
# The package version is git describe made valid for dpkg and rpm
# (tools/pkgversion); built twice from one commit, the packages are identical.
PKG_ARCH       ?= $(shell $(GO) env GOARCH)
PKG_MAINTAINER ?= smtpguard developers <smtpguard@users.noreply.github.com>
PKG_ROOT       ?= bin/pkg
DIST           ?= dist
NFPM           := $(GO) tool -modfile=tools/nfpm/go.mod nfpm
package:
	rm -rf $(PKG_ROOT) $(DIST)/smtpguard[-_]* && mkdir -p $(PKG_ROOT)/man $(DIST)
	GOOS=linux GOARCH=$(PKG_ARCH) $(GO) build -trimpath -ldflags='$(GOLDFLAGS)' -o $(PKG_ROOT)/smtpguard ./cmd/smtpguard
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./tools/gendocs -out $(PKG_ROOT)/gen -exec /usr/sbin/smtpguard -version '$(VERSION)'
	for f in $(PKG_ROOT)/gen/man/*.8; do gzip -9n < $$f > $(PKG_ROOT)/man/$${f##*/}.gz; done
	@set -e; v=$$($(GO) run ./tools/pkgversion '$(VERSION)' "$$(TZ=UTC date -d @$(SOURCE_DATE_EPOCH) +%Y%m%d)"); \
	{ printf 'smtpguard (%s-1) unstable; urgency=medium\n\n' "$$v"; \
	  printf '  * Built from git describe %s,\n    commit %s.\n\n' '$(VERSION)' '$(COMMIT)'; \
	  printf ' -- %s  %s\n' '$(PKG_MAINTAINER)' "$$(LC_ALL=C TZ=UTC date -R -d @$(SOURCE_DATE_EPOCH))"; \
	} | gzip -9n > $(PKG_ROOT)/changelog.Debian.gz; \
	for p in deb rpm; do \
		SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) PKG_VERSION=$$v PKG_ARCH=$(PKG_ARCH) PKG_ROOT=$(PKG_ROOT) PKG_MAINTAINER='$(PKG_MAINTAINER)' \
			$(NFPM) package --config packaging/nfpm.yaml --packager $$p --target $(DIST)/; \
	done

# Build the packages and check the .deb: its files and control fields,
# lintian with no errors or warnings, and a real dpkg install, reinstall,
# remove and purge in a throwaway Debian 12 root (packaging/chroot-check),
# never on this host. Needs root; installs lintian and mmdebstrap if missing.
PKG_CHECK_DEBS := lintian mmdebstrap
package-check: package
ifeq ($(IS_ROOT),yes)
	@missing=""; for p in $(PKG_CHECK_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@deb=$$(ls $(DIST)/smtpguard_*.deb); set -ex; \
	dpkg-deb -I $$deb; dpkg-deb -c $$deb; \
	lintian --fail-on error,warning --display-info $$deb; \
	packaging/chroot-check $$deb $$(ls $(DIST)/smtpguard-*.rpm)
else
	@echo "make package-check needs root (lintian's install, dpkg in a throwaway root)"; exit 1
endif

distclean: clean
	rm -rf dist
