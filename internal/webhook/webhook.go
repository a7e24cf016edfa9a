// Package webhook delivers JSON notifications to an administrator's HTTP
// endpoint without ever making the caller wait: Send queues the body and
// returns; one goroutine (Run) posts it with a per-request timeout and a
// bounded number of retries with exponential backoff. A full queue drops the
// notification, and every notification that is not delivered is reported
// through Config.Failed, so the daemon can count it.
//
// Each request carries the HMAC-SHA256 of its exact body, keyed with the
// shared secret, in the header
//
//	X-Smtpguard-Signature: sha256=<64 lowercase hex digits>
//
// so the receiver can check the body came from this daemon (Verify).
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body.
const SignatureHeader = "X-Smtpguard-Signature"

// EventHeader names the notification's kind ("blocked", "held", ...), so a
// receiver can route without parsing the body.
const EventHeader = "X-Smtpguard-Event"

// Failure reasons passed to Config.Failed.
const (
	FailQueueFull = "queue_full" // dropped without trying: the queue was full
	FailGaveUp    = "gave_up"    // every attempt failed (network, timeout, 5xx, 429)
	FailRejected  = "rejected"   // the receiver answered with a final refusal (other 4xx, 3xx)
)

// Defaults of Config.
const (
	DefaultQueueSize   = 256
	DefaultTimeout     = 5 * time.Second
	DefaultMaxAttempts = 5
	DefaultBackoff     = time.Second
	DefaultMaxBackoff  = 30 * time.Second
)

// Config is a Sender's configuration. Zero fields take the defaults.
type Config struct {
	URL string // http:// or https://
	// Secret keys the signature; empty sends no signature header.
	Secret      []byte
	QueueSize   int           // notifications waiting for delivery
	Timeout     time.Duration // one request, connection included
	MaxAttempts int           // per notification, the first included
	Backoff     time.Duration // wait before the second attempt; doubles after each failure
	MaxBackoff  time.Duration // cap of the wait
	// Client sends the requests; nil builds one with Timeout that never
	// follows redirects (a redirect would re-send the body elsewhere).
	Client *http.Client
	Logger *slog.Logger
	// Failed, when set, is called once for each notification not
	// delivered, with one of the Fail* reasons. It must not block.
	Failed func(reason string)
}

// Sender queues and delivers notifications to one URL.
type Sender struct {
	cfg   Config
	queue chan delivery
	// where is the URL as logs show it (Redacted).
	where string
}

type delivery struct {
	event string
	body  []byte
}

// New checks the URL and returns a Sender; call Run to deliver.
func New(cfg Config) (*Sender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook URL %q: want http://HOST/PATH or https://HOST/PATH", cfg.URL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("webhook URL %s: credentials in the URL would be logged: authenticate the receiver with the signature (--webhook-secret-file)", u.Redacted())
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout:       cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Failed == nil {
		cfg.Failed = func(string) {}
	}
	return &Sender{cfg: cfg, queue: make(chan delivery, cfg.QueueSize), where: Redacted(cfg.URL)}, nil
}

// Redacted is a webhook URL as logs and errors may show it: scheme and host
// only, since many receivers (Slack, Teams, Discord) take their credential
// in the path or the query, and the journal has more readers than the
// daemon's configuration.
func Redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "(the webhook URL)"
	}
	out := u.Scheme + "://" + u.Host
	switch {
	case (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.Fragment == "":
		return out + u.Path
	}
	return out + "/…"
}

// Send queues v, marshalled to JSON now, for delivery with event in the
// EventHeader. It never blocks: when the queue is full the notification is
// dropped, reported as FailQueueFull, and Send returns false.
func (s *Sender) Send(event string, v any) bool {
	body, err := json.Marshal(v)
	if err != nil {
		s.cfg.Logger.Error("webhook payload cannot be encoded", "event", event, "err", err)
		s.cfg.Failed(FailRejected)
		return false
	}
	select {
	case s.queue <- delivery{event: event, body: body}:
		return true
	default:
		s.cfg.Failed(FailQueueFull)
		return false
	}
}

// Run delivers queued notifications one at a time until ctx ends; what is
// still queued then is not delivered.
func (s *Sender) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-s.queue:
			s.deliver(ctx, d)
		}
	}
}

// deliver posts d until it is accepted, refused for good, or MaxAttempts
// were made.
func (s *Sender) deliver(ctx context.Context, d delivery) {
	wait := s.cfg.Backoff
	var last error
	for attempt := 1; attempt <= s.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(2*wait, s.cfg.MaxBackoff)
		}
		retry, err := s.post(ctx, d)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			return // shutting down: not the receiver's failure
		}
		last = err
		if !retry {
			s.cfg.Logger.Warn("webhook refused the notification", "url", s.where, "event", d.event, "err", err)
			s.cfg.Failed(FailRejected)
			return
		}
	}
	s.cfg.Logger.Warn("webhook not delivered", "url", s.where, "event", d.event, "attempts", s.cfg.MaxAttempts, "err", last)
	s.cfg.Failed(FailGaveUp)
}

// post makes one attempt; retry says whether another could succeed.
func (s *Sender) post(ctx context.Context, d delivery) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(d.body))
	if err != nil {
		return false, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "smtpguard-webhook")
	req.Header.Set(EventHeader, d.event)
	if len(s.cfg.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(s.cfg.Secret, d.body))
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = s.where // it would name the whole URL
		}
		return true, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return true, fmt.Errorf("POST %s: %s", s.where, resp.Status)
	}
	return false, fmt.Errorf("POST %s: %s", s.where, resp.Status)
}

// Sign returns the SignatureHeader value for body: "sha256=" and the hex
// HMAC-SHA256 of body keyed with secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether header is the signature of body under secret,
// comparing in constant time. Receivers written in Go can use it as is.
func Verify(secret, body []byte, header string) bool {
	hexSum, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// ErrSecretTooShort is returned by CheckSecret for a secret under 16 bytes.
var ErrSecretTooShort = errors.New("webhook secret is shorter than 16 characters")

// CheckSecret refuses secrets too short to resist guessing.
func CheckSecret(secret []byte) error {
	if len(secret) < 16 {
		return fmt.Errorf("%w (%d): generate one with 'openssl rand -hex 32'", ErrSecretTooShort, len(secret))
	}
	return nil
}
