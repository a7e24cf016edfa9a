package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
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

// withMTA points the engine at a fake MTA.
func (f *fixture) withMTA(m mta.Manager) {
	f.eng.cfg.NewMTAManager = func(context.Context, mta.Options, *policy.Directory) (mta.Manager, error) { return m, nil }
}

func limits(max, perHost, reserve int) MTAChange {
	return MTAChange{MaxConnections: &max, MaxPerHost: &perHost, Reserve: &reserve}
}

func TestSetMTALimitsIsValidatedAndAudited(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := &fakeMTA{limits: mta.Limits{MaxConnections: 20}}
	f.withMTA(m)
	set := func(ch MTAChange) (Result, error) {
		res, _, err := f.eng.SetMTALimits(ctx, admin, mta.Options{}, ch)
		return res, err
	}
	res := must(t)(set(limits(50, 5, 0)))
	if !res.Changed || !strings.Contains(res.Message, "at most 50 simultaneous") || m.limits.MaxConnections != 50 {
		t.Errorf("SetMTALimits() = %+v, limits now %+v", res, m.limits)
	}
	recs, _ := f.eng.Audit(ctx, store.AuditFilter{})
	if len(recs) != 1 || recs[0].Operation != "mta set" || !strings.Contains(recs[0].Before, `"max_connections":20`) || !strings.Contains(recs[0].After, `"max_connections":50`) {
		t.Errorf("audit = %+v, want one mta set record with before and after", recs)
	}

	for _, bad := range []MTAChange{limits(0, 0, 0), limits(10, 11, 0), limits(10, 0, 10)} {
		_, err := set(bad)
		if !IsValidation(err) {
			t.Errorf("SetMTALimits(%d/%d/%d) = %v, want a validation error", *bad.MaxConnections, *bad.MaxPerHost, *bad.Reserve, err)
		}
	}
	if m.calls != 1 {
		t.Errorf("the MTA was asked %d times, want once: invalid limits must not reach its config", m.calls)
	}
	// Setting what is in force already changes nothing and records nothing.
	max := 50
	if res := must(t)(set(MTAChange{MaxConnections: &max})); res.Changed || m.calls != 1 {
		t.Errorf("SetMTALimits(the current limits) = %+v after %d calls, want no change and no call", res, m.calls)
	}
	if recs, _ := f.eng.Audit(ctx, store.AuditFilter{}); len(recs) != 1 {
		t.Errorf("a no-op MTA change was audited: %+v", recs)
	}

	m.err = errors.New("exim -bV: configuration error")
	if _, err := set(limits(7, 0, 0)); err == nil || !strings.Contains(err.Error(), "configuration error") {
		t.Errorf("SetMTALimits() with a refusing MTA = %v", err)
	}
	recs, _ = f.eng.Audit(ctx, store.AuditFilter{Limit: 1})
	if !strings.HasPrefix(recs[0].Outcome, "failed: ") {
		t.Errorf("failed change audited as %q", recs[0].Outcome)
	}
}

// TestMTAReaderCannotSetLimits: what MTA hands out reads only, so a limit
// change cannot bypass the state lock and the audit log.
func TestMTAReaderCannotSetLimits(t *testing.T) {
	f := newFixture(t)
	f.withMTA(&fakeMTA{limits: mta.Limits{MaxConnections: 20}})
	r, err := f.eng.MTA(context.Background(), mta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.(interface {
		SetLimits(context.Context, mta.Limits) (mta.Limits, error)
	}); ok {
		t.Errorf("Engine.MTA() = %T, which can set limits", r)
	}
}
