//go:build linux

package nft

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// srhEnv carries a request to the test binary re-executed as the SRH helper.
const srhEnv = "SMTPGUARD_NFT_SRH_HELPER"

type srhRequest struct {
	UID, GID uint32
	Groups   []uint32
	Dst      string // final destination, "[addr]:port"
	Segment  string // the first (and only other) segment
}

// maybeRunSRHHelper connects as the requested user with an IPv6 segment
// routing header (IPV6_RTHDR, which needs no privilege) and prints "ok" or
// the error, then exits.
func maybeRunSRHHelper() {
	raw := os.Getenv(srhEnv)
	if raw == "" {
		return
	}
	var req srhRequest
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		fmt.Fprintln(os.Stderr, "srh helper:", err)
		os.Exit(2)
	}
	if err := testutil.DropPrivileges(req.UID, req.GID, req.Groups); err != nil {
		fmt.Fprintln(os.Stderr, "srh helper:", err)
		os.Exit(2)
	}
	fmt.Println(srhConnect(req))
	os.Exit(0)
}

// srh builds a type 4 routing header (RFC 8754) with two segments: the
// kernel fills segments[0] with the connect() address and sends the packet
// to segments[1] first.
func srh(first netip.Addr) []byte {
	const segs = 2
	b := []byte{0, 2 * segs, 4, segs - 1, segs - 1, 0, 0, 0}
	b = append(b, make([]byte, 16)...) // segments[0]: the final destination
	a := first.As16()
	return append(b, a[:]...)
}

func srhConnect(req srhRequest) string {
	seg, err := netip.ParseAddr(req.Segment)
	if err != nil {
		return err.Error()
	}
	d := net.Dialer{Timeout: testutil.ConnectTimeout, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RTHDR, string(srh(seg)))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("setsockopt IPV6_RTHDR: %w", serr)
		}
		return nil
	}}
	c, err := d.Dial("tcp6", req.Dst)
	if err != nil {
		return err.Error()
	}
	c.Close()
	return "ok"
}

// connectSRH connects from the client namespace as u to dst through the
// routing header, and returns "ok" or the error.
func (w *world) connectSRH(t *testing.T, u *testutil.User, dst, segment string) string {
	t.Helper()
	body, err := json.Marshal(srhRequest{UID: u.UID, GID: u.GID, Groups: u.Groups, Dst: dst, Segment: segment})
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.ConnectTimeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", w.client.Name, exe)
	cmd.Env = append(os.Environ(), srhEnv+"="+string(body))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("srh helper: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// Hole 9 of issue 12: an IPv6 packet whose destination is this host's own
// address only as the first segment of a routing header must not pass as
// local. The client namespace forwards segment-routed packets (SRv6 on,
// forwarding on), so without the fix a blocked user reaches the remote
// server through its own address.
func TestPrivilegedRoutingHeaderIsNotLocal(t *testing.T) {
	testutil.Privileged(t)
	allowed := testutil.NewUser(t, "srhok", "")
	blocked := testutil.NewUser(t, "srhblk", "")
	w := newWorld(t, "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.seg6_enabled=1",
		"net.ipv6.conf.default.seg6_enabled=1", "net.ipv6.conf.lo.seg6_enabled=1")
	b := w.backend()
	rs := baseRuleset()
	rs.UIDs = append(rs.UIDs, allowed.UID)
	mustApply(t, b, rs)
	dst := testutil.HostPort(serverV6, 25)
	const ownAddr = "2001:db8::1" // the client's own address, first segment
	// The allowed user proves the routing header really gets to the server.
	if got := w.connectSRH(t, &allowed, dst, ownAddr); got != "ok" {
		t.Fatalf("allowed user through the routing header: %s; want a connection (is SRv6 forwarding set up?)", got)
	}
	if got := w.connectSRH(t, &blocked, dst, ownAddr); got == "ok" {
		t.Errorf("blocked user connected to %s with a routing header whose first segment is %s (this host): the local rule let it through", dst, ownAddr)
	}
	// Without a routing header local destinations still pass, on both families.
	for _, addr := range []string{testutil.HostPort(ownAddr, 25), testutil.HostPort("127.0.0.1", 25)} {
		testutil.ListenTCP(t, w.client, addr)
		if r := testutil.ConnectAs(t, w.client, &blocked, addr)[0]; !r.OK {
			t.Errorf("blocked user to the local address %s: %s; want a connection (allow-local is on)", addr, r)
		}
	}
}
