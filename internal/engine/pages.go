package engine

import (
	"context"

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
	}, next, nil
}
