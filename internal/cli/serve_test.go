package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
	"github.com/smtpguard/smtpguard/internal/web"
)

func TestLoopbackListen(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9725", true},
		{"127.0.0.2:9725", true},
		{"[::1]:9725", true},
		{"localhost:9725", true},
		{"", true},
		{"0.0.0.0:9725", false},
		{":9725", false},
		{"[::]:9725", false},
		{"192.0.2.5:9725", false},
		{"mail.example.com:9725", false},
	} {
		got, err := loopbackListen(tt.addr)
		if err != nil || got != tt.want {
			t.Errorf("loopbackListen(%q) = %t, %v, want %t", tt.addr, got, err, tt.want)
		}
	}
	if _, err := loopbackListen("9725"); err == nil {
		t.Error("loopbackListen(9725) = nil error, want a usage error")
	}
}

func TestServeGeneratesOneSelfSignedCertificate(t *testing.T) {
	dir := t.TempDir()
	e := &env{stateDir: dir}
	logs := &bytes.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	first, err := e.serveTLS("192.0.2.5:9725", "", "", logger)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, web.SelfSignedKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	leaf, err := x509.ParseCertificate(first.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := leaf.VerifyHostname("192.0.2.5"); got != nil {
		t.Errorf("certificate does not name the listen address: %v", got)
	}
	if got := leaf.VerifyHostname("localhost"); got != nil {
		t.Errorf("certificate does not name localhost: %v", got)
	}
	fp := web.Fingerprint(first.Certificates[0])
	if !strings.Contains(logs.String(), "generated a self-signed certificate") || !strings.Contains(logs.String(), fp) {
		t.Errorf("log does not announce the new certificate and its fingerprint %s:\n%s", fp, logs.String())
	}
	second, err := e.serveTLS("0.0.0.0:9725", "", "", logger)
	if err != nil {
		t.Fatal(err)
	}
	if got := web.Fingerprint(second.Certificates[0]); got != fp {
		t.Errorf("second start made a new certificate %s, want the first one %s", got, fp)
	}
	if _, err := e.serveTLS("0.0.0.0:9725", filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing.key"), logger); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("serveTLS(missing files) = %v, want an error naming the file", err)
	}
	if r := newHarness(t).run("serve", "--tls-cert", "x.pem"); r.code != ExitUsage || !strings.Contains(r.stderr, "go together") {
		t.Errorf("serve --tls-cert alone: exit %d %q", r.code, r.stderr)
	}
}

// freePort finds a loopback port nobody listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestServeWebUIOverTLS(t *testing.T) {
	h := newHarness(t)
	h.okIn("admin-password-1\n", "account", "add", "admin", "--role", "admin")
	certDir := t.TempDir()
	cert, _, err := web.SelfSignedCertificate(certDir, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- RunWith(ctx, []string{"--state-dir", h.stateDir, "serve", "--listen", addr,
			"--tls-cert", filepath.Join(certDir, web.SelfSignedCertFile), "--tls-key", filepath.Join(certDir, web.SelfSignedKeyFile)},
			Stdio{In: strings.NewReader(""), Out: io.Discard, Err: &stderr}, h.opts)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s of its context ending")
		}
	})

	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{
		Jar:           jar,
		Timeout:       5 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	base := "https://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(base + "/login")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /login = %d", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not answer HTTPS on %s within 10s: %v\nstderr:\n%s", addr, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := client.PostForm(base+"/login", url.Values{"username": {"admin"}, "password": {"admin-password-1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	setCookie := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(setCookie, "smtpguard_session=") || !strings.Contains(setCookie, "Secure") ||
		!strings.Contains(setCookie, "HttpOnly") || !strings.Contains(setCookie, "SameSite=Strict") {
		t.Fatalf("POST /login = %d, Set-Cookie %q; want 303 and a Secure, HttpOnly, SameSite=Strict cookie", resp.StatusCode, setCookie)
	}
	resp, err = client.Post(base+"/api/v1/enable", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || h.backend.Installed() == nil {
		t.Errorf("POST /api/v1/enable = %d %s; kernel %v", resp.StatusCode, body, h.backend.Installed())
	}
	// The status page shows the state of the daemon serving it.
	resp, err = client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `<dd id="daemon">`) || !strings.Contains(string(page), "none since the daemon started") {
		t.Errorf("the status page served by serve lacks the daemon's state and repairs:\n%.3000s", page)
	}
	resp, err = client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /metrics beside the UI = %d", resp.StatusCode)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + addr + "/login"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was served on the HTTPS port")
		}
	}
	if audit := h.ok("audit"); !strings.Contains(audit, "web:admin") {
		t.Errorf("audit log lacks the web actor:\n%s", audit)
	}
}

func TestServeRefusesUnknownBackend(t *testing.T) {
	h := newHarness(t)
	r := h.run("serve", "--listen", "", "--backend", "ebpf")
	if r.code != 2 || !strings.Contains(r.stderr, `unknown --backend "ebpf": use auto or fake`) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("serve --backend ebpf: exit %d, stderr %q; want exit 2 and one line naming the choices", r.code, r.stderr)
	}
}
