package engine

import (
	"context"
	"fmt"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// AllowOptions are the optional settings of an allowance or exception.
type AllowOptions struct {
	// Rate is its own rate limit as --rate takes it: "N/PERIOD", "off" (no
	// limit whatever the default) or "default". nil leaves it as it is
	// (unset for a new allowance).
	Rate *string
}

// rate parses opts.Rate, and says it for the audit detail.
func (o AllowOptions) rate() (policy.RateSetting, string, error) {
	if o.Rate == nil {
		return policy.RateSetting{}, "", nil
	}
	rs, err := policy.ParseRateSetting(*o.Rate)
	if err != nil {
		return policy.RateSetting{}, "", invalid(fmt.Errorf("--rate: %w", err))
	}
	text := rs.String()
	if !rs.Set {
		text = "default"
	}
	return rs, " --rate " + text, nil
}

// setAllowanceRate gives an already allowed principal pr's rate (when
// changeRate), and says what changed.
func setAllowanceRate(p *policy.Policy, pr policy.Principal, changeRate bool) string {
	list := &p.Users
	if pr.Kind == policy.KindGroup {
		list = &p.Groups
	}
	for i, q := range *list {
		if !q.Same(pr) {
			continue
		}
		if !changeRate || q.Rate == pr.Rate {
			return fmt.Sprintf("%s is already allowed; nothing changed", q)
		}
		(*list)[i].Rate = pr.Rate
		if !pr.Rate.Set {
			return fmt.Sprintf("%s now follows the default rate limit (%s)", q, p.RateLimit)
		}
		return fmt.Sprintf("%s: %s", q, rateWords(pr.Rate.Rate))
	}
	return fmt.Sprintf("%s is already allowed; nothing changed", pr)
}

// rateWords says a rate limit for a message.
func rateWords(r policy.Rate) string {
	if r.IsZero() {
		return "without a rate limit"
	}
	return "at most " + r.String() + " connections"
}

// SetRateLimit sets the default rate limit of every allowed user, group and
// exception that has none of its own ("100/h", or "off").
func (e *Engine) SetRateLimit(ctx context.Context, actor Actor, value string) (Result, error) {
	r, err := policy.ParseRate(value)
	if err != nil {
		return Result{}, invalid(err)
	}
	return e.change(ctx, actor, "set rate-limit", r.String(), func(p *policy.Policy, _ *policy.Directory) (string, error) {
		if p.RateLimit == r {
			return "rate-limit is already " + r.String() + "; nothing changed", nil
		}
		p.RateLimit = r
		if r.IsZero() {
			return "default rate limit off: allowed users, groups and exceptions without their own rate are not limited", nil
		}
		return fmt.Sprintf("default rate limit set to %s for every allowed user, group and exception without its own rate (root, the MTA and the list manager are never limited)", r), nil
	})
}
