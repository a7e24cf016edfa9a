package daemon

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/store"
	"github.com/smtpguard/smtpguard/internal/webhook"
)

var hookSecret = []byte("webhook-secret-for-the-daemon-tests")

// hookRequest is one POST the test receiver got.
type hookRequest struct {
	event     string
	body      []byte
	signature string
}

// newHookReceiver serves POSTs on loopback, answering status and reporting
// each request.
func newHookReceiver(t *testing.T, status int) (*httptest.Server, chan hookRequest) {
	t.Helper()
	got := make(chan hookRequest, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(status)
		got <- hookRequest{event: r.Header.Get(webhook.EventHeader), body: body, signature: r.Header.Get(webhook.SignatureHeader)}
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func nextHook(t *testing.T, got <-chan hookRequest, what string) hookRequest {
	t.Helper()
	select {
	case r := <-got:
		if !webhook.Verify(hookSecret, r.body, r.signature) {
			t.Errorf("%s: signature %q does not verify the body %s", what, r.signature, r.body)
		}
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("no webhook request for %s within 5s", what)
	}
	panic("unreachable")
}

// notifyScript writes a notify command appending its arguments and stdin
// to a file, and returns both paths.
func notifyScript(t *testing.T, dir string) (script, out string) {
	t.Helper()
	out = filepath.Join(dir, "notified")
	script = filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n{ echo \"$@\"; cat; echo; } >> "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, out
}

func blockedEvent(uid uint32, dst string, port uint16) enforce.Event {
	return enforce.Event{Time: time.Now(), UID: uid, HasUID: true, Family: 4, Dst: netip.MustParseAddr(dst), DstPort: port, Action: enforce.ActionBlocked}
}

// Blocked-attempt aggregates reach the webhook signed, with the notify
// command's fields and the host, and under the same per-user interval as
// the command: a second aggregate of bob within it reaches neither.
func TestWebhookGetsBlockedAttemptsLimitedPerUserLikeTheCommand(t *testing.T) {
	f := newFixture(t)
	f.eng.Enable(context.Background(), admin, "fake")
	srv, got := newHookReceiver(t, http.StatusOK)
	script, out := notifyScript(t, f.dir)
	d := f.start(t, Config{NotifyCommand: script, NotifyInterval: time.Hour, WebhookURL: srv.URL + "/smtpguard", WebhookSecret: hookSecret, Hostname: "mail1.example.net"})

	f.backend.Emit(blockedEvent(1002, "192.0.2.3", 587))
	r := nextHook(t, got, "bob's attempt")
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("webhook body %s: %v", r.body, err)
	}
	for key, want := range map[string]any{"event": "blocked", "host": "mail1.example.net", "user": "bob", "uid": 1002.0,
		"destination": "192.0.2.3", "port": 587.0, "count": 1.0, "action": "blocked",
		"allow_command": "smtpguard allow user bob --to 192.0.2.3 --port 587"} {
		if body[key] != want {
			t.Errorf("webhook body %q = %v, want %v (body %s)", key, body[key], want, r.body)
		}
	}
	if r.event != EventBlocked {
		t.Errorf("%s = %q, want %q", webhook.EventHeader, r.event, EventBlocked)
	}
	waitFor(t, "the notify command to run", func() bool {
		data, _ := os.ReadFile(out)
		return strings.Contains(string(data), "}\n")
	})

	f.backend.Emit(blockedEvent(1002, "192.0.2.3", 587)) // within the interval
	waitFor(t, "the second aggregate to be suppressed", func() bool { return d.rec.notify.suppressed.Load() == 1 })
	// alice's attempt comes after bob's second one: once it arrives, bob's
	// would have too.
	f.backend.Emit(blockedEvent(1001, "192.0.2.3", 25))
	if r := nextHook(t, got, "alice's attempt"); !strings.Contains(string(r.body), `"user":"alice"`) {
		t.Errorf("webhook request after bob's suppressed one = %s, want alice's", r.body)
	}
	if data, _ := os.ReadFile(out); strings.Count(string(data), "bob 192.0.2.3:587") != 1 {
		t.Errorf("notify command ran for bob more than once within the interval:\n%s", data)
	}
}

// NotifyHold is the daemon's receiving side for holds: it fans each notice
// to the webhook and to the notify command (args USER held|released, the
// notice as JSON on stdin), never rate limited.
func TestNotifyHoldFansToWebhookAndCommand(t *testing.T) {
	f := newFixture(t)
	srv, got := newHookReceiver(t, http.StatusNoContent)
	script, out := notifyScript(t, f.dir)
	d := f.start(t, Config{NotifyCommand: script, NotifyInterval: time.Hour, WebhookURL: srv.URL, WebhookSecret: hookSecret, Hostname: "mail1"})

	since := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	held := HoldNotice{Event: enforce.ActionHeld, UID: 1002, User: "bob", Since: since, Until: since.Add(time.Hour),
		Reason: "10 refused attempts in 1m", By: "hold-after 10/1m", Count: 10}
	released := HoldNotice{Event: HoldReleased, UID: 1002, User: "bob", Since: since, Reason: "released by root", By: "cli:root"}
	for _, h := range []HoldNotice{held, held, released} { // the same hold twice: holds are not rate limited
		d.NotifyHold(h)
	}
	for i, want := range []HoldNotice{held, held, released} {
		r := nextHook(t, got, want.Event)
		if r.event != want.Event {
			t.Errorf("request %d: %s = %q, want %q", i, webhook.EventHeader, r.event, want.Event)
		}
		var p holdPayload
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("webhook body %s: %v", r.body, err)
		}
		if diff := cmp.Diff(holdPayload{Host: "mail1", HoldNotice: want}, p); diff != "" {
			t.Errorf("request %d body (-want +got):\n%s", i, diff)
		}
	}
	var data string
	waitFor(t, "the notify command to run three times", func() bool {
		b, _ := os.ReadFile(out)
		data = string(b)
		return strings.Count(data, "}\n") == 3
	})
	lines := strings.Split(strings.TrimSpace(data), "\n")
	if len(lines) != 6 || lines[0] != "bob held" || lines[2] != "bob held" || lines[4] != "bob released" {
		t.Fatalf("notify command got:\n%s\nwant args 'bob held', 'bob held', 'bob released', each with its JSON", data)
	}
	var first HoldNotice
	if err := json.Unmarshal([]byte(lines[1]), &first); err != nil {
		t.Fatalf("notify command's stdin %q: %v", lines[1], err)
	}
	if diff := cmp.Diff(held, first); diff != "" {
		t.Errorf("notify command's JSON (-want +got):\n%s", diff)
	}
	if !strings.Contains(lines[1], `"until":"2026-12-01T11:00:00Z"`) || strings.Contains(lines[5], `"until"`) {
		t.Errorf("until: %s / %s, want it on the timed hold and absent on the release", lines[1], lines[5])
	}
}

// Without a webhook or notify command, NotifyHold does nothing (and does
// not crash): the holds work calls it unconditionally.
func TestNotifyHoldWithoutReceiversIsANoOp(t *testing.T) {
	f := newFixture(t)
	d := f.start(t, Config{})
	d.NotifyHold(HoldNotice{Event: enforce.ActionHeld, UID: 1002, User: "bob"})
}

// A receiver that refuses for good, or keeps failing past the retries, is
// counted in smtpguard_webhook_failures_total.
func TestWebhookFailuresAreCounted(t *testing.T) {
	for _, tt := range []struct {
		status int
		reason string
	}{
		{http.StatusForbidden, webhook.FailRejected},
		{http.StatusBadGateway, webhook.FailGaveUp},
	} {
		t.Run(tt.reason, func(t *testing.T) {
			f := newFixture(t)
			srv, got := newHookReceiver(t, tt.status)
			d := f.start(t, Config{WebhookURL: srv.URL, WebhookSecret: hookSecret,
				Webhook: webhook.Config{MaxAttempts: 2, Backoff: time.Millisecond}})
			d.NotifyHold(HoldNotice{Event: enforce.ActionHeld, UID: 1002, User: "bob"})
			nextHook(t, got, "the first attempt")
			waitFor(t, "the failure to be counted", func() bool {
				return promtest.ToFloat64(d.metrics.webhookFailures.WithLabelValues(tt.reason)) == 1
			})
			if text := scrape(t, d); !strings.Contains(text, `smtpguard_webhook_failures_total{reason="`+tt.reason+`"} 1`) {
				t.Errorf("/metrics lacks the failure:\n%s", text)
			}
		})
	}
}

// A receiver that hangs holds neither the event path nor the hold hook:
// blocked attempts keep being recorded, NotifyHold returns at once, and
// what does not fit in the webhook's queue is dropped and counted.
func TestHangingWebhookDoesNotBlockTheEventPath(t *testing.T) {
	f := newFixture(t)
	f.eng.Enable(context.Background(), admin, "fake")
	release := make(chan struct{})
	arrived := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	const queue = 2
	d := f.start(t, Config{WebhookURL: srv.URL, Webhook: webhook.Config{QueueSize: queue, Timeout: time.Minute}})

	d.NotifyHold(HoldNotice{Event: enforce.ActionHeld, UID: 1002, User: "bob"})
	select {
	case <-arrived: // the sender is now stuck in this request
	case <-time.After(5 * time.Second):
		t.Fatal("the webhook was not called")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range queue + 5 {
			d.NotifyHold(HoldNotice{Event: enforce.ActionHeld, UID: 1002, User: "bob"})
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("NotifyHold blocked while the webhook receiver hangs")
	}
	waitFor(t, "notices beyond the queue counted as dropped", func() bool {
		return promtest.ToFloat64(d.metrics.webhookFailures.WithLabelValues(webhook.FailQueueFull)) == 5
	})
	// Blocked attempts of users never notified before go through the same
	// notifier and are still recorded while the receiver hangs.
	for uid := uint32(1001); uid <= 1002; uid++ {
		f.backend.Emit(blockedEvent(uid, "192.0.2.9", 25))
	}
	waitFor(t, "both attempts recorded while the webhook hangs", func() bool {
		evs, _ := f.eng.Store().Events(context.Background(), store.EventFilter{})
		return len(evs) == 2
	})
}

// scrape is GET /metrics of d.
func scrape(t *testing.T, d *Daemon) string {
	t.Helper()
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
