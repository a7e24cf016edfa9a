package engine

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// fakeClock is a settable Now for the engine.
type fakeClock struct {
	mu  sync.Mutex // protects now
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newHoldFixture is an enabled policy with exim installed, alice allowed
// and bob allowed to 192.0.2.25 on port 25, on a fake clock.
func newHoldFixture(t *testing.T) (*fixture, *fakeClock) {
	t.Helper()
	base := newFixture(t, "usr/sbin/exim4")
	base.eng.Close()
	clock := &fakeClock{now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	cfg := base.cfg
	cfg.Now = clock.Now
	eng, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { eng.Close() })
	f := &fixture{eng: eng, backend: base.backend, stateDir: cfg.StateDir, cfg: cfg}
	ctx := t.Context()
	for _, op := range []func() (Result, error){
		func() (Result, error) { return eng.Enable(ctx, testActor, "fake") },
		func() (Result, error) { return eng.Allow(ctx, testActor, policy.KindUser, "alice") },
		func() (Result, error) {
			return eng.AllowException(ctx, testActor, policy.KindUser, "bob", "192.0.2.25", "25")
		},
	} {
		if _, err := op(); err != nil {
			t.Fatalf("setting up the policy: %v", err)
		}
	}
	return f, clock
}

var testActor = Actor{Name: "root", Source: "cli"}

func installed(t *testing.T, f *fixture) policy.Ruleset {
	t.Helper()
	rs := f.backend.Installed()
	if rs == nil {
		t.Fatal("nothing installed in the fake backend")
	}
	return *rs
}

func hasException(rs policy.Ruleset, uid uint32) bool {
	return slices.ContainsFunc(rs.Exceptions, func(x policy.ExceptionRule) bool { return x.UID == uid })
}

func ptr[T any](v T) *T { return &v }

func TestHoldSuspendsAllowanceAndExceptionsReleaseRestores(t *testing.T) {
	f, clock := newHoldFixture(t)
	ctx := t.Context()
	before := installed(t, f)
	if !slices.Contains(before.UIDs, 1001) || !hasException(before, 1002) {
		t.Fatalf("fixture: alice allowed and bob's exception expected, installed %+v", before)
	}
	for _, user := range []string{"alice", "1002"} {
		res, err := f.eng.Hold(ctx, testActor, HoldRequest{User: user, Reason: "spam complaint"})
		if err != nil || !res.Changed {
			t.Fatalf("Hold(%s) = %+v, %v; want a change", user, res, err)
		}
	}
	held := installed(t, f)
	if slices.Contains(held.UIDs, 1001) || hasException(held, 1002) {
		t.Errorf("while held, installed ruleset still lets alice or bob through: %+v", held)
	}
	if !slices.Contains(held.UIDs, 0) || !slices.Contains(held.UIDs, 101) {
		t.Errorf("while held, root and the MTA lost their allowance: %+v", held.UIDs)
	}
	if v := held.Trace(policy.Packet{UID: 1002, Dst: netip.MustParseAddr("192.0.2.25"), DstPort: 25}); v != policy.VerdictReject {
		t.Errorf("held bob to his exception = %s, want %s", v, policy.VerdictReject)
	}
	st, err := f.eng.Status(ctx)
	if err != nil {
		t.Fatalf("Status() = %v", err)
	}
	if st.Kernel.State != "in sync" {
		t.Errorf("Status().Kernel = %+v while held, want in sync (status compiles with the holds too)", st.Kernel)
	}
	wantHeld := []HeldUser{
		{User: "alice", UID: 1001, Since: clock.Now(), Until: ptr(clock.Now().Add(time.Hour)), Reason: "spam complaint", By: "cli:root"},
		{User: "bob", UID: 1002, Since: clock.Now(), Until: ptr(clock.Now().Add(time.Hour)), Reason: "spam complaint", By: "cli:root"},
	}
	if diff := cmp.Diff(wantHeld, st.Held); diff != "" {
		t.Errorf("Status().Held (-want +got):\n%s", diff)
	}

	// Holding again is no change; the stored policy never moved.
	if res, err := f.eng.Hold(ctx, testActor, HoldRequest{User: "alice"}); err != nil || res.Changed {
		t.Errorf("Hold(alice) again = %+v, %v; want no change", res, err)
	}
	if !slices.ContainsFunc(st.AllowedUsers, func(s string) bool { return s == "alice" }) {
		t.Errorf("the stored policy lost alice: %v", st.AllowedUsers)
	}

	for _, user := range []string{"alice", "bob"} {
		if res, err := f.eng.Release(ctx, testActor, user); err != nil || !res.Changed {
			t.Fatalf("Release(%s) = %+v, %v", user, res, err)
		}
	}
	if diff := cmp.Diff(before, installed(t, f)); diff != "" {
		t.Errorf("after release the installed ruleset differs from before the holds (-before +after):\n%s", diff)
	}
	if res, err := f.eng.Release(ctx, testActor, "alice"); err != nil || res.Changed {
		t.Errorf("Release(alice) again = %+v, %v; want no change", res, err)
	}

	recs, err := f.eng.Store().Audit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, r := range recs {
		if r.Operation == "hold" || r.Operation == "release" {
			ops = append(ops, r.Operation+" "+r.Actor+" "+r.Outcome+" "+r.Detail)
		}
	}
	slices.Reverse(ops)
	want := []string{
		"hold root ok user alice (uid 1001) held until 2026-12-01 11:00:00 UTC: spam complaint",
		"hold root ok user bob (uid 1002) held until 2026-12-01 11:00:00 UTC: spam complaint",
		"release root ok user alice (uid 1001) released",
		"release root ok user bob (uid 1002) released",
	}
	if diff := cmp.Diff(want, ops); diff != "" {
		t.Errorf("audit records of holds (-want +got):\n%s", diff)
	}
}

func TestHoldRefusesRootAndMailAccounts(t *testing.T) {
	f, _ := newHoldFixture(t)
	for _, user := range []string{"root", "0", "Debian-exim", "101", "nosuchuser", ""} {
		res, err := f.eng.Hold(t.Context(), testActor, HoldRequest{User: user})
		if !IsValidation(err) {
			t.Errorf("Hold(%q) = %+v, %v; want a validation error", user, res, err)
		}
	}
	if res, err := f.eng.Hold(t.Context(), testActor, HoldRequest{User: "alice", For: ptr(-time.Minute)}); !IsValidation(err) {
		t.Errorf("Hold(alice, --for -1m) = %+v, %v; want a validation error", res, err)
	}
	if holds, _ := f.eng.Holds(t.Context()); len(holds) != 0 {
		t.Errorf("Holds() = %+v after refused holds, want none", holds)
	}
}

func TestHoldFailedApplyChangesNothing(t *testing.T) {
	f, _ := newHoldFixture(t)
	before := installed(t, f)
	f.backend.FailApply(errors.New("netlink: boom"))
	if _, err := f.eng.Hold(t.Context(), testActor, HoldRequest{User: "alice"}); err == nil {
		t.Fatal("Hold(alice) with a failing kernel = nil error")
	}
	f.backend.FailApply(nil)
	if holds, _ := f.eng.Holds(t.Context()); len(holds) != 0 {
		t.Errorf("Holds() = %+v after a failed hold, want none", holds)
	}
	if diff := cmp.Diff(before, installed(t, f)); diff != "" {
		t.Errorf("installed ruleset changed by a failed hold (-want +got):\n%s", diff)
	}
	recs, _ := f.eng.Store().Audit(t.Context(), store.AuditFilter{Operation: "hold"})
	if len(recs) != 1 || !strings.HasPrefix(recs[0].Outcome, "failed: ") {
		t.Errorf("audit of the failed hold = %+v, want one failed record", recs)
	}
}

func TestHoldExpiresAndEscalates(t *testing.T) {
	f, clock := newHoldFixture(t)
	ctx := t.Context()
	if _, err := f.eng.SetHoldFor(ctx, testActor, "30m"); err != nil {
		t.Fatalf("SetHoldFor(30m) = %v", err)
	}
	for i := 1; i <= 2; i++ {
		if _, err := f.eng.Hold(ctx, testActor, HoldRequest{User: "alice", Threshold: "hold-after 5/m", Count: 5}); err != nil {
			t.Fatalf("hold %d: %v", i, err)
		}
		next, err := f.eng.NextHoldEnd(ctx)
		if want := clock.Now().Add(30 * time.Minute); err != nil || !next.Equal(want) {
			t.Fatalf("NextHoldEnd() = %v, %v; want %v", next, err, want)
		}
		clock.Advance(29 * time.Minute)
		if res, _ := f.eng.ExpireHolds(ctx); res.Changed {
			t.Errorf("hold %d: ExpireHolds() a minute early = %+v, want no change", i, res)
		}
		if slices.Contains(installed(t, f).UIDs, 1001) {
			t.Errorf("hold %d: alice allowed before the hold ended", i)
		}
		clock.Advance(time.Minute)
		if res, err := f.eng.ExpireHolds(ctx); err != nil || !res.Changed {
			t.Fatalf("hold %d: ExpireHolds() at the end = %+v, %v", i, res, err)
		}
		if !slices.Contains(installed(t, f).UIDs, 1001) {
			t.Errorf("hold %d: alice not allowed again after the hold expired", i)
		}
	}
	// The third hold within 24 hours lasts until released.
	if _, err := f.eng.Hold(ctx, testActor, HoldRequest{User: "alice", Threshold: "hold-after 5/m", Count: 7}); err != nil {
		t.Fatal(err)
	}
	holds, _ := f.eng.Holds(ctx)
	if len(holds) != 1 || holds[0].Until != nil || !strings.Contains(holds[0].Reason, "held 3 times within 24 hours: until released") || holds[0].By != "hold-after 5/m" || holds[0].Count != 7 {
		t.Fatalf("third hold = %+v, want until released, escalated, by the threshold", holds)
	}
	if next, _ := f.eng.NextHoldEnd(ctx); !next.IsZero() {
		t.Errorf("NextHoldEnd() = %v with only an escalated hold, want none", next)
	}
	clock.Advance(48 * time.Hour)
	f.eng.ExpireHolds(ctx)
	if slices.Contains(installed(t, f).UIDs, 1001) {
		t.Error("escalated hold ended by itself")
	}
	f.eng.Release(ctx, testActor, "alice")
	// A day later the count starts again: a fourth hold is timed.
	if _, err := f.eng.Hold(ctx, testActor, HoldRequest{User: "alice"}); err != nil {
		t.Fatal(err)
	}
	if holds, _ := f.eng.Holds(ctx); len(holds) != 1 || holds[0].Until == nil {
		t.Errorf("hold two days after the escalation = %+v, want a timed hold", holds)
	}
	recs, _ := f.eng.Store().Audit(ctx, store.AuditFilter{Operation: "hold"})
	if len(recs) == 0 || !strings.Contains(recs[len(recs)-1].Detail, "(threshold hold-after 5/m, 5 attempts)") {
		t.Errorf("audit of an automatic hold = %+v, want the threshold and its count", recs)
	}
}

func TestHoldSettings(t *testing.T) {
	f, clock := newHoldFixture(t)
	ctx := t.Context()
	st, _ := f.eng.Status(ctx)
	if st.HoldSettingsView != (HoldSettingsView{After: "off", For: "1h"}) {
		t.Errorf("default hold settings = %+v, want off and 1h", st.HoldSettingsView)
	}
	for _, bad := range [][2]string{{"hold-after", "5"}, {"hold-after", "0/m"}, {"hold-after", "1001/h"}, {"hold-for", "-1h"}, {"hold-for", "soon"}} {
		var err error
		if bad[0] == "hold-after" {
			_, err = f.eng.SetHoldAfter(ctx, testActor, bad[1])
		} else {
			_, err = f.eng.SetHoldFor(ctx, testActor, bad[1])
		}
		if !IsValidation(err) {
			t.Errorf("set %s %s = %v, want a validation error", bad[0], bad[1], err)
		}
	}
	if _, err := f.eng.SetHoldAfter(ctx, testActor, "10/m"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.eng.SetHoldFor(ctx, testActor, "0"); err != nil {
		t.Fatal(err)
	}
	st, _ = f.eng.Status(ctx)
	if st.HoldSettingsView != (HoldSettingsView{After: "10/m", For: "until released"}) {
		t.Errorf("hold settings = %+v, want 10/m and until released", st.HoldSettingsView)
	}
	f.eng.Hold(ctx, testActor, HoldRequest{User: "alice"})
	if holds, _ := f.eng.Holds(ctx); len(holds) != 1 || holds[0].Until != nil {
		t.Errorf("hold under hold-for 0 = %+v, want until released", holds)
	}
	f.eng.Hold(ctx, testActor, HoldRequest{User: "bob", For: ptr(2 * time.Hour)})
	if holds, _ := f.eng.Holds(ctx); len(holds) != 2 || holds[1].Until == nil || !holds[1].Until.Equal(clock.Now().Add(2*time.Hour)) {
		t.Errorf("hold --for 2h = %+v, want until now+2h", holds)
	}
	recs, _ := f.eng.Store().Audit(ctx, store.AuditFilter{Operation: "set"})
	if len(recs) < 2 || recs[0].Detail != "hold-for 0" || recs[1].Detail != "hold-after 10/m" {
		t.Errorf("audit of hold settings = %+v", recs)
	}
}

func TestParseHoldDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true}, {"30m", 30 * time.Minute, true}, {"2h", 2 * time.Hour, true}, {"1d", 24 * time.Hour, true},
		{"1.5d", 36 * time.Hour, true}, {"-1h", 0, false}, {"", 0, false}, {"d", 0, false}, {"10ms", 0, false}, {"1w", 0, false},
	} {
		got, err := ParseHoldDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseHoldDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestTakeHoldNoticesCoversEveryEnd(t *testing.T) {
	f, clock := newHoldFixture(t)
	ctx := t.Context()
	f.eng.Hold(ctx, testActor, HoldRequest{User: "alice", For: ptr(time.Minute)})
	f.eng.Hold(ctx, Actor{Name: "web:admin", Source: "web"}, HoldRequest{User: "bob"})
	f.eng.Release(ctx, Actor{Name: "api:ops", Source: "api"}, "bob")
	clock.Advance(time.Minute)
	f.eng.ExpireHolds(ctx)
	rows, err := f.eng.TakeHoldNotices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		what := "start " + r.By
		if r.Ended {
			what = "end " + r.ReleasedBy
		}
		got = append(got, r.User+" "+what)
	}
	want := []string{"alice start cli:root", "bob start web:admin", "alice end expiry", "bob end api:ops"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TakeHoldNotices() (-want +got):\n%s", diff)
	}
}
