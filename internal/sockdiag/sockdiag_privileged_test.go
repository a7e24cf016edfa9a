//go:build linux

package sockdiag_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/sockdiag"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.MaybeRunHelper()
	if os.Getenv(testutil.PrivilegedEnv) == "1" {
		if err := testutil.RemoveLeftovers(); err != nil {
			fmt.Fprintln(os.Stderr, "warning:", err)
		}
	}
	os.Exit(m.Run())
}

// Sessions opened before the rules changed end exactly when the new rules
// would refuse them if they were opened now.
func TestPrivilegedEndDisallowed(t *testing.T) {
	testutil.Privileged(t)
	ns := testutil.NewNetNS(t)
	for _, addr := range []string{"127.0.0.1:25", "127.0.0.1:8080", "[::1]:587", "127.0.0.2:25"} {
		testutil.HoldTCP(t, ns, addr)
	}
	const plain, allowed, excepted = 4001, 4002, 4003
	rs := policy.Ruleset{
		Mode:  policy.ModeReject,
		Ports: []uint16{25, 465, 587},
		// Loopback stands in for remote servers: local destinations are
		// not allowed here.
		AllowLocal: false,
		UIDs:       []uint32{0, allowed},
		Exceptions: []policy.ExceptionRule{{UID: excepted, Dst: netip.MustParsePrefix("127.0.0.2/32"), Port: 25}},
	}
	cases := []struct {
		name  string
		uid   uint32
		addr  string
		ended bool
	}{
		{"ordinary user to port 25", plain, "127.0.0.1:25", true},
		{"ordinary user to port 587 over IPv6", plain, "[::1]:587", true},
		{"ordinary user to a port that is not restricted", plain, "127.0.0.1:8080", false},
		{"allowed user", allowed, "127.0.0.1:25", false},
		{"root", 0, "127.0.0.1:25", false},
		{"exception's destination", excepted, "127.0.0.2:25", false},
		{"exception's user elsewhere", excepted, "127.0.0.1:25", true},
	}
	sessions := make([]*testutil.Session, len(cases))
	for i, c := range cases {
		sessions[i] = testutil.OpenSession(t, ns, c.uid, c.addr)
	}
	for i, c := range cases {
		if sessions[i].Ended(t) {
			t.Fatalf("%s: ended before any rule changed", c.name)
		}
	}

	logOnly := rs.Clone()
	logOnly.Mode = policy.ModeLog
	if n := endIn(t, ns, logOnly); n != 0 {
		t.Errorf("EndDisallowed in log mode ended %d connections, want 0", n)
	}

	n := endIn(t, ns, rs)
	want := 0
	for i, c := range cases {
		if got := sessions[i].Ended(t); got != c.ended {
			t.Errorf("%s (uid %d to %s): ended = %v, want %v", c.name, c.uid, c.addr, got, c.ended)
		}
		if c.ended {
			want++
		}
	}
	if n != want {
		t.Errorf("EndDisallowed = %d, want %d", n, want)
	}
}

func endIn(t *testing.T, ns *testutil.NetNS, rs policy.Ruleset) int {
	t.Helper()
	var n int
	err := ns.Do(func() (err error) {
		n, err = sockdiag.Ender{}.EndDisallowed(context.Background(), rs)
		return err
	})
	if err != nil {
		t.Fatalf("EndDisallowed: %v", err)
	}
	return n
}
