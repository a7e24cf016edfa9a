//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// TestPrivilegedBPFLocalAddressesFollowNetlink: under bpf with allow-local,
// an address added to the daemon's network namespace is reachable as local
// within a bounded wait, and refused again once removed, long before the
// periodic verify (an hour here) would have refreshed the list: the daemon
// follows RTM_NEWADDR / RTM_DELADDR.
func TestPrivilegedBPFLocalAddressesFollowNetlink(t *testing.T) {
	w := newWorldFor(t, "bpf")
	// Enabled before the daemon starts: its converge at start is then the
	// last time it applies the policy (and lists the addresses) until the
	// verify an hour later, since nothing changes the policy after.
	w.sgOK("enable", "--backend", "bpf", "--cgroup", w.cg.Path)
	t.Cleanup(func() { w.sg("disable") })
	logs := &strings.Builder{}
	cmd := w.command("serve", "--listen", metricsAddr, "--verify-interval", "1h", "--backend", "bpf", "--cgroup", w.cg.Path)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start serve: %v", err)
	}
	d := testutil.Watch(cmd)
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	w.waitUntil(t, "the daemon serves /metrics", 10*time.Second, func() bool {
		_, err := w.metrics()
		return err == nil
	})

	const addr = "192.0.2.77"
	target := addr + ":25"
	connect := func() testutil.ConnectResult {
		return testutil.ConnectAsIn(t, w.cg, w.client, &w.plain, target)[0]
	}
	if r := connect(); r.OK || (r.Errno != "ECONNREFUSED" && r.Errno != "EPERM") {
		t.Fatalf("%s to %s before it is an address of the namespace: %s, want refused by bpf", w.plain.Name, target, r)
	}
	w.client.Exec(t, "ip", "addr", "add", addr+"/32", "dev", "lo")
	testutil.ListenTCP(t, w.client, target)
	var last testutil.ConnectResult
	w.waitUntil(t, "a new address of the namespace counts as local", 5*time.Second, func() bool {
		last = connect()
		return last.OK
	})
	t.Logf("%s counted as local: %s", addr, last)
	w.client.Exec(t, "ip", "addr", "del", addr+"/32", "dev", "lo")
	// No longer local: a restricted port on a remote address, refused at
	// connect() by bpf (without it the connect would wait for ARP).
	w.waitUntil(t, "a removed address is no longer local", 10*time.Second, func() bool {
		last = connect()
		return !last.OK && (last.Errno == "ECONNREFUSED" || last.Errno == "EPERM") && last.Elapsed < time.Second
	})
}
