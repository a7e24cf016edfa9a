package webhook

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// TestFailuresDoNotLogTheURLsSecrets: many receivers (Slack, Teams,
// Discord) put their credential in the URL's path or query; the journal
// that records a failed delivery is readable by more people than the
// daemon's configuration, so the log names the receiver by scheme and host
// only, whatever failed.
func TestFailuresDoNotLogTheURLsSecrets(t *testing.T) {
	const path = "/services/T0SECRETA/B0SECRETB?token=SECRETC"
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String() + path
	closed.Close() // nothing listens: the connection is refused
	for _, tt := range []struct {
		name, url, reason string
	}{
		{"server error", newReceiver(t, 500).URL + path, FailGaveUp},
		{"final refusal", newReceiver(t, 403).URL + path, FailRejected},
		{"connection refused", refused, FailGaveUp},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs testutil.SyncBuffer
			s, failed := start(t, Config{URL: tt.url, Backoff: time.Millisecond, MaxAttempts: 2,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			s.Send("held", payload{Event: "held"})
			if reason := next(t, failed, "failure"); reason != tt.reason {
				t.Errorf("failure reason = %q, want %q", reason, tt.reason)
			}
			out := logs.String()
			if !strings.Contains(out, "webhook") {
				t.Fatalf("the failure was not logged: %q", out)
			}
			for _, secret := range []string{"SECRETA", "SECRETB", "SECRETC"} {
				if strings.Contains(out, secret) {
					t.Errorf("the log shows the URL's %s:\n%s", secret, out)
				}
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.example.net/services/T0/B0/XYZ": "https://hooks.example.net/…",
		"http://127.0.0.1:8080/hook?token=abc":         "http://127.0.0.1:8080/…",
		"https://hooks.example.net":                    "https://hooks.example.net",
		"https://hooks.example.net/":                   "https://hooks.example.net/",
		"::not a url":                                  "(the webhook URL)",
	} {
		if got := Redacted(in); got != want {
			t.Errorf("Redacted(%q) = %q, want %q", in, got, want)
		}
	}
}
