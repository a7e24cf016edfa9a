package engine

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// The web settings page saves ports, mode, rate limit and the hold settings
// at once: one transaction, one audit record, all or nothing.
func TestSetSettingsWithHoldSettingsIsOneChange(t *testing.T) {
	ctx := t.Context()
	f, _ := newHoldFixture(t)
	auditLen := func() int {
		recs, err := f.eng.Audit(ctx, store.AuditFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	n := auditLen()

	res, err := f.eng.SetSettings(ctx, testActor, Settings{Ports: ptr("25,587"), HoldAfter: ptr("10/m"), HoldFor: ptr("0")})
	if err != nil {
		t.Fatalf("SetSettings() = %v", err)
	}
	if !res.Changed || !strings.Contains(res.Message, "restricted ports set to 25,587") || !strings.Contains(res.Message, "holds last until released") {
		t.Errorf("SetSettings() = %+v, want a change naming the ports and the hold length", res)
	}
	hs, err := f.eng.HoldSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.HoldSettings{After: policy.Rate{Count: 10, Period: time.Minute}, For: 0}, hs); diff != "" {
		t.Errorf("hold settings (-want +got):\n%s", diff)
	}
	if got := auditLen(); got != n+1 {
		t.Errorf("audit records after one save = %d, want %d (one record for the whole save)", got, n+1)
	}
	recs, _ := f.eng.Audit(ctx, store.AuditFilter{Limit: 1})
	if len(recs) != 1 || recs[0].Detail != "ports 25,587 hold-after 10/m hold-for 0" {
		t.Errorf("latest audit record = %+v, want detail %q", recs, "ports 25,587 hold-after 10/m hold-for 0")
	}

	// Only the hold settings change: still audited, still one record.
	n = auditLen()
	res, err = f.eng.SetSettings(ctx, testActor, Settings{Ports: ptr("25,587"), HoldFor: ptr("2h")})
	if err != nil || !res.Changed || res.Message != "holds last 2h" {
		t.Errorf("SetSettings(hold-for 2h) = %+v, %v; want changed, %q", res, err, "holds last 2h")
	}
	if got := auditLen(); got != n+1 {
		t.Errorf("audit records after a hold-only save = %d, want %d", got, n+1)
	}
	res, err = f.eng.SetSettings(ctx, testActor, Settings{HoldFor: ptr("2h")})
	if err != nil || res.Changed || res.Message != "settings unchanged" {
		t.Errorf("SetSettings(same) = %+v, %v; want unchanged", res, err)
	}
}

func TestSetSettingsBadHoldSettingChangesNothing(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		s       Settings
		wantErr string
	}{
		{"bad hold-after", Settings{Ports: ptr("25"), HoldAfter: ptr("5/x")}, `hold-after: invalid rate "5/x": the period must be s, m, h or d (e.g. 100/h)`},
		{"hold-after too high", Settings{Ports: ptr("25"), HoldAfter: ptr("2000/m")}, "hold-after 2000/m: at most 1000 attempts (the daemon keeps each one's time)"},
		{"bad hold-for", Settings{Ports: ptr("25"), HoldFor: ptr("5x")}, `hold-for: invalid duration "5x": write e.g. 30m, 2h or 1d, or 0 for until released`},
		{"bad ports with good holds", Settings{Ports: ptr("25,x"), HoldAfter: ptr("3/m"), HoldFor: ptr("0")}, "ports: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newHoldFixture(t)
			before, meta := f.stored(t)
			hs, _ := f.eng.HoldSettings(ctx)
			_, err := f.eng.SetSettings(ctx, testActor, tc.s)
			if err == nil || !IsValidation(err) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("SetSettings() = %v, want bad input %q", err, tc.wantErr)
			}
			after, meta2 := f.stored(t)
			hs2, _ := f.eng.HoldSettings(ctx)
			if !before.Equal(after) || meta.Revision != meta2.Revision || hs != hs2 {
				t.Errorf("bad input changed state: policy rev %d -> %d, holds %+v -> %+v", meta.Revision, meta2.Revision, hs, hs2)
			}
		})
	}
}

// A kernel refusal of the policy part leaves the hold settings as they were.
func TestSetSettingsEnforceFailureKeepsHoldSettings(t *testing.T) {
	ctx := t.Context()
	f, _ := newHoldFixture(t)
	hs, _ := f.eng.HoldSettings(ctx)
	f.backend.FailApply(errors.New("netlink: boom"))
	if _, err := f.eng.SetSettings(ctx, testActor, Settings{Ports: ptr("25"), HoldAfter: ptr("3/m"), HoldFor: ptr("0")}); err == nil {
		t.Fatal("SetSettings() with a failing kernel = nil error")
	}
	f.backend.FailApply(nil)
	if hs2, _ := f.eng.HoldSettings(ctx); hs2 != hs {
		t.Errorf("hold settings after a failed save = %+v, want unchanged %+v", hs2, hs)
	}
}
