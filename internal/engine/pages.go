package engine

import (
	"context"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// AuditPage is Audit for one page: at most f.Limit records older than
// f.After, and the cursor of the next page ("" when there is none).
func (e *Engine) AuditPage(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, string, error) {
	return e.store.AuditPage(ctx, f)
}

// AllowedView is one page of the allowed list as status shows it.
type AllowedView struct {
	Users      []string          `json:"users"`
	Groups     []string          `json:"groups"`
	Exceptions []ExceptionStatus `json:"exceptions"`
	// UserRates and GroupRates are the own rate limits of those listed
	// that have one ("5/m", "off"), by name as listed.
	UserRates  map[string]string `json:"user_rates"`
	GroupRates map[string]string `json:"group_rates"`
}

// AllowedPage returns at most limit entries of the allowed list (users, then
// groups, then exceptions) after the cursor after, and the cursor of the
// next page ("" when there is none).
func (e *Engine) AllowedPage(ctx context.Context, after string, limit int) (AllowedView, string, error) {
	page, next, err := e.store.AllowedPage(ctx, after, limit)
	if err != nil {
		return AllowedView{}, "", err
	}
	dns, err := e.store.DNSCache(ctx)
	if err != nil {
		return AllowedView{}, "", err
	}
	return AllowedView{
		Users:      refs(page.Users),
		Groups:     refs(page.Groups),
		Exceptions: exceptionStatus(policy.Policy{Exceptions: page.Exceptions}, dns),
		UserRates:  ownRates(page.Users),
		GroupRates: ownRates(page.Groups),
	}, next, nil
}

// EventSums sums the recorded attempts f selects into n buckets of size from
// start, and per user (at most maxUsers, most attempts first), without
// reading the rows themselves.
func (e *Engine) EventSums(ctx context.Context, f store.EventFilter, start time.Time, size time.Duration, n, maxUsers int) ([]int64, []UserTotal, error) {
	buckets, sums, err := e.store.EventSums(ctx, f, start, size, n, maxUsers)
	if err != nil {
		return nil, nil, err
	}
	users := make([]UserTotal, len(sums))
	for i, u := range sums {
		users[i] = UserTotal{User: u.User, UID: u.UID, Attempts: u.Attempts, Destinations: u.Destinations}
	}
	return buckets, users, nil
}
