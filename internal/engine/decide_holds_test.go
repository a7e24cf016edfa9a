package engine

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
)

func TestDecideSaysHoldAndRate(t *testing.T) {
	ctx := t.Context()
	f, _ := newHoldFixture(t) // alice allowed, bob allowed to 192.0.2.25:25; 10:00 UTC
	if _, err := f.eng.SetRateLimit(ctx, testActor, "100/h"); err != nil {
		t.Fatal(err)
	}
	remote := netip.MustParseAddr("192.0.2.25")
	d, err := f.eng.Decide(ctx, 1001, remote, 25, false)
	if err != nil {
		t.Fatal(err)
	}
	if d.Refused() || d.Rate != (policy.Rate{Count: 100, Period: time.Hour}) || d.Held != nil ||
		d.Why != "allowed user alice; rate limit 100/h: beyond 100 connections in 1h they are refused and recorded as rate-limited" {
		t.Errorf("Decide(alice) = %+v, want allowed with its rate limit", d)
	}
	if _, err := f.eng.Hold(ctx, testActor, HoldRequest{User: "bob", For: ptr(2 * time.Hour), Reason: "burst"}); err != nil {
		t.Fatal(err)
	}
	d, err = f.eng.Decide(ctx, 1002, remote, 25, false)
	if err != nil {
		t.Fatal(err)
	}
	want := "bob is on hold since 2026-12-01 10:00:00 UTC, until 2026-12-01 12:00:00 UTC (burst): its allowances and exceptions are suspended, so the block rule"
	if !d.Refused() || d.Held == nil || !d.HoldRefuses || !d.Rate.IsZero() || !strings.HasPrefix(d.Why, want) {
		t.Errorf("Decide(held bob) = %+v, want refused by the hold, why starting %q", d, want)
	}
	// A port that is not restricted does not depend on the hold.
	d, _ = f.eng.Decide(ctx, 1002, remote, 8025, false)
	if d.Refused() || d.HoldRefuses || !strings.HasSuffix(d.Why, "(burst), which this connection does not depend on") {
		t.Errorf("Decide(held bob, port 8025) = %+v", d)
	}
}

// HoldTarget refuses what Hold refuses, before anything is asked or held.
func TestHoldTarget(t *testing.T) {
	ctx := t.Context()
	f, _ := newHoldFixture(t)
	if uid, name, err := f.eng.HoldTarget(ctx, "alice"); err != nil || uid != 1001 || name != "alice" {
		t.Errorf("HoldTarget(alice) = %d %q %v, want 1001 alice", uid, name, err)
	}
	for ref, want := range map[string]string{
		"root":        "root (uid 0) cannot be held",
		"Debian-exim": "is the MTA exim's account and cannot be held",
		"nosuch":      `no such user "nosuch"`,
	} {
		if _, _, err := f.eng.HoldTarget(ctx, ref); err == nil || !IsValidation(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("HoldTarget(%s) = %v, want bad input %q", ref, err, want)
		}
	}
	if held, _ := f.eng.Holds(ctx); len(held) != 0 {
		t.Errorf("HoldTarget held: %+v", held)
	}
}
