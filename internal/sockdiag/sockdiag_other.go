//go:build !linux

package sockdiag

import (
	"context"
	"errors"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// ErrUnsupported is returned off Linux: there are no sockets to end.
var ErrUnsupported = errors.New("ending established connections needs Linux")

// Ender ends nothing off Linux.
type Ender struct{}

// EndDisallowed reports ErrUnsupported.
func (Ender) EndDisallowed(context.Context, policy.Ruleset) (int, error) { return 0, ErrUnsupported }
