//go:build linux

package cli

import (
	"regexp"
	"strings"
	"testing"
)

// TestDoctorSaysHoldAndRateLimit: doctor's policy check names a user's
// rate limit, says a held user is held (since, until, reason) and gives the
// release command as the fix, and passes again once released.
func TestDoctorSaysHoldAndRateLimit(t *testing.T) {
	h, n := doctorHost(t, true)
	n.greet["192.0.2.25:25"] = "220 mx.example.net ESMTP\r\n"
	h.ok("enable")
	h.ok("allow", "user", "alice", "--rate", "100/h")

	_, rep, _ := h.doctorJSON("--user", "alice", "--to", "mx.example.net")
	pol := checkOf(t, rep, "policy")
	if !pol.OK || !strings.Contains(pol.Detail, "allowed user alice; rate limit 100/h: beyond 100 connections in 1h they are refused and recorded as rate-limited") {
		t.Errorf("policy check of a rate-limited user = %+v, want ok naming its limit", pol)
	}

	h.ok("hold", "user", "alice", "--for", "2h", "--reason", "phishing kit")
	code, rep, _ := h.doctorJSON("--user", "alice", "--to", "mx.example.net")
	pol = checkOf(t, rep, "policy")
	held := regexp.MustCompile(`^smtpguard refuses alice \(uid 1001\) connecting to 192\.0\.2\.25 \(mx\.example\.net\) port 25: ` +
		`alice is on hold since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(phishing kit\): its allowances and exceptions are suspended, so the block rule`)
	if code != ExitFailure || pol.OK || !held.MatchString(pol.Detail) || !strings.HasSuffix(pol.Fix, "smtpguard release user alice") {
		t.Errorf("policy check of a held user (exit %d) = %+v; want a failure saying held since, until and why, fixed by smtpguard release user alice", code, pol)
	}

	// A user the policy refuses anyway gets the allow fix, and the hold is
	// still said.
	h.ok("hold", "user", "bob", "--for", "0")
	_, rep, _ = h.doctorJSON("--user", "bob", "--to", "mx.example.net")
	if pol := checkOf(t, rep, "policy"); pol.OK || !strings.Contains(pol.Detail, "bob is on hold since") || !strings.Contains(pol.Detail, "until released") ||
		!strings.Contains(pol.Fix, "smtpguard allow user bob") {
		t.Errorf("policy check of a held user the policy refuses anyway = %+v", pol)
	}

	h.ok("release", "user", "alice")
	_, rep, _ = h.doctorJSON("--user", "alice", "--to", "mx.example.net")
	if pol := checkOf(t, rep, "policy"); !pol.OK || strings.Contains(pol.Detail, "hold") {
		t.Errorf("policy check after the release = %+v, want ok without a hold", pol)
	}
}
