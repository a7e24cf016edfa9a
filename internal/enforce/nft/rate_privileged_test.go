//go:build linux

package nft

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// With a rate of 5/m a user's first five connections within a minute pass,
// the sixth is refused at once and logged as rate-limited; root (not in any
// rate set) is never limited; the allowed chain counts each uid's allowed
// connections; and Verify sees the buckets as no drift.
func TestPrivilegedRateLimitRefusesTheSixth(t *testing.T) {
	w := newWorld(t)
	limited := testutil.NewUser(t, "rtlim", "")
	other := testutil.NewUser(t, "rtexc", "")
	b := w.backend(true)
	t.Cleanup(func() { b.Close() })
	rs := policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25, 587}, AllowLocal: true, UIDs: []uint32{0, limited.UID},
		Exceptions: []policy.ExceptionRule{{UID: other.UID, Dst: mustPrefix(t, serverV4+"/32"), Port: 587}},
		RateLimits: []policy.UIDRate{{UID: limited.UID, Rate: policy.Rate{Count: 5, Period: time.Minute}},
			{UID: other.UID, Rate: policy.Rate{Count: 2, Period: time.Hour}}}}
	mustApply(t, b, rs)
	assertInSync(t, b, rs)

	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan enforce.Event, 64)
	done := make(chan error, 1)
	go func() { done <- b.Events(ctx, func(ev enforce.Event) { events <- ev }) }()
	t.Cleanup(func() { cancel(); <-done })

	addrs := make([]string, 6)
	for i := range addrs {
		addrs[i] = testutil.HostPort(serverV4, 25)
	}
	addrs = append(addrs, testutil.HostPort(serverV6, 25))
	var got []string
	for _, r := range testutil.ConnectAs(t, w.client, &limited, addrs...) {
		got = append(got, outcomeOf(r))
	}
	want := []string{"through", "through", "through", "through", "through", "refused", "refused"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("limited user's connections (-want +got):\n%s", diff)
	}
	// The exception's own bucket: 2 an hour, on the exception's port only.
	got = nil
	for _, r := range testutil.ConnectAs(t, w.client, &other, testutil.HostPort(serverV4, 587), testutil.HostPort(serverV4, 587), testutil.HostPort(serverV4, 587), testutil.HostPort(serverV4, 25)) {
		got = append(got, outcomeOf(r))
	}
	if diff := cmp.Diff([]string{"through", "through", "refused", "refused"}, got); diff != "" {
		t.Errorf("exception user's connections (-want +got):\n%s", diff)
	}
	rootAddrs := make([]string, 10)
	for i := range rootAddrs {
		rootAddrs[i] = testutil.HostPort(serverV4, 25)
	}
	for i, r := range testutil.ConnectAs(t, w.client, nil, rootAddrs...) {
		if !r.OK {
			t.Errorf("root's connection %d: %s, want through (root is never limited)", i+1, r)
		}
	}

	wantActions := map[uint32][]string{
		limited.UID: {enforce.ActionRateLimited, enforce.ActionRateLimited},
		other.UID:   {enforce.ActionRateLimited, enforce.ActionBlocked},
	}
	gotActions := map[uint32][]string{}
	deadline := time.After(5 * time.Second)
	for n := 0; n < 4; {
		select {
		case ev := <-events:
			if ev.Action == enforce.ActionLost {
				continue
			}
			gotActions[ev.UID] = append(gotActions[ev.UID], ev.Action)
			n++
		case <-deadline:
			t.Fatalf("events after 5s: %v, want %v", gotActions, wantActions)
		}
	}
	if diff := cmp.Diff(wantActions, gotActions); diff != "" {
		t.Errorf("logged actions per uid (-want +got):\n%s", diff)
	}

	counts, err := b.AllowedConnections(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := map[uint32]uint64{0: 10, limited.UID: 5, other.UID: 2}
	if diff := cmp.Diff(wantCounts, counts); diff != "" {
		t.Errorf("AllowedConnections (-want +got):\n%s", diff)
	}
	assertInSync(t, b, rs) // filled buckets and counters are not drift

	// A new user moved into the same rate is an element change, and keeps
	// the others' buckets: limited stays refused.
	third := testutil.NewUser(t, "rtnew", "")
	rs2 := rs.Clone()
	rs2.UIDs = append(rs2.UIDs, third.UID)
	rs2.RateLimits = append(rs2.RateLimits, policy.UIDRate{UID: third.UID, Rate: policy.Rate{Count: 5, Period: time.Minute}})
	mustApply(t, b, rs2)
	assertInSync(t, b, rs2)
	if r := testutil.ConnectAs(t, w.client, &limited, testutil.HostPort(serverV4, 25))[0]; outcomeOf(r) != "refused" {
		t.Errorf("limited user after an unrelated change: %s, want still refused", r)
	}
	if r := testutil.ConnectAs(t, w.client, &third, testutil.HostPort(serverV4, 25))[0]; !r.OK {
		t.Errorf("new rate-limited user's first connection: %s, want through", r)
	}
}

func outcomeOf(r testutil.ConnectResult) string {
	switch {
	case r.OK:
		return "through"
	case r.Errno == "ECONNREFUSED":
		return "refused"
	}
	return fmt.Sprintf("failed: %s", r)
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A rate limit loosened in place (same comment, a higher rate) is drift, and
// Apply restores it. Buckets already made keep the rate they were made with,
// so the hole shows with a user's first connections after the change.
func TestPrivilegedVerifyDetectsLoosenedRateLimit(t *testing.T) {
	w := newWorld(t)
	limited := testutil.NewUser(t, "rtlse", "")
	later := testutil.NewUser(t, "rtlat", "")
	b := w.backend()
	hourly := policy.Rate{Count: 1, Period: time.Hour}
	rs := policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25}, AllowLocal: true, UIDs: []uint32{0, limited.UID, later.UID},
		RateLimits: []policy.UIDRate{{UID: limited.UID, Rate: hourly}, {UID: later.UID, Rate: hourly}}}
	if limited.UID > later.UID {
		rs.UIDs[1], rs.UIDs[2] = rs.UIDs[2], rs.UIDs[1]
		rs.RateLimits[0].UID, rs.RateLimits[1].UID = rs.RateLimits[1].UID, rs.RateLimits[0].UID
	}
	mustApply(t, b, rs)
	assertInSync(t, b, rs)
	dst := testutil.HostPort(serverV4, 25)
	if !w.connects(t, &limited, dst) || w.connects(t, &limited, dst) {
		t.Fatal("with 1/h the first connection must pass and the second be refused")
	}
	rate := specByText(t, rs, "meta skuid @rate_1_per_h")
	_, meter := rateSetNames(rs.RateLimits[0].Rate)
	h := ruleHandle(t, w.client, chainAllowed, "@"+meter)
	w.client.Exec(t, "nft", "replace", "rule", "inet", tableName, chainAllowed, "handle", h,
		"meta", "skuid", "@rate_1_per_h", "update", "@"+meter, "{", "meta", "skuid", "limit", "rate", "over", "1000/hour", "burst", "1000", "packets", "}",
		"counter", "log", "prefix", `"smtpguard rate-limited"`, "group", "2525", "reject", "with", "tcp", "reset",
		"comment", fmt.Sprintf("%q", rate.comment()))
	if !w.connects(t, &later, dst) || !w.connects(t, &later, dst) {
		t.Fatal("after loosening the limit a new user is still limited to 1/h: the tamper does not test a hole")
	}
	d, err := b.Verify(context.Background(), rs)
	if err != nil {
		t.Fatal(err)
	}
	if want := notRule(rs, rate); d.InSync() || !slices.Contains(d.Problems, want) {
		t.Errorf("Verify after loosening = %v, want %q", d.Problems, want)
	}
	mustApply(t, b, rs)
	assertInSync(t, b, rs)
	if !w.connects(t, &later, dst) || w.connects(t, &later, dst) {
		t.Error("after the repair 1/h must hold again: one connection, then refused")
	}
}
