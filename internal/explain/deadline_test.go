package explain

import (
	"strings"
	"testing"
	"time"
)

// TestSessionDeadlineHoldsAfterCommands: the wait for each command never
// reaches past the whole session's deadline, so a client that sends one
// command and then nothing is closed when the session ends, not an idle
// wait later.
func TestSessionDeadlineHoldsAfterCommands(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Session = 300 * time.Millisecond; c.Idle = 2500 * time.Millisecond })
	c := h.dial(t)
	start := time.Now()
	c.mustLine()
	c.send("NOOP\r\n")
	if got := c.mustLine(); !strings.HasPrefix(got, "503 ") {
		t.Fatalf("reply to NOOP = %q, want 503", got)
	}
	if !c.closed() {
		t.Fatal("the connection is still open")
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("closed %s after connecting, want about the 300ms session deadline (not the 2.5s idle wait)", took.Round(time.Millisecond))
	}
}
