//go:build linux

package bpf

import (
	"net/netip"
	"testing"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// TestPrivilegedBPFExplainMode: plain-text ports go to the responder's port
// on loopback with the original destination kept under the socket cookie,
// 465 is refused, allowed users are untouched, and with nothing listening
// on the responder's port the client is refused as in reject mode.
func TestPrivilegedBPFExplainMode(t *testing.T) {
	w := newWorld(t)
	events := w.collectEvents()
	const port = 11026 // not the default: the program follows the ruleset's
	rs := w.ruleset(policy.ModeExplain)
	rs.ExplainPort = port
	w.apply(rs)

	plain := []string{hostPort(serverV4, 25), hostPort(serverV6, 587), hostPort("::ffff:"+serverV4, 25)}
	w.check("explain with no responder refuses", w.connect(helperConnect, &w.user, plain...),
		[]expect{{addr: plain[0], errno: "ECONNREFUSED"}, {addr: plain[1], errno: "ECONNREFUSED"}, {addr: plain[2], errno: "ECONNREFUSED"}})

	testutil.ListenTCP(t, w.client, hostPort("127.0.0.1", port))
	testutil.ListenTCP(t, w.client, hostPort("::1", port))
	w.check("explain sends plain-text ports to the responder", w.connect(helperConnect, &w.user, plain...),
		[]expect{
			{addr: plain[0], banner: hostPort("127.0.0.1", port)},
			{addr: plain[1], banner: hostPort("::1", port)},
			{addr: plain[2], banner: hostPort("127.0.0.1", port)},
		})
	tls := []string{hostPort(serverV4, 465), hostPort(serverV6, 465), hostPort("::ffff:"+serverV4, 465)}
	w.check("explain refuses implicit TLS", w.connect(helperConnect, &w.user, tls...),
		[]expect{{addr: tls[0], errno: w.refusal}, {addr: tls[1], errno: w.refusal}, {addr: tls[2], errno: w.refusal}})
	w.check("explain spares allowed users", w.connect(helperConnect, &w.allowed, plain[0], tls[1]),
		[]expect{{addr: plain[0], banner: plain[0]}, {addr: tls[1], banner: tls[1]}})

	// Six explained attempts (three refused for want of a responder, three
	// answered), three refused on 465, each reported.
	explained := events.waitFor(t, 6, func(e Event) bool { return e.Action == enforce.ActionExplained && e.UID == w.user.UID })
	events.waitFor(t, 3, func(e Event) bool {
		return e.Action == enforce.ActionBlocked && e.UID == w.user.UID && e.DstPort == 465
	})
	want := map[string]bool{"192.0.2.2:25": true, "[2001:db8::2]:587": true}
	for _, e := range explained {
		dst, ok := w.b.ExplainedDestination(e.SocketCookie)
		if !ok {
			t.Errorf("no destination kept for the explained socket %d (to %s:%d)", e.SocketCookie, e.Dst, e.DstPort)
			continue
		}
		got := netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
		if !want[got.String()] || got != netip.AddrPortFrom(e.Dst.Unmap(), e.DstPort) {
			t.Errorf("socket %d: kept destination %s, its event says %s:%d", e.SocketCookie, dst, e.Dst, e.DstPort)
		}
		if _, again := w.b.ExplainedDestination(e.SocketCookie); again {
			t.Errorf("socket %d: destination still kept after it was read", e.SocketCookie)
		}
	}

	// Back to reject: the programs refuse again, the port map is cleared.
	w.apply(w.ruleset(policy.ModeReject))
	w.check("reject again", w.connect(helperConnect, &w.user, plain[0]), []expect{{addr: plain[0], errno: w.refusal}})
}
