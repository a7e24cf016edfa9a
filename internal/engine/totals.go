package engine

import (
	"context"
	"time"

	"github.com/smtpguard/smtpguard/internal/store"
)

// UserTotals sums every attempt f selects per user, most attempts first
// (f.Limit and f.After do not apply): the totals under a page of rows count
// all matching rows, not only the shown ones. SQLite sums them.
func (e *Engine) UserTotals(ctx context.Context, f store.EventFilter) ([]UserTotal, error) {
	// No time buckets (n = 0) and no cap on users (LIMIT -1).
	_, users, err := e.EventSums(ctx, f, time.Time{}, time.Minute, 0, -1)
	return users, err
}
