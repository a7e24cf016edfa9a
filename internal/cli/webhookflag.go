package cli

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/smtpguard/smtpguard/internal/webhook"
)

// webhookConfig checks serve's --webhook and --webhook-secret-file and
// returns the URL and the secret (nil without a file).
func webhookConfig(rawURL, secretFile string) (string, []byte, error) {
	if rawURL == "" {
		if secretFile != "" {
			return "", nil, usagef("--webhook-secret-file needs --webhook URL")
		}
		return "", nil, nil
	}
	if _, err := webhook.New(webhook.Config{URL: rawURL}); err != nil {
		return "", nil, usagef("--webhook: %v", err)
	}
	if secretFile == "" {
		return rawURL, nil, nil
	}
	secret, err := readSecretFile("--webhook-secret-file", secretFile)
	if err != nil {
		return "", nil, err
	}
	if err := webhook.CheckSecret(secret); err != nil {
		return "", nil, usagef("--webhook-secret-file %s: %v", secretFile, err)
	}
	return rawURL, secret, nil
}

// webhookInTheClear reports whether the webhook's bodies (user names,
// addresses, command lines) would cross a network unencrypted: http:// to
// anything but loopback.
func webhookInTheClear(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// readSecretFile reads the secret on the first line of path (surrounding
// blanks trimmed). The file must be a regular file that neither group nor
// others can read or write: a secret anyone on the host can read signs
// nothing. The secret is never echoed.
func readSecretFile(flag, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", flag, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", flag, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, usagef("%s %s: not a regular file", flag, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, usagef("%s %s: mode %04o lets other users read or change the secret: chmod 600 %s", flag, path, perm, path)
	}
	data := make([]byte, 4096)
	n, err := f.Read(data)
	if err != nil && n == 0 {
		return nil, fmt.Errorf("read %s %s: %w", flag, path, err)
	}
	line, _, _ := strings.Cut(string(data[:n]), "\n")
	return []byte(strings.TrimSpace(line)), nil
}
