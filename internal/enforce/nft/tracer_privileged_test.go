//go:build linux

package nft

import (
	"net/netip"
	"os"
	"testing"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// outcome is what a connect shows of a verdict: the kernel cannot tell accept
// from log (both let the connection through), so neither can the test.
func outcome(v policy.Verdict) string {
	switch v {
	case policy.VerdictReject:
		return "refused"
	case policy.VerdictRedirect:
		return "redirected"
	case policy.VerdictExplain:
		return "explained"
	}
	return "through"
}

// tracerDst is one destination of the grid: what to dial, which listener
// answers it, whether it is this host's own.
type tracerDst struct {
	host   string // as dialled
	listen string // the listener's address (banner), "" when it is host
	local  bool
}

// As kube-proxy checks its tracer against the rules it sends: apply a real
// policy (an allowed user, an allowed group's primary and supplementary
// members, an exception user, an ordinary user, root) in a namespace,
// connect for real to remote and local destinations on restricted and
// unrestricted ports, and compare each outcome with policy.Ruleset.Trace.
func TestPrivilegedTracerMatchesKernel(t *testing.T) {
	testutil.Privileged(t)
	groupName, groupID := testutil.NewGroup(t, "trgrp")
	allowed := testutil.NewUser(t, "tralw", "")
	member := testutil.NewUser(t, "trmem", "", groupName)
	primary := testutil.NewUser(t, "trpri", groupName)
	excUser := testutil.NewUser(t, "trexc", "")
	plain := testutil.NewUser(t, "trpln", "")
	users := []*testutil.User{nil, &allowed, &member, &primary, &excUser, &plain}

	passwd, err := os.Open("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	defer passwd.Close()
	group, err := os.Open("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	defer group.Close()
	dir, err := policy.ParseDirectory(passwd, group)
	if err != nil {
		t.Fatal(err)
	}
	p := policy.Default()
	p.Enabled = true
	p.Users = []policy.Principal{{Kind: policy.KindUser, Name: allowed.Name, ID: allowed.UID}}
	p.Groups = []policy.Principal{{Kind: policy.KindGroup, Name: groupName, ID: groupID}}
	excP := policy.Principal{Kind: policy.KindUser, Name: excUser.Name, ID: excUser.UID}
	p.Exceptions = []policy.Exception{
		{Principal: excP, Destination: serverV4, Ports: []uint16{587}},
		{Principal: excP, Destination: "2001:db8::/48", Ports: []uint16{25}},
		{Principal: excP, Destination: "198.51.100.0/24"}, // covers nothing here
	}

	w := newWorld(t)
	dsts := []tracerDst{
		{host: serverV4}, {host: serverV6}, {host: "::ffff:" + serverV4, listen: serverV4},
		{host: "127.0.0.1", local: true}, {host: "::1", local: true},
		{host: "192.0.2.1", local: true}, {host: "2001:db8::1", local: true},
	}
	ports := []int{25, 465, 587, 8080}
	for _, d := range dsts {
		if d.local {
			for _, port := range ports {
				testutil.ListenTCP(t, w.client, testutil.HostPort(d.host, port))
			}
		}
	}
	variants := map[string]func(*policy.Policy){
		"reject":          func(*policy.Policy) {},
		"reject no local": func(p *policy.Policy) { p.AllowLocal = false },
		"log":             func(p *policy.Policy) { p.Mode = policy.ModeLog },
		"redirect":        func(p *policy.Policy) { p.Mode = policy.ModeRedirect },
		"explain":         func(p *policy.Policy) { p.Mode = policy.ModeExplain },
	}
	// Explain mode treats implicit TLS apart: the grid needs a server there.
	for _, addr := range []string{serverV4, serverV6} {
		testutil.ListenTCP(t, w.server, testutil.HostPort(addr, 465))
	}
	// The explain responder's stand-in: a listener on its loopback port.
	for _, loop := range []string{"127.0.0.1", "::1"} {
		testutil.ListenTCP(t, w.client, testutil.HostPort(loop, policy.DefaultExplainPort))
	}
	b := w.backend()
	for name, change := range variants {
		t.Run(name, func(t *testing.T) {
			vp := p.Clone()
			change(&vp)
			rs := policy.Compile(vp, policy.Resolve(vp, dir, nil))
			rs.Exceptions, _ = policy.ResolveExceptions(vp, dir, nil)
			if len(rs.Exceptions) != 6 { // one per port: 587, 25, and all four
				t.Fatalf("exceptions resolved to %v, want six rules", rs.Exceptions)
			}
			mustApply(t, b, rs)
			assertInSync(t, b, rs)
			seen := map[string]int{}
			for _, u := range users {
				var addrs []string
				for _, d := range dsts {
					for _, port := range ports {
						addrs = append(addrs, testutil.HostPort(d.host, port))
					}
				}
				results := testutil.ConnectAs(t, w.client, u, addrs...)
				uid := uint32(0)
				if u != nil {
					uid = u.UID
				}
				i := 0
				for _, d := range dsts {
					for _, port := range ports {
						r := results[i]
						i++
						dst := netip.MustParseAddr(d.host)
						want := outcome(rs.Trace(policy.Packet{UID: uid, Dst: dst, DstPort: uint16(port), DstLocal: d.local}))
						got := "failed: " + r.String()
						listen := d.listen
						if listen == "" {
							listen = d.host
						}
						loop := "127.0.0.1"
						if !dst.Unmap().Is4() {
							loop = "::1"
						}
						switch {
						case r.OK && r.Banner == testutil.Banner(testutil.HostPort(listen, port)):
							got = "through"
						case r.OK && r.Banner == testutil.Banner(testutil.HostPort(loop, port)):
							got = "redirected"
						case r.OK && r.Banner == testutil.Banner(testutil.HostPort(loop, policy.DefaultExplainPort)):
							got = "explained"
						case !r.OK && r.Errno == "ECONNREFUSED":
							got = "refused"
						}
						if got != want {
							t.Errorf("uid %d to %s: kernel %s, tracer %s", uid, r.Addr, got, want)
						}
						seen[want]++
					}
				}
			}
			t.Logf("outcomes: %v", seen)
			if seen["through"] == 0 || (rs.Mode != policy.ModeLog && seen[outcome(rs.Trace(policy.Packet{UID: plain.UID, DstPort: 25}))] == 0) {
				t.Errorf("outcomes %v: the grid misses passed or blocked connections", seen)
			}
		})
	}
}
