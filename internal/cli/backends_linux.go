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
