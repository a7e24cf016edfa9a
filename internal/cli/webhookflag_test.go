package cli

import (
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

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/webhook"
)

const testWebhookSecret = "0123456789abcdef0123456789abcdef"

func writeSecret(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// Bad webhook flags are bad input: exit 2 with one line saying what to
// fix, before anything is opened.
func TestServeRefusesBadWebhookFlags(t *testing.T) {
	good := writeSecret(t, testWebhookSecret+"\n", 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"secret without URL", []string{"--webhook-secret-file", good}, "needs --webhook"},
		{"not http", []string{"--webhook", "ftp://hooks.example.net/x"}, "want http://"},
		{"credentials in the URL", []string{"--webhook", "https://u:p@hooks.example.net/x"}, "credentials"},
		{"secret readable by others", []string{"--webhook", "https://hooks.example.net/x", "--webhook-secret-file", writeSecret(t, testWebhookSecret, 0o644)}, "chmod 600"},
		{"secret readable by the group", []string{"--webhook", "https://hooks.example.net/x", "--webhook-secret-file", writeSecret(t, testWebhookSecret, 0o640)}, "chmod 600"},
		{"short secret", []string{"--webhook", "https://hooks.example.net/x", "--webhook-secret-file", writeSecret(t, "short\n", 0o600)}, "shorter than 16"},
		{"directory", []string{"--webhook", "https://hooks.example.net/x", "--webhook-secret-file", t.TempDir()}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newHarness(t).run(append([]string{"serve", "--listen", ""}, tt.args...)...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tt.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
				t.Errorf("serve %s: exit %d, stderr %q; want exit %d and one line containing %q", strings.Join(tt.args, " "), r.code, r.stderr, ExitUsage, tt.want)
			}
			if strings.Contains(r.stderr, testWebhookSecret) {
				t.Errorf("stderr shows the secret: %q", r.stderr)
			}
		})
	}
}

func TestReadSecretFileTakesTheFirstLineTrimmed(t *testing.T) {
	got, err := readSecretFile("--webhook-secret-file", writeSecret(t, "  "+testWebhookSecret+"  \nnot this\n", 0o600))
	if err != nil || string(got) != testWebhookSecret {
		t.Errorf("readSecretFile() = %q, %v; want %q", got, err, testWebhookSecret)
	}
}

// serve --webhook wires the daemon to the receiver: a blocked attempt
// reaches it signed with the file's secret.
func TestServeWebhookDeliversSignedBlockedAttempt(t *testing.T) {
	h := newHarness(t)
	got := make(chan []byte, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !webhook.Verify([]byte(testWebhookSecret), body, r.Header.Get(webhook.SignatureHeader)) {
			t.Errorf("webhook body %s: signature %q does not verify with the file's secret", body, r.Header.Get(webhook.SignatureHeader))
		}
		got <- body
	}))
	t.Cleanup(srv.Close)
	kernel, _ := h.serveInProcess(t, "--webhook", srv.URL+"/hook", "--webhook-secret-file", writeSecret(t, testWebhookSecret+"\n", 0o600))
	h.ok("enable", "--backend", "fake")
	deadline := time.Now().Add(5 * time.Second)
	for _, events, _ := kernel.Streams(); events == 0; _, events, _ = kernel.Streams() {
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not read the backend's events within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	kernel.Emit(enforce.Event{Time: time.Now(), UID: 1002, HasUID: true, Family: 4, Dst: netip.MustParseAddr("192.0.2.7"), DstPort: 25, Action: enforce.ActionBlocked})
	select {
	case body := <-got:
		var n struct {
			Event, User, Destination string
			Port                     int
		}
		if err := json.Unmarshal(body, &n); err != nil || n.Event != "blocked" || n.User != "bob" || n.Destination != "192.0.2.7" || n.Port != 25 {
			t.Errorf("webhook body %s (%v), want bob's blocked attempt to 192.0.2.7:25", body, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook request within 10s of a blocked attempt")
	}
}
