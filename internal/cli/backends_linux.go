//go:build linux

package cli

import (
	"log/slog"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/nft"
)

// systemBackends lists the backends this build enforces with, best first.
func systemBackends(logger *slog.Logger) []enforce.Backend {
	return []enforce.Backend{nft.New(nft.Config{Logger: logger})}
}

// serveBackends lists the backends the daemon enforces with and serves to the
// CLI on its socket. The daemon owns its nftables table (where the kernel
// supports owner+persist tables), so while it runs nobody else can flush or
// edit it; the CLI's changes come through the socket.
func serveBackends(logger *slog.Logger, owned bool) []enforce.Backend {
	if !owned {
		return systemBackends(logger)
	}
	return []enforce.Backend{nft.New(nft.Config{Logger: logger, Owner: true})}
}
