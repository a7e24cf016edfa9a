package explain

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	testDst  = netip.MustParseAddrPort("192.0.2.2:25")
	testTime = time.Date(2026, 12, 1, 10, 30, 15, 0, time.UTC)
)

// harness serves one Server on loopback with a fixed origin.
type harness struct {
	srv  *Server
	addr string
	mu   sync.Mutex
	recs []Attempt
}

func newHarness(t *testing.T, change func(*Config)) *harness {
	t.Helper()
	h := &harness{}
	cfg := Config{
		Locate: func(context.Context, net.Conn) (Origin, error) {
			return Origin{Dst: testDst, UID: 1001, HasUID: true, PID: 4242}, nil
		},
		UserName: func(uid uint32) string {
			if uid == 1001 {
				return "alice"
			}
			return ""
		},
		Record: func(a Attempt) {
			h.mu.Lock()
			h.recs = append(h.recs, a)
			h.mu.Unlock()
		},
		Hostname: "mx.example.test",
		Now:      func() time.Time { return testTime },
	}
	if change != nil {
		change(&cfg)
	}
	h.srv = New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v", err)
		}
	})
	return h
}

// client is one SMTP client connection with a bounded wait for each reply.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (h *harness) dial(t *testing.T) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", h.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) line() (string, error) {
	c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	s, err := c.r.ReadString('\n')
	return strings.TrimRight(s, "\r\n"), err
}

func (c *client) mustLine() string {
	c.t.Helper()
	s, err := c.line()
	if err != nil {
		c.t.Fatalf("reading a reply: %v (got %q)", err, s)
	}
	return s
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// closed waits for the server to close the connection.
func (c *client) closed() bool {
	_, err := c.line()
	return errors.Is(err, io.EOF)
}

func TestGreetingNamesUserDestinationAdviceAndReference(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	g := c.mustLine()
	ref := Ref(1001, testDst, testTime)
	for _, want := range []string{"554 5.7.1 mx.example.test ", "user alice", "192.0.2.2 port 25", "localhost:25",
		"ask the administrator for an exception", "reference " + ref} {
		if !strings.Contains(g, want) {
			t.Errorf("greeting %q lacks %q", g, want)
		}
	}
	if !strings.HasPrefix(g, "554 ") || strings.ContainsAny(g, "\r\n") || len(g)+2 > maxLine {
		t.Errorf("greeting %q is not one RFC 5321 reply line", g)
	}
	c.send("QUIT\r\n")
	if got := c.mustLine(); !strings.HasPrefix(got, "221 ") {
		t.Errorf("reply to QUIT = %q, want 221", got)
	}
	if !c.closed() {
		t.Error("connection still open after QUIT")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	want := []Attempt{{Time: testTime, Origin: Origin{Dst: testDst, UID: 1001, HasUID: true, PID: 4242}, User: "alice", Ref: ref}}
	if diff := cmp.Diff(want, h.recs, cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
		t.Errorf("recorded attempts (-want +got):\n%s", diff)
	}
}

func TestCommandsAfterTheGreeting(t *testing.T) {
	tests := []struct {
		name string
		send string
		want string // prefix of the reply
	}{
		{"EHLO", "EHLO client.example\r\n", "503 5.7.1 smtpguard: user alice"},
		{"HELO", "HELO client.example\r\n", "503 5.7.1 "},
		{"MAIL", "MAIL FROM:<a@example.com>\r\n", "503 5.7.1 "},
		{"RCPT", "RCPT TO:<b@example.com>\r\n", "503 5.7.1 "},
		{"DATA", "DATA\r\n", "503 5.7.1 "},
		{"STARTTLS", "STARTTLS\r\n", "503 5.7.1 "},
		{"NOOP", "NOOP\r\n", "503 5.7.1 "},
		{"bare LF", "EHLO x\n", "503 5.7.1 "},
		{"lowercase quit", "quit\r\n", "221 2.0.0 "},
		{"long line", "EHLO " + strings.Repeat("x", 4000) + "\r\n", "500 5.5.6 "},
	}
	h := newHarness(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := h.dial(t)
			c.mustLine()
			c.send(tt.send)
			got := c.mustLine()
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("reply to %.40q = %q, want %q...", tt.send, got, tt.want)
			}
			if strings.HasPrefix(tt.want, "221") {
				return
			}
			// The session goes on: the next command is answered, QUIT ends it.
			c.send("RSET\r\nQUIT\r\n")
			if got := c.mustLine(); !strings.HasPrefix(got, "503 ") {
				t.Errorf("reply to RSET after %s = %q, want 503", tt.name, got)
			}
			if got := c.mustLine(); !strings.HasPrefix(got, "221 ") {
				t.Errorf("reply to QUIT after %s = %q, want 221", tt.name, got)
			}
		})
	}
}

func TestSilentClientIsClosedPromptly(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Idle = 100 * time.Millisecond })
	c := h.dial(t)
	c.mustLine()
	start := time.Now()
	if !c.closed() {
		t.Fatal("a client that sends nothing is still connected")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("closed after %s, want about the idle limit", took)
	}
}

func TestSessionDeadlineBoundsATrickle(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Session = 300 * time.Millisecond; c.Idle = time.Second })
	c := h.dial(t)
	c.mustLine()
	// One byte at a time, never a whole line: only the session deadline ends it.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.c.Write([]byte("x")); err != nil {
			return // closed by the server
		}
		c.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.r.ReadByte(); errors.Is(err, io.EOF) {
			return
		}
	}
	t.Fatal("a client trickling bytes was kept for 3s, past the 300ms session deadline")
}

func TestTooManyCommandsCloses(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxCommands = 3 })
	c := h.dial(t)
	c.mustLine()
	c.send(strings.Repeat("NOOP\r\n", 5))
	for range 3 {
		if got := c.mustLine(); !strings.HasPrefix(got, "503 ") {
			t.Fatalf("reply = %q, want 503", got)
		}
	}
	if got := c.mustLine(); !strings.HasPrefix(got, "421 ") {
		t.Errorf("reply after the limit = %q, want 421", got)
	}
	if !c.closed() {
		t.Error("still open after 421")
	}
}

func TestFloodBeyondMaxConnsIsDroppedAndCounted(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxConns = 2; c.Idle = 5 * time.Second })
	held := []*client{h.dial(t), h.dial(t)}
	for _, c := range held {
		c.mustLine() // both sessions running
	}
	extra := h.dial(t)
	if s, err := extra.line(); err == nil {
		t.Errorf("connection beyond MaxConns was answered %q, want closed unanswered", s)
	}
	if got := h.srv.Dropped(); got != 1 {
		t.Errorf("Dropped() = %d, want 1", got)
	}
	// A slot freed is used again.
	held[0].send("QUIT\r\n")
	held[0].mustLine()
	if !held[0].closed() {
		t.Fatal("not closed after QUIT")
	}
	var got string
	for i := 0; i < 50 && !strings.HasPrefix(got, "554 "); i++ { // the slot frees just after the close
		c := h.dial(t)
		got, _ = c.line()
	}
	if !strings.HasPrefix(got, "554 ") {
		t.Errorf("after a session ended, a new connection got %q, want the greeting", got)
	}
}

func TestUnknownOriginIsNotRecorded(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Locate = func(context.Context, net.Conn) (Origin, error) { return Origin{}, errors.New("no NAT record") }
	})
	c := h.dial(t)
	g := c.mustLine()
	if !strings.HasPrefix(g, "554 5.7.1 ") || strings.Contains(g, "reference") {
		t.Errorf("greeting for an unknown origin = %q, want a 554 without a reference", g)
	}
	c.send("QUIT\r\n")
	c.mustLine()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.recs) != 0 {
		t.Errorf("recorded %v for a connection of unknown origin", h.recs)
	}
}

func TestRefIsTheAggregatesKey(t *testing.T) {
	a := Ref(1001, testDst, testTime)
	tests := []struct {
		name string
		ref  string
		same bool
	}{
		{"same minute", Ref(1001, testDst, testTime.Add(40*time.Second)), true},
		{"IPv4-mapped destination", Ref(1001, netip.MustParseAddrPort("[::ffff:192.0.2.2]:25"), testTime), true},
		{"next minute", Ref(1001, testDst, testTime.Add(time.Minute)), false},
		{"other uid", Ref(1002, testDst, testTime), false},
		{"other port", Ref(1001, netip.MustParseAddrPort("192.0.2.2:587"), testTime), false},
	}
	for _, tt := range tests {
		if (tt.ref == a) != tt.same {
			t.Errorf("%s: Ref %s vs %s, want same=%v", tt.name, tt.ref, a, tt.same)
		}
	}
	if !strings.HasPrefix(a, "sg-") || len(a) != 13 {
		t.Errorf("Ref = %q, want sg- and 10 hex digits", a)
	}
}

func TestReasonWithoutAccount(t *testing.T) {
	got := Reason("", Origin{Dst: testDst, UID: 4711, HasUID: true}, true, "sg-0")
	if !strings.Contains(got, "uid 4711 may not") {
		t.Errorf("Reason = %q, want the uid named", got)
	}
	got = Reason("bad\r\nname", Origin{Dst: testDst, HasUID: true}, true, "sg-0")
	if strings.ContainsAny(got, "\r\n") {
		t.Errorf("Reason = %q: a user name broke the line", got)
	}
}
