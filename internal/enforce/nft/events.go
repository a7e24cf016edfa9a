//go:build linux

package nft

import (
	"context"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/nflog"
)

// Events is part of enforce.Backend. It reads the block rule's netlink log
// group (package nflog); the kernel attaches the socket's uid to each packet.
func (b *Backend) Events(ctx context.Context, sink func(enforce.Event)) error {
	return classify(nflog.Read(ctx, nflog.Config{Group: b.logGroup, NetNSFD: b.netnsFD, Logger: b.logger}, sink))
}
