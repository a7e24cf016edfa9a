//go:build linux

package nft

import "github.com/smtpguard/smtpguard/internal/enforce"

// Describe is part of enforce.Backend. The limitations are measured by the
// bypass tests (test/e2e/bypass_test.go), which fail when one of them stops
// being true.
func (b *Backend) Describe() enforce.Description {
	return enforce.Description{
		Covers: "connections this host's processes open in its own network namespace (nftables output hook, matched by the socket's owner)",
		Limitations: []string{
			"a socket opened by root or an allowed user and then handed to another process (fd passing, or setuid after socket()) keeps its owner's uid and is allowed",
			"processes in other network namespaces (containers with their own network stack) are not covered: their packets are routed or bridged, not sent by this host's output path",
		},
		Refusal:             "refused with a TCP reset",
		ChangeNotifications: true,
	}
}
