package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestAddressKey(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::99", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not-an-address", "not-an-address"},
	} {
		if got := AddressKey(tt.in); got != tt.want {
			t.Errorf("AddressKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// signIns drives BeginSignIn/FailSignIn on a fixture with a settable clock.
type signIns struct {
	t   *testing.T
	f   *fixture
	now time.Time
}

func newSignIns(t *testing.T) *signIns {
	s := &signIns{t: t, f: newFixture(t), now: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
	s.f.eng.cfg.Now = func() time.Time { return s.now }
	return s
}

// fail makes one wrong attempt and reports whether it was checked (true) or
// refused unchecked (false).
func (s *signIns) fail(account, remote string) bool {
	s.t.Helper()
	ctx := context.Background()
	a, err := s.f.eng.BeginSignIn(ctx, Lockout{}, account, remote)
	var refused *SignInRefused
	if errors.As(err, &refused) {
		return false
	}
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.f.eng.FailSignIn(ctx, Actor{Name: "anonymous", Source: "web", Remote: remote}, a); err != nil {
		s.t.Fatal(err)
	}
	return true
}

// TestSignInIPv6AddressesCountAsTheirPrefix: a new address from the same /64
// for every guess does not escape the per-address lockout.
func TestSignInIPv6AddressesCountAsTheirPrefix(t *testing.T) {
	s := newSignIns(t)
	for i := range 5 {
		if !s.fail("admin", fmt.Sprintf("2001:db8:0:7::%x", i+1)) {
			t.Fatalf("guess %d refused, want checked", i+1)
		}
	}
	if s.fail("admin", "2001:db8:0:7::ffff") {
		t.Error("a sixth guess from the same /64 was checked")
	}
	if !s.fail("admin", "2001:db8:0:8::1") {
		t.Error("a guess from another /64 was refused; want only the slow-down to begin")
	}
}

// TestSignInSlowDownHoldsForASteadyGuesser: spreading guesses over addresses
// at the slowest allowed pace does not earn fresh free guesses after a
// window; only a quiet window does.
func TestSignInSlowDownHoldsForASteadyGuesser(t *testing.T) {
	s := newSignIns(t)
	addr := 0
	next := func() string { addr++; return fmt.Sprintf("198.51.100.%d", addr%250+1) }
	checked := 0
	// 40 minutes of guessing, each as soon as allowed (probing every second).
	for range 40 * 60 {
		if s.fail("admin", next()) {
			checked++
		}
		s.now = s.now.Add(time.Second)
	}
	// 5 free, then waits of 1, 2, 4, 8, 16, 32 s, then one a minute.
	if checked > 5+6+40 {
		t.Errorf("%d guesses checked in 40 minutes, want at most %d", checked, 5+6+40)
	}
	// A window of quiet forgives.
	s.now = s.now.Add(15 * time.Minute)
	for i := range 5 {
		if !s.fail("admin", next()) {
			t.Errorf("guess %d after a quiet window refused", i+1)
		}
	}
}
