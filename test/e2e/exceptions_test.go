//go:build linux

package e2e

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/resolve/resolvetest"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// startDNS serves relay.test from inside the client namespace on 127.0.0.1:53
// and points the namespace's resolv.conf at it, for the CLI and the daemon.
func (w *world) startDNS(t *testing.T) *resolvetest.Server {
	t.Helper()
	srv := resolvetest.New(1) // TTL 1 s, so changes show quickly
	var pc net.PacketConn
	if err := w.client.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:53")
		return err
	}); err != nil {
		t.Fatalf("DNS server in the client namespace: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	go srv.Serve(pc)
	w.client.SetResolvConf(t, "nameserver 127.0.0.1\n")
	return srv
}

type exceptionStatus struct {
	User        string   `json:"user"`
	To          string   `json:"to"`
	Ports       []int    `json:"ports"`
	Addresses   []string `json:"addresses"`
	ResolvedAt  string   `json:"resolved_at"`
	Unresolved  bool     `json:"unresolved"`
	LookupError string   `json:"lookup_error"`
}

func (w *world) exceptions() []exceptionStatus {
	w.t.Helper()
	var st struct {
		Exceptions []exceptionStatus `json:"exceptions"`
	}
	if err := json.Unmarshal([]byte(w.sgOK("status", "--json")), &st); err != nil {
		w.t.Fatal(err)
	}
	return st.Exceptions
}

func TestPrivilegedExceptions(t *testing.T) {
	w := newWorld(t)
	dns := w.startDNS(t)
	dns.Set("relay.test", "192.0.2.2", "2001:db8::2")
	w.sgOK("enable", "--backend", "nft")
	w.startDaemon(t, "--dns-min-ttl", "1s")

	t.Run("an address exception opens one server on one port", func(t *testing.T) {
		w.t = t
		w.sgOK("allow", "user", w.plain.Name, "--to", "192.0.2.2", "--port", "587")
		w.sgOK("allow", "user", w.plain.Name, "--to", "2001:db8::2", "--port", "587")
		w.expectServedBy(&w.plain, "192.0.2.2:587", "192.0.2.2:587")
		w.expectServedBy(&w.plain, "[::ffff:192.0.2.2]:587", "192.0.2.2:587")
		w.expectServedBy(&w.plain, "[2001:db8::2]:587", "[2001:db8::2]:587")
		w.expectBlocked(&w.plain, "192.0.2.3:587", "[2001:db8::3]:587", "192.0.2.2:25", "[2001:db8::2]:25", "192.0.2.2:465")
		// Another ordinary user gains nothing.
		w.expectBlocked(&w.supp, "192.0.2.2:587", "[2001:db8::2]:587")
	})
	t.Run("a CIDR exception covers its range only", func(t *testing.T) {
		w.t = t
		w.sgOK("allow", "user", w.supp.Name, "--to", "192.0.2.0/24", "--port", "25")
		w.sgOK("allow", "user", w.supp.Name, "--to", "2001:db8::/64", "--port", "25")
		w.expectReach(&w.supp, "192.0.2.2:25", "192.0.2.3:25", "[2001:db8::2]:25", "[2001:db8::3]:25")
		w.expectBlocked(&w.supp, "192.0.2.2:587", "[2001:db8::3]:465")
	})
	t.Run("a host name exception follows DNS without a restart", func(t *testing.T) {
		w.t = t
		w.sgOK("revoke", "user", w.plain.Name, "--to", "192.0.2.2")
		w.sgOK("revoke", "user", w.plain.Name, "--to", "2001:db8::2")
		w.expectBlocked(&w.plain, "192.0.2.2:587", "[2001:db8::2]:587")
		w.sgOK("allow", "user", w.plain.Name, "--to", "relay.test", "--port", "587")
		w.expectServedBy(&w.plain, "192.0.2.2:587", "192.0.2.2:587")
		w.expectServedBy(&w.plain, "[2001:db8::2]:587", "[2001:db8::2]:587")
		w.expectBlocked(&w.plain, "192.0.2.3:587", "[2001:db8::3]:587")
		ex := w.exceptions()
		if len(ex) != 3 || ex[2].To != "relay.test" || strings.Join(ex[2].Addresses, ",") != "192.0.2.2,2001:db8::2" || ex[2].ResolvedAt == "" {
			t.Errorf("status exceptions = %+v, want relay.test with its addresses and resolution time", ex)
		}
		dns.Set("relay.test", "192.0.2.3", "2001:db8::3")
		w.waitUntil(t, "the new answer to be enforced", 5*time.Second, func() bool {
			r := testutil.ConnectAs(t, w.client, &w.plain, "192.0.2.3:587", "[2001:db8::3]:587")
			return r[0].OK && r[1].OK
		})
		w.expectBlocked(&w.plain, "192.0.2.2:587", "[2001:db8::2]:587")
	})
	t.Run("a blocked attempt says how to allow exactly it", func(t *testing.T) {
		w.t = t
		w.expectBlocked(&w.plain, "192.0.2.2:465")
		want := "smtpguard allow user " + w.plain.Name + " --to 192.0.2.2 --port 465"
		w.waitUntil(t, "the explained event", 3*time.Second, func() bool {
			var evs []struct {
				AllowCommand string `json:"allow_command"`
				BlockedBy    string `json:"blocked_by"`
			}
			json.Unmarshal([]byte(w.sgOK("events", "--json")), &evs)
			for _, e := range evs {
				if e.AllowCommand == want && strings.Contains(e.BlockedBy, "block rule") {
					return true
				}
			}
			return false
		})
		// And that command works as printed.
		w.sgOK(strings.Fields(strings.TrimPrefix(want, "smtpguard "))...)
		w.expectReach(&w.plain, "192.0.2.2:465")
		w.expectBlocked(&w.plain, "192.0.2.3:465")
	})
	t.Run("export carries exceptions; revoking restores the block", func(t *testing.T) {
		w.t = t
		if out := w.sgOK("export"); !strings.Contains(out, `to = "relay.test"`) || !strings.Contains(out, "[[exceptions]]") {
			t.Errorf("export lacks the exceptions:\n%s", out)
		}
		w.sgOK("revoke", "user", w.plain.Name, "--to", "relay.test")
		w.sgOK("revoke", "user", w.supp.Name, "--to", "192.0.2.0/24")
		w.expectBlocked(&w.plain, "192.0.2.3:587", "[2001:db8::3]:587")
		w.expectBlocked(&w.supp, "192.0.2.3:25")
		w.expectReach(&w.supp, "[2001:db8::3]:25") // its v6 CIDR exception remains
	})
}
