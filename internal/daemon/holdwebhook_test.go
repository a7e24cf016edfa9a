package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/webhook"
)

// hooksUntil reads the receiver's requests until one has event want (and,
// when user is set, that user), and returns the hold payloads among them
// (held and released); blocked-attempt aggregates are skipped.
func hooksUntil(t *testing.T, got <-chan hookRequest, want, user string) []holdPayload {
	t.Helper()
	var holds []holdPayload
	for range 20 { // bounded: a burst is one aggregate per user, holds a few
		r := nextHook(t, got, want)
		if r.event == EventBlocked {
			var b struct {
				User string `json:"user"`
			}
			if err := json.Unmarshal(r.body, &b); err != nil {
				t.Fatalf("webhook body %s: %v", r.body, err)
			}
			if want == EventBlocked && b.User == user {
				return holds
			}
			continue
		}
		var p holdPayload
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("webhook body %s: %v", r.body, err)
		}
		if p.Event != r.event {
			t.Errorf("%s = %q, body's event %q", webhook.EventHeader, r.event, p.Event)
		}
		holds = append(holds, p)
		if r.event == want {
			return holds
		}
	}
	t.Fatalf("no %s webhook request among the first 20", want)
	return nil
}

// A hold the daemon makes at its hold-after threshold, and its release (by
// the CLI, which the daemon notices in the store), each reach the webhook
// once, signed, as "held" and "released" naming the user, the threshold or
// the administrator, and the attempts counted.
func TestThresholdHoldAndReleaseReachTheWebhookOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, step := range []func() error{
		func() error { _, err := f.eng.Enable(ctx, admin, "fake"); return err },
		func() error {
			_, err := f.eng.AllowException(ctx, admin, policy.KindUser, "bob", "192.0.2.25", "25")
			return err
		},
		func() error { _, err := f.eng.SetHoldAfter(ctx, admin, "3/m"); return err },
		func() error { _, err := f.eng.SetHoldFor(ctx, admin, "1h"); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	srv, got := newHookReceiver(t, http.StatusOK)
	d := f.start(t, Config{WebhookURL: srv.URL, WebhookSecret: hookSecret, NotifyInterval: time.Hour, Hostname: "mail1"})
	waitFor(t, "the hold settings read", func() bool {
		d.holds.counter.mu.Lock()
		defer d.holds.counter.mu.Unlock()
		return !d.holds.counter.rate.IsZero()
	})

	for range 3 {
		f.backend.Emit(enforce.Event{Time: time.Now(), UID: 1002, HasUID: true, Family: 4,
			Dst: netip.MustParseAddr("192.0.2.99"), DstPort: 25, Action: enforce.ActionBlocked})
	}
	holds := hooksUntil(t, got, enforce.ActionHeld, "")
	if len(holds) != 1 {
		t.Fatalf("hold notices before the first held = %+v, want just it", holds)
	}
	held := holds[0]
	if held.Until.Sub(held.Since) != time.Hour {
		t.Errorf("held from %v until %v, want for hold-for 1h", held.Since, held.Until)
	}
	want := holdPayload{Host: "mail1", HoldNotice: HoldNotice{Event: enforce.ActionHeld, UID: 1002, User: "bob",
		Reason: "3 refused or rate-limited attempts within 1m0s", By: "hold-after 3/m", Count: 3}}
	ignoreTimes := cmpopts.IgnoreFields(HoldNotice{}, "Since", "Until")
	if diff := cmp.Diff(want, held, ignoreTimes); diff != "" {
		t.Errorf("held webhook body (-want +got):\n%s", diff)
	}
	waitFor(t, "bob's exception suspended", func() bool { return !hasExceptionFor(f.backend.Installed(), 1002) })

	if _, err := f.eng.Release(ctx, admin, "bob"); err != nil {
		t.Fatal(err)
	}
	holds = hooksUntil(t, got, HoldReleased, "")
	if len(holds) != 1 {
		t.Fatalf("hold notices from the hold to the release = %+v, want the release alone (the hold once)", holds)
	}
	want.HoldNotice = HoldNotice{Event: HoldReleased, UID: 1002, User: "bob", Since: held.Since, Until: held.Until,
		Reason: held.Reason, By: "cli:root"}
	if diff := cmp.Diff(want, holds[0], cmpopts.EquateApproxTime(time.Millisecond)); diff != "" {
		t.Errorf("released webhook body (-want +got):\n%s", diff)
	}

	// alice's attempt is sent after anything the hold and the release
	// could still queue: up to it, neither is sent again.
	f.backend.Emit(enforce.Event{Time: time.Now(), UID: 1001, HasUID: true, Family: 4,
		Dst: netip.MustParseAddr("192.0.2.99"), DstPort: 25, Action: enforce.ActionBlocked})
	if holds := hooksUntil(t, got, EventBlocked, "alice"); len(holds) != 0 {
		t.Errorf("hold notices after the release = %+v, want none (each sent once)", holds)
	}
}
