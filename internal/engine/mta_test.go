package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/store"
)

// fakeMTA records limit changes and can be told to fail like a config the
// MTA refuses.
type fakeMTA struct {
	limits mta.Limits
	err    error
	calls  int
}

func (f *fakeMTA) Name() string { return "exim" }
func (f *fakeMTA) Info(context.Context) (mta.Info, error) {
	return mta.Info{MTA: "exim", Limits: f.limits}, nil
}
func (f *fakeMTA) SetLimits(_ context.Context, l mta.Limits) (mta.Limits, error) {
	f.calls++
	before := f.limits
	if f.err != nil {
		return before, f.err
	}
	f.limits = l
	return before, nil
}

func TestSetMTALimitsIsValidatedAndAudited(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := &fakeMTA{limits: mta.Limits{MaxConnections: 20}}
	res := must(t)(f.eng.SetMTALimits(ctx, admin, m, mta.Limits{MaxConnections: 50, MaxPerHost: 5}))
	if !res.Changed || !strings.Contains(res.Message, "at most 50 simultaneous") || m.limits.MaxConnections != 50 {
		t.Errorf("SetMTALimits() = %+v, limits now %+v", res, m.limits)
	}
	recs, _ := f.eng.Audit(ctx, store.AuditFilter{})
	if len(recs) != 1 || recs[0].Operation != "mta set" || !strings.Contains(recs[0].Before, `"max_connections":20`) || !strings.Contains(recs[0].After, `"max_connections":50`) {
		t.Errorf("audit = %+v, want one mta set record with before and after", recs)
	}

	for _, bad := range []mta.Limits{{MaxConnections: 0}, {MaxConnections: 10, MaxPerHost: 11}, {MaxConnections: 10, Reserve: 10}} {
		_, err := f.eng.SetMTALimits(ctx, admin, m, bad)
		if !IsValidation(err) {
			t.Errorf("SetMTALimits(%+v) = %v, want a validation error", bad, err)
		}
	}
	if m.calls != 1 {
		t.Errorf("the MTA was asked %d times, want once: invalid limits must not reach its config", m.calls)
	}

	m.err = errors.New("exim -bV: configuration error")
	if _, err := f.eng.SetMTALimits(ctx, admin, m, mta.Limits{MaxConnections: 7}); err == nil || !strings.Contains(err.Error(), "configuration error") {
		t.Errorf("SetMTALimits() with a refusing MTA = %v", err)
	}
	recs, _ = f.eng.Audit(ctx, store.AuditFilter{Limit: 1})
	if !strings.HasPrefix(recs[0].Outcome, "failed: ") {
		t.Errorf("failed change audited as %q", recs[0].Outcome)
	}
}
