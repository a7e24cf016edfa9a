//go:build !linux

package daemon

import (
	"context"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

func addrEvents(ctx context.Context, changed func()) error { return enforce.ErrNotSupported }
