package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
)

type rateStatusJSON struct {
	RateLimit  string `json:"rate_limit"`
	RateLimits []struct {
		UID  uint32 `json:"uid"`
		User string `json:"user"`
		Rate string `json:"rate"`
	} `json:"rate_limits"`
	Exceptions []struct {
		To   string `json:"to"`
		Rate string `json:"rate"`
	} `json:"exceptions"`
}

func (h *harness) rateStatus() rateStatusJSON {
	h.t.Helper()
	var st rateStatusJSON
	if err := json.Unmarshal([]byte(h.ok("status", "--json")), &st); err != nil {
		h.t.Fatal(err)
	}
	return st
}

type auditJSON []struct {
	Operation string `json:"operation"`
	Detail    string `json:"detail"`
}

func (h *harness) audit() auditJSON {
	h.t.Helper()
	var recs auditJSON
	if err := json.Unmarshal([]byte(h.ok("audit", "--json")), &recs); err != nil {
		h.t.Fatal(err)
	}
	return recs
}

func TestAllowWithRateAndSetRateLimit(t *testing.T) {
	h := newHarness(t)
	h.ok("enable", "--backend", "fake")
	for _, step := range []struct {
		args []string
		out  string
	}{
		{[]string{"allow", "user", "alice", "--rate", "5/m"}, "user alice allowed to connect to remote SMTP servers, at most 5/m connections"},
		{[]string{"allow", "group", "mailers"}, "group mailers allowed to connect to remote SMTP servers"},
		{[]string{"set", "rate-limit", "100/h"}, "default rate limit set to 100/h"},
		{[]string{"allow", "user", "bob", "--to", "192.0.2.2", "--rate", "2/s"}, "user bob may now connect to 192.0.2.2 on every restricted port, and no other SMTP server, at most 2/s connections"},
	} {
		if out := h.ok(step.args...); !strings.HasPrefix(strings.TrimSpace(out), step.out) {
			t.Errorf("smtpguard %s = %q, want %q", strings.Join(step.args, " "), out, step.out)
		}
	}
	// alice: her own 5/m; bob (a member of mailers, which has no rate of
	// its own): his exception's 2/s wins over the default.
	st := h.rateStatus()
	if st.RateLimit != "100/h" {
		t.Errorf("rate_limit = %q, want 100/h", st.RateLimit)
	}
	got := map[string]string{}
	for _, r := range st.RateLimits {
		got[r.User] = r.Rate
	}
	if diff := cmp.Diff(map[string]string{"alice": "5/m", "bob": "2/s"}, got); diff != "" {
		t.Errorf("rate_limits (-want +got):\n%s", diff)
	}
	if len(st.Exceptions) != 1 || st.Exceptions[0].Rate != "2/s" {
		t.Errorf("exceptions = %+v, want one with rate 2/s", st.Exceptions)
	}
	installed := h.backend.Installed()
	if installed == nil {
		t.Fatal("nothing installed")
	}
	want := []policy.UIDRate{{UID: 1001, Rate: policy.Rate{Count: 5, Period: time.Minute}}, {UID: 1002, Rate: policy.Rate{Count: 2, Period: time.Second}}}
	if diff := cmp.Diff(want, installed.RateLimits); diff != "" {
		t.Errorf("installed RateLimits (-want +got):\n%s", diff)
	}
	recs := h.audit()
	if len(recs) < 4 || recs[0].Operation != "allow exception" || recs[0].Detail != "user bob --to 192.0.2.2 --rate 2/s" ||
		recs[1].Operation != "set rate-limit" || recs[1].Detail != "100/h" || recs[3].Detail != "user alice --rate 5/m" {
		t.Errorf("audit = %+v, want one record per change, newest first", recs)
	}

	// Changing only the rate of one already allowed; allowing again
	// without --rate keeps it; off exempts her from the default.
	if out := h.ok("allow", "user", "alice", "--rate", "10/minute"); !strings.Contains(out, "user alice: at most 10/m connections") {
		t.Errorf("rate change = %q", out)
	}
	if out := h.ok("allow", "user", "alice"); !strings.Contains(out, "already allowed; nothing changed") {
		t.Errorf("allow again = %q, want nothing changed", out)
	}
	h.ok("allow", "user", "alice", "--rate", "off")
	h.ok("set", "rate-limit", "off")
	if st := h.rateStatus(); len(st.RateLimits) != 1 || st.RateLimits[0].User != "bob" || st.RateLimit != "off" {
		t.Errorf("after alice --rate off and rate-limit off: %+v, want only bob limited", st)
	}

	// Bad rates: exit 2, one line, nothing changed.
	before := len(h.audit())
	for _, args := range [][]string{
		{"allow", "user", "alice", "--rate", "5/w"},
		{"allow", "user", "alice", "--rate", "0/m"},
		{"allow", "user", "bob", "--to", "192.0.2.2", "--rate", "lots"},
		{"set", "rate-limit", "100"},
	} {
		r := h.run(args...)
		if r.code != ExitUsage || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "rate") {
			t.Errorf("smtpguard %s = exit %d, stderr %q; want exit %d and one line about the rate", strings.Join(args, " "), r.code, r.stderr, ExitUsage)
		}
	}
	if after := len(h.audit()); after != before {
		t.Errorf("bad rates added %d audit records", after-before)
	}

	// Export and import keep the rates.
	h.ok("allow", "user", "alice", "--rate", "7/h")
	h.ok("set", "rate-limit", "50/d")
	file := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(file, []byte(h.ok("export")), 0o600); err != nil {
		t.Fatal(err)
	}
	h.ok("allow", "user", "alice", "--rate", "default")
	h.ok("set", "rate-limit", "off")
	h.ok("import", file)
	if st := h.rateStatus(); st.RateLimit != "50/d" || len(st.RateLimits) != 2 || st.RateLimits[0].Rate != "7/h" || st.RateLimits[1].Rate != "2/s" {
		t.Errorf("after import: %+v, want default 50/d, alice 7/h and bob 2/s", st)
	}
}

func TestStatusPrintsRatesAndCounts(t *testing.T) {
	var out strings.Builder
	st := engine.Status{RateLimit: "100/h",
		RateLimits:         []engine.RateLimitStatus{{UID: 1001, User: "alice", Rate: "5/m"}, {UID: 4242, Rate: "100/h"}},
		AllowedConnections: []engine.AllowedCount{{UID: 0, User: "root", Count: 12}, {UID: 1001, User: "alice", Count: 5}}}
	printRates(&out, st, -1)
	want := "Rate limit:\t100/h per uid, for every allowance without its own\n" +
		"Rate limited:\talice 5/m, uid 4242 100/h\n" +
		"Allowed connections:\troot 12, alice 5\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("printRates (-want +got):\n%s", diff)
	}
	out.Reset()
	printRates(&out, engine.Status{RateLimit: "off"}, -1)
	if out.Len() != 0 {
		t.Errorf("without limits or counts printRates printed %q, want nothing", out.String())
	}
}
