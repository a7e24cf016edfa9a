//go:build linux

package testutil

import (
	"os"
	"testing"
)

// ConnectAsIn is ConnectAs for a process of cgroup cg: the helper runs in
// ns through nsenter --net (ip netns exec would hide the cgroup mount) and
// is started inside cg, so a bpf program attached there sees its connects.
func ConnectAsIn(t testing.TB, cg *Cgroup, ns *NetNS, u *User, addrs ...string) []ConnectResult {
	t.Helper()
	req := connectRequest{AsRoot: u == nil, Addrs: addrs}
	if u != nil {
		req.UID, req.GID, req.Groups = u.UID, u.GID, u.Groups
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{exe}
	if ns != nil {
		argv = []string{"nsenter", "--net=" + ns.Path(), "--", exe}
	}
	results, err := callHelperWith(req, cg.Start, argv...)
	if err != nil {
		t.Fatalf("connect as %s in cgroup %s, network namespace %v: %v", userName(u), cg.Path, ns, err)
	}
	return results
}
