// Package nflog reads connection attempts that a kernel rule sent to a
// netlink log (NFLOG) group and turns them into enforce.Events. Any backend
// whose rules can log to NFLOG (nftables' "log group N", iptables' NFLOG
// target) uses it; it knows nothing of the rules themselves. It builds on
// Linux only.
package nflog
