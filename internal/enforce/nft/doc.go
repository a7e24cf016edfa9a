// Package nft enforces smtpguard's ruleset with nftables over netlink
// (github.com/google/nftables; no nft binary at run time). See README.md for the
// hook, priority and rule-order choices. It builds on Linux only.
package nft
