# smtpguard: one static binary, no cgo.
GO      ?= go
BIN     ?= bin/smtpguard
ARGS    ?= serve
export CGO_ENABLED = 0

# Debian packages the tests use: nft to inspect rulesets from outside, iproute2
# for network namespaces, passwd (useradd) for test users, a real Exim for the
# connection-limit tests (they run their own private daemon), chromium for the
# web UI browser tests. The Postfix test unpacks Debian's postfix package
# privately (apt-get download; it conflicts with exim4).
TEST_DEBS := nftables iproute2 passwd exim4-daemon-light chromium iptables
IS_ROOT   := $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: all build run test test-deps vet bench clean

all: build

build:
	$(GO) build -trimpath -ldflags='-s -w' -o $(BIN) ./cmd/smtpguard

# Build and run the main job: `make run` starts the daemon (`smtpguard serve`,
# state in /var/lib/smtpguard; needs root). Other commands: ARGS, e.g. ARGS=status.
run: build
	./$(BIN) $(ARGS)

# Install what a fresh Debian machine lacks (only when root and apt-get exist).
test-deps:
ifeq ($(IS_ROOT),yes)
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endif

vet:
	$(GO) vet ./...

# Privileged tests (network namespaces, real nftables, test users) run when
# root; otherwise they skip with a reason.
test: test-deps vet
ifeq ($(IS_ROOT),yes)
	SMTPGUARD_PRIVILEGED_TESTS=1 $(GO) test -count=1 -timeout 30m ./...
else
	$(GO) test -count=1 ./...
endif

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
