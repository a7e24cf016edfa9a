//go:build !linux

package cli

import (
	"log/slog"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// systemBackends is empty off Linux: there is no kernel to enforce with.
func systemBackends(logger *slog.Logger, bpffs string) []enforce.Backend { return nil }

// serveBackends is empty off Linux too.
func serveBackends(logger *slog.Logger, owned bool, bpffs string) []enforce.Backend { return nil }
