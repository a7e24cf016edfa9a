package engine

import (
	"context"
	"slices"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Access is who may connect under the stored policy with the accounts as
// they are: the allowed uids and the expanded exceptions.
type Access struct {
	UIDs       []uint32
	Exceptions []policy.ExceptionRule
	RateLimits []policy.UIDRate // joining a group can change a uid's rate alone
}

// Equal reports whether a and b let the same uids through.
func (a Access) Equal(b Access) bool {
	return slices.Equal(a.UIDs, b.UIDs) && slices.Equal(a.Exceptions, b.Exceptions) && slices.Equal(a.RateLimits, b.RateLimits)
}

// ResolvedAccess resolves the stored policy against the accounts now. The
// daemon compares it across account-file changes, most of which (a password
// change, a login shell) alter nobody's access.
func (e *Engine) ResolvedAccess(ctx context.Context) (Access, error) {
	p, _, err := e.store.Policy(ctx)
	if err != nil {
		return Access{}, err
	}
	v, err := e.currentView(ctx)
	if err != nil {
		return Access{}, err
	}
	res, _ := e.resolve(ctx, p, v)
	return Access{UIDs: res.UIDs, Exceptions: res.Exceptions, RateLimits: res.RateLimits}, nil
}
