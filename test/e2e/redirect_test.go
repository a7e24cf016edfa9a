//go:build linux

package e2e

import (
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// expectServedBy asserts that u's connection to addr is answered by the
// listener named want (the test listeners put their address in the banner).
func (w *world) expectServedBy(u *testutil.User, addr, want string) {
	w.t.Helper()
	r := w.connect(u, addr)[0]
	switch {
	case !r.OK:
		w.t.Errorf("%s to %s: %s, want it answered by %s", w.who(u), addr, r, want)
	case !strings.HasPrefix(r.Banner, "220 "+want+" "):
		w.t.Errorf("%s to %s was answered by %q, want %s", w.who(u), addr, strings.TrimSpace(r.Banner), want)
	}
}

// TestPrivilegedRedirectMode: redirect sends an ordinary user's remote SMTP
// to the local MTA, same port (nft with DNAT, bpf by rewriting the connect()
// address), and nobody else's.
func TestPrivilegedRedirectMode(t *testing.T) {
	forEachBackend(t, testRedirectMode)
}

func testRedirectMode(t *testing.T, w *world) {
	w.enable()
	w.sgOK("allow", "group", w.group)
	w.sgOK("set", "mode", "redirect")
	if st := w.status(); st.Mode != "redirect" || st.Kernel.State != "in sync" {
		t.Fatalf("status = %+v, want redirect mode in sync", st)
	}

	t.Run("an ordinary user's remote SMTP lands on the local MTA", func(t *testing.T) {
		w.t = t
		w.expectServedBy(&w.plain, "192.0.2.2:25", "127.0.0.1:25")
		w.expectServedBy(&w.plain, "[2001:db8::2]:25", "[::1]:25")
		w.expectServedBy(&w.plain, "[::ffff:192.0.2.2]:25", "127.0.0.1:25")
	})
	t.Run("root and allowed users are never redirected", func(t *testing.T) {
		w.t = t
		w.expectServedBy(nil, "192.0.2.2:25", "192.0.2.2:25")
		w.expectServedBy(nil, "[2001:db8::2]:25", "[2001:db8::2]:25")
		w.expectServedBy(&w.supp, "192.0.2.2:25", "192.0.2.2:25")
		w.expectServedBy(&w.primary, "[2001:db8::2]:25", "[2001:db8::2]:25")
	})
	t.Run("non-SMTP traffic is untouched", func(t *testing.T) {
		w.t = t
		w.expectServedBy(&w.plain, "192.0.2.2:8080", "192.0.2.2:8080")
		w.expectServedBy(&w.plain, "[2001:db8::2]:8080", "[2001:db8::2]:8080")
	})
	t.Run("back to reject refuses again", func(t *testing.T) {
		w.t = t
		w.sgOK("set", "mode", "reject")
		w.expectBlocked(&w.plain, remote(25)...)
		if !w.isBPF() && strings.Contains(w.kernelTable(), "nat") {
			t.Errorf("reject mode left a NAT chain behind:\n%s", w.kernelTable())
		}
	})
	w.t = t
	w.sgOK("disable")
}
