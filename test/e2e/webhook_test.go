//go:build linux

package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
	"github.com/smtpguard/smtpguard/internal/webhook"
)

// TestPrivilegedWebhookInTheNamespace: the daemon in the client namespace
// posts a user's refused attempt to a receiver on that namespace's
// loopback, signed with the secret file's key; the receiver's first two
// answers are 500s, and the daemon retries until it gets a 200, counting no
// failure.
func TestPrivilegedWebhookInTheNamespace(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	secret := "e2e-webhook-secret-0123456789abcdef"
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	type request struct {
		status int
		body   []byte
		valid  bool
	}
	got := make(chan request, 20)
	var mu sync.Mutex
	n := 0
	var ln net.Listener
	if err := w.client.Do(func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", w.client.Name, err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		n++
		status := http.StatusInternalServerError
		if n > 2 {
			status = http.StatusOK
		}
		mu.Unlock()
		rw.WriteHeader(status)
		got <- request{status: status, body: body, valid: webhook.Verify([]byte(secret), body, r.Header.Get(webhook.SignatureHeader))}
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("webhook receiver: %v", err)
		}
	})

	w.startDaemon(t, "--webhook", "http://"+ln.Addr().String()+"/smtpguard", "--webhook-secret-file", secretFile, "--notify-interval", "1h")
	if r := testutil.ConnectAs(t, w.client, &w.plain, "192.0.2.2:25")[0]; r.OK {
		t.Fatalf("%s connected to 192.0.2.2:25, want refused", w.plain.Name)
	}
	var first []byte
	for i := range 3 {
		select {
		case r := <-got:
			if !r.valid {
				t.Errorf("request %d: the signature does not verify the body %s with the secret", i+1, r.body)
			}
			if first == nil {
				first = r.body
			} else if string(r.body) != string(first) {
				t.Errorf("retry %d sent %s, want the first body %s again", i, r.body, first)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("webhook request %d did not arrive within 20s (two 500s are retried after 1s and 2s)", i+1)
		}
	}
	var note struct {
		Event, User, Destination, Action, Host string
		UID                                    uint32
		Port                                   int
	}
	if err := json.Unmarshal(first, &note); err != nil {
		t.Fatalf("webhook body %s: %v", first, err)
	}
	if note.Event != "blocked" || note.User != w.plain.Name || note.UID != w.plain.UID || note.Destination != "192.0.2.2" || note.Port != 25 || note.Action != "blocked" || note.Host == "" {
		t.Errorf("webhook body = %s, want %s's blocked attempt to 192.0.2.2:25 with the host name", first, w.plain.Name)
	}
	m, err := w.metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{webhook.FailGaveUp, webhook.FailRejected, webhook.FailQueueFull} {
		if v, ok := m[`smtpguard_webhook_failures_total{reason="`+reason+`"}`]; !ok || v != 0 {
			t.Errorf("smtpguard_webhook_failures_total{reason=%q} = %v (exported %t), want 0 after a delivery that succeeded on retry", reason, v, ok)
		}
	}
}
