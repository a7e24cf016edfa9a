//go:build linux

package e2e

import (
	"testing"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// Rules decide new connections; an SMTP session opened before a change that
// refuses it must end with that change too, or a spammer who connected
// before "enable" keeps sending.
func TestPrivilegedChangesEndRefusedSessions(t *testing.T) {
	w := newWorld(t)
	const smtp, smtp6, other = "192.0.2.2:2600", "[2001:db8::2]:2600", "192.0.2.2:2601"
	for _, addr := range []string{smtp, smtp6, other} {
		testutil.HoldTCP(t, w.server, addr)
	}
	w.sgOK("set", "ports", "2600")
	w.sgOK("allow", "group", w.group)

	plainSMTP := testutil.OpenSession(t, w.client, w.plain.UID, smtp)
	plainOther := testutil.OpenSession(t, w.client, w.plain.UID, other)
	memberSMTP := testutil.OpenSession(t, w.client, w.supp.UID, smtp6)
	rootSMTP := testutil.OpenSession(t, w.client, 0, smtp)
	expect := func(step string, want map[*testutil.Session]bool) {
		t.Helper()
		for s, ended := range want {
			if got := s.Ended(t); got != ended {
				t.Errorf("after %s: session of uid %d to %s ended = %v, want %v", step, s.UID, s.Addr, got, ended)
			}
		}
	}

	w.sgOK("enable", "--backend", "nft")
	expect("enable", map[*testutil.Session]bool{plainSMTP: true, plainOther: false, memberSMTP: false, rootSMTP: false})

	w.sgOK("revoke", "group", w.group)
	expect("revoke", map[*testutil.Session]bool{plainOther: false, memberSMTP: true, rootSMTP: false})

	w.sgOK("set", "ports", "2600,2601")
	expect("set ports", map[*testutil.Session]bool{plainOther: true, rootSMTP: false})
}
