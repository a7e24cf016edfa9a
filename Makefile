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
# UI browser tests. No MTA: make test must be safe on a live mail server, so
# the Exim and Postfix tests unpack Debian's packages privately (apt-get
# download + dpkg-deb -x into a cache dir) and never install them;
# scripts/test-deps refuses any plan that would install, remove or replace an
# MTA, and `make test` checks that the host's MTA packages and configuration
# are unchanged afterwards (scripts/mta-state).
TEST_DEBS := nftables iproute2 passwd chromium
IS_ROOT   := $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: all build run test test-deps test-fresh test-fresh-postfix vet bench clean

all: build

build:
	$(GO) build -trimpath -ldflags='-s -w' -o $(BIN) ./cmd/smtpguard

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
