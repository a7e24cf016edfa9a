package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// received is one request the test receiver got.
type received struct {
	body      []byte
	signature string
	event     string
	ctype     string
}

// receiver is an HTTP server on loopback answering with statuses in turn
// (the last one repeats) and reporting every request on got.
type receiver struct {
	*httptest.Server
	got chan received
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	r := &receiver{got: make(chan received, 100)}
	var mu sync.Mutex
	n := 0
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		mu.Lock()
		status := statuses[min(n, len(statuses)-1)]
		n++
		mu.Unlock()
		w.WriteHeader(status)
		r.got <- received{body: body, signature: req.Header.Get(SignatureHeader), event: req.Header.Get(EventHeader), ctype: req.Header.Get("Content-Type")}
	}))
	t.Cleanup(r.Close)
	return r
}

// start runs a Sender for url until the test ends; failures are reported on
// the returned channel.
func start(t *testing.T, cfg Config) (*Sender, chan string) {
	t.Helper()
	failed := make(chan string, 1000)
	cfg.Failed = func(reason string) { failed <- reason }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, failed
}

func next[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
	}
	panic("unreachable")
}

// none asserts nothing more arrives on ch by the time a later, ordered
// signal has (the caller waited for it): a non-blocking read.
func none[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Errorf("unexpected %s: %v", what, v)
	default:
	}
}

type payload struct {
	Event string `json:"event"`
	UID   uint32 `json:"uid"`
	User  string `json:"user"`
}

func TestDeliversSignedJSON(t *testing.T) {
	r := newReceiver(t, http.StatusNoContent)
	s, failed := start(t, Config{URL: r.URL + "/hook", Secret: testSecret})
	want := payload{Event: "held", UID: 1001, User: "alice"}
	if !s.Send("held", want) {
		t.Fatal("Send() = false on an empty queue")
	}
	got := next(t, r.got, "request")
	var p payload
	if err := json.Unmarshal(got.body, &p); err != nil {
		t.Fatalf("body %q is not JSON: %v", got.body, err)
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	if got.ctype != "application/json" || got.event != "held" {
		t.Errorf("Content-Type %q, %s %q; want application/json, held", got.ctype, EventHeader, got.event)
	}
	if !Verify(testSecret, got.body, got.signature) {
		t.Errorf("%s %q does not verify the body with the secret", SignatureHeader, got.signature)
	}
	if Verify([]byte("another secret, 32 bytes long..."), got.body, got.signature) {
		t.Error("the signature verifies under another secret")
	}
	none(t, failed, "failure")
}

func TestNoSecretNoSignature(t *testing.T) {
	r := newReceiver(t, http.StatusOK)
	s, _ := start(t, Config{URL: r.URL})
	s.Send("blocked", payload{UID: 33})
	if got := next(t, r.got, "request"); got.signature != "" {
		t.Errorf("%s = %q without a secret, want none", SignatureHeader, got.signature)
	}
}

func TestRetriesAfterServerErrorsThenSucceeds(t *testing.T) {
	r := newReceiver(t, 500, 503, 200)
	s, failed := start(t, Config{URL: r.URL, Secret: testSecret, Backoff: time.Millisecond, MaxAttempts: 5})
	s.Send("released", payload{Event: "released", UID: 1001})
	first := next(t, r.got, "first attempt")
	for i := 2; i <= 3; i++ {
		again := next(t, r.got, "retry")
		if string(again.body) != string(first.body) || again.signature != first.signature {
			t.Errorf("attempt %d sent %q (%s), want the same body and signature as the first", i, again.body, again.signature)
		}
	}
	// The next notification comes after the delivered one, so once it is
	// received, the first one's outcome is settled.
	s.Send("held", payload{Event: "held"})
	next(t, r.got, "the next notification")
	none(t, r.got, "fourth attempt")
	none(t, failed, "failure")
}

func TestGivesUpAfterTheBoundAndReportsIt(t *testing.T) {
	r := newReceiver(t, 500)
	s, failed := start(t, Config{URL: r.URL, Backoff: time.Millisecond, MaxAttempts: 3})
	s.Send("held", payload{Event: "held"})
	if reason := next(t, failed, "failure"); reason != FailGaveUp {
		t.Errorf("failure reason = %q, want %q", reason, FailGaveUp)
	}
	for range 3 {
		next(t, r.got, "attempt")
	}
	none(t, r.got, "attempt beyond MaxAttempts")
}

func TestFinalRefusalIsNotRetried(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusFound} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			r := newReceiver(t, status)
			s, failed := start(t, Config{URL: r.URL, Backoff: time.Millisecond, MaxAttempts: 5})
			s.Send("held", payload{})
			if reason := next(t, failed, "failure"); reason != FailRejected {
				t.Errorf("failure reason = %q, want %q", reason, FailRejected)
			}
			next(t, r.got, "attempt")
			none(t, r.got, "retry of a final refusal")
		})
	}
}

// A receiver that never answers holds one delivery for at most Timeout per
// attempt; meanwhile Send returns at once, and what does not fit in the
// queue is dropped and reported, never waited for.
func TestHangingReceiverDoesNotBlockTheCaller(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-req.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // before srv.Close: cleanups run last-in first-out
	const queue = 4
	s, failed := start(t, Config{URL: srv.URL, QueueSize: queue, Timeout: time.Second, MaxAttempts: 1})

	s.Send("held", payload{UID: 1})
	next(t, arrived, "the first request") // the worker is now stuck in it
	sent := make(chan int)
	go func() {
		ok := 0
		for i := range queue + 10 {
			if s.Send("blocked", payload{UID: uint32(i)}) {
				ok++
			}
		}
		sent <- ok
	}()
	select {
	case ok := <-sent:
		if ok != queue {
			t.Errorf("%d of %d notifications queued while the receiver hangs, want %d (the queue's size)", ok, queue+10, queue)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Send blocked while the receiver hangs")
	}
	full := 0
	for range 10 {
		if reason := next(t, failed, "queue_full failure"); reason == FailQueueFull {
			full++
		}
	}
	if full != 10 {
		t.Errorf("%d of the 10 notifications beyond the queue reported queue_full", full)
	}
	// The hanging request itself ends at Timeout and counts as not delivered.
	if reason := next(t, failed, "timeout failure"); reason != FailGaveUp {
		t.Errorf("hanging request's failure = %q, want %q", reason, FailGaveUp)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"event":"held","uid":1001}`)
	good := Sign(testSecret, body)
	tests := []struct {
		name   string
		secret []byte
		body   []byte
		header string
		want   bool
	}{
		{"signed body", testSecret, body, good, true},
		{"another secret", []byte("x"), body, good, false},
		{"body changed", testSecret, []byte(`{"event":"held","uid":0}`), good, false},
		{"no prefix", testSecret, body, good[len("sha256="):], false},
		{"not hex", testSecret, body, "sha256=zz", false},
		{"empty", testSecret, body, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Verify(tt.secret, tt.body, tt.header); got != tt.want {
				t.Errorf("Verify(%q, %q, %q) = %t, want %t", tt.secret, tt.body, tt.header, got, tt.want)
			}
		})
	}
	// A fixed vector, so receivers in other languages can check theirs:
	// printf '%s' '{"event":"held","uid":1001}' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
	if want := "sha256=368063861913e68abec484964d9108fe24b2013e8ba05e35758d9616e435e963"; good != want {
		t.Errorf("Sign() = %s, want %s", good, want)
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "ftp://example.net/x", "example.net/hook", "http://", "https://user:pw@example.net/hook"} {
		if _, err := New(Config{URL: u}); err == nil {
			t.Errorf("New(URL %q) = nil error, want a refusal", u)
		}
	}
	if _, err := New(Config{URL: "https://hooks.example.net/smtpguard"}); err != nil {
		t.Errorf("New(https URL) = %v", err)
	}
}
