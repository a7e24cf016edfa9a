//go:build linux

package cli

import (
	"log/slog"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/nft"
)

// systemBackends lists the backends this build enforces with, best first.
func systemBackends(logger *slog.Logger) []enforce.Backend {
	return []enforce.Backend{nft.New(logger)}
}

// serveBackends lists the backends the daemon enforces with and serves to the
// CLI on its socket: switch the daemon to another backend here.
func serveBackends(logger *slog.Logger) []enforce.Backend {
	return systemBackends(logger)
}
