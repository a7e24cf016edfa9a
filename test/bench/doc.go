//go:build linux

// Package bench measures what smtpguard costs, in private network namespaces,
// for each backend (nft, and bpf on a child cgroup the suite creates, never
// the root cgroup) against baselines measured in the same run: no rules at
// all, and CSF-style iptables rules (one `-m owner --uid-owner` rule per
// allowed user). Results are ratios and medians printed as one table (and
// written as JSON); nothing here asserts a timing. Run it with `make bench`
// as root, or:
//
//	SMTPGUARD_PRIVILEGED_TESTS=1 go test -run '^$' -bench . -benchtime 1x ./test/bench/
//
// SMTPGUARD_BENCH_QUICK=1 shortens every loop (to check the suite works on a
// shared machine), SMTPGUARD_BENCH_PARTS=rates,csf,cli,daemon picks phases and
// SMTPGUARD_BENCH_BPF=0 leaves the bpf column out.
//
// Addresses: the client namespace is 192.0.2.1 / 2001:db8::1, the server
// namespace 192.0.2.2 / 2001:db8::2 (documentation ranges only). Every
// connection is made from inside the client namespace, never from the host's.
package bench
