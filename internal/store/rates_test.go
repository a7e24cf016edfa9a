package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Rate limits survive the database: the default, each allowance's own (set,
// off, or following the default), and a change of one user's rate alone.
func TestRateLimitsRoundTrip(t *testing.T) {
	ctx := t.Context()
	s, path := newTestStore(t)
	p := fullPolicy()
	p.RateLimit = policy.Rate{Count: 100, Period: time.Hour}
	p.Users[0].Rate = policy.RateSetting{Set: true, Rate: policy.Rate{Count: 5, Period: time.Minute}}
	p.Users[1].Rate = policy.RateSetting{Set: true} // off
	p.Groups[1].Rate = policy.RateSetting{Set: true, Rate: policy.Rate{Count: 2, Period: time.Second}}
	p.Exceptions = []policy.Exception{
		{Principal: policy.Principal{Kind: policy.KindUser, Name: "bob", ID: 1002}, Destination: "192.0.2.2",
			Rate: policy.RateSetting{Set: true, Rate: policy.Rate{Count: 1, Period: 24 * time.Hour}}},
		{Principal: policy.Principal{Kind: policy.KindGroup, Name: "ops", ID: 3000}, Destination: "smtp.example.net"},
	}
	putPolicy(t, s, p, testAt, "root")
	check := func(step string, want policy.Policy) {
		t.Helper()
		for _, reader := range []*Store{s, openAt(t, path)} {
			got, _, err := reader.Policy(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s: Policy() (-want +got):\n%s", step, diff)
			}
		}
		page, _, err := s.AllowedPage(ctx, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want.Users, page.Users, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: AllowedPage users (-want +got):\n%s", step, diff)
		}
	}
	check("written", p)

	q := p.Clone()
	q.Users[2].Rate = policy.RateSetting{Set: true, Rate: policy.Rate{Count: 10, Period: time.Minute}}
	q.RateLimit = policy.Rate{}
	putPolicy(t, s, q, testAt.Add(time.Minute), "root")
	check("one user's rate changed, default off", q)
}
