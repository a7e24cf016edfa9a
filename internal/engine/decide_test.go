package engine

import (
	"context"
	"net/netip"
	"testing"

	"github.com/smtpguard/smtpguard/internal/policy"
)

func TestDecideNamesTheDecidingRule(t *testing.T) {
	f := newFixture(t, "usr/sbin/exim4")
	ctx := context.Background()
	must(t)(f.eng.Enable(ctx, admin, "fake"))
	must(t)(f.eng.Allow(ctx, admin, policy.KindUser, "alice"))
	must(t)(f.eng.Allow(ctx, admin, policy.KindGroup, "mailers"))
	must(t)(f.eng.AllowException(ctx, admin, policy.KindUser, "dave", "192.0.2.0/24", "587"))
	remote := netip.MustParseAddr("192.0.2.25")
	tests := []struct {
		name    string
		uid     uint32
		addr    netip.Addr
		port    uint16
		local   bool
		rule    policy.Rule
		refused bool
		why     string
	}{
		{"root", 0, remote, 25, false, policy.RuleAllowedUID, false, "root"},
		{"the MTA's account", 101, remote, 25, false, policy.RuleAllowedUID, false, "MTA exim"},
		{"an allowed user", 1001, remote, 25, false, policy.RuleAllowedUID, false, "allowed user alice"},
		{"a supplementary member of an allowed group", 1003, remote, 465, false, policy.RuleAllowedUID, false, "allowed group mailers"},
		{"an exception", 1004, remote, 587, false, policy.RuleException, false, "the exception user dave --to 192.0.2.0/24 --port 587"},
		{"the exception's other port", 1004, remote, 25, false, policy.RuleBlock, true,
			"the block rule (mode reject): refused by the fake fake; dave is neither allowed nor has an exception for 192.0.2.25 port 25"},
		{"any remote server", 1004, netip.Addr{}, 587, false, policy.RuleBlock, true,
			"the block rule (mode reject): refused by the fake fake; dave is neither allowed nor has an exception for port 587 of remote servers"},
		{"a port not restricted", 1004, remote, 8025, false, policy.RuleOtherPort, false, "port 8025 is not restricted (restricted ports: 25,465,587,2525)"},
		{"this host's own address", 1004, remote, 25, true, policy.RuleLocal, false,
			"192.0.2.25 is a local address, and local addresses are always reachable (allow-local on)"},
		{"loopback is local", 4242, netip.MustParseAddr("::1"), 25, false, policy.RuleLocal, false,
			"::1 is a local address, and local addresses are always reachable (allow-local on)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := f.eng.Decide(ctx, tt.uid, tt.addr, tt.port, tt.local)
			if err != nil {
				t.Fatal(err)
			}
			if d.Rule != tt.rule || d.Refused() != tt.refused || d.Why != tt.why {
				t.Errorf("Decide(uid %d, %v, %d) = rule %s, refused %v, why %q; want rule %s, refused %v, why %q",
					tt.uid, tt.addr, tt.port, d.Rule, d.Refused(), d.Why, tt.rule, tt.refused, tt.why)
			}
		})
	}

	t.Run("disabled refuses nothing", func(t *testing.T) {
		must(t)(f.eng.Disable(ctx, admin))
		d, err := f.eng.Decide(ctx, 1004, remote, 25, false)
		if err != nil {
			t.Fatal(err)
		}
		if d.Refused() || d.Enabled || d.Why != "the restriction is disabled: nothing refuses it" {
			t.Errorf("Decide while disabled = %+v, want not refused, saying the restriction is disabled", d)
		}
	})
}
