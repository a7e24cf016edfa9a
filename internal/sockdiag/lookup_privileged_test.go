//go:build linux

package sockdiag_test

import (
	"net"
	"net/netip"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/sockdiag"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// Lookup finds a connected socket by its own address and its peer's, with
// the uid, inode and cookie the kernel gives it elsewhere (fstat, SO_COOKIE),
// over IPv4 and IPv6; a tuple no socket has is an error.
func TestPrivilegedLookup(t *testing.T) {
	testutil.Privileged(t)
	ns := testutil.NewNetNS(t)
	for _, server := range []string{"127.0.0.1:2500", "[::1]:2500"} {
		testutil.HoldTCP(t, ns, server)
		remote := netip.MustParseAddrPort(server)
		var local netip.AddrPort
		var inode uint64
		var cookie uint64
		var got sockdiag.Owner
		var missErr error
		err := ns.Do(func() error {
			c, err := net.Dial("tcp", server)
			if err != nil {
				return err
			}
			t.Cleanup(func() { c.Close() })
			local = netip.MustParseAddrPort(c.LocalAddr().String())
			raw, err := c.(*net.TCPConn).SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			raw.Control(func(fd uintptr) {
				var st syscall.Stat_t
				if serr = syscall.Fstat(int(fd), &st); serr == nil {
					inode = st.Ino
				}
				v, err := unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
				if serr == nil {
					serr = err
				}
				cookie = v
			})
			if serr != nil {
				return serr
			}
			d, err := sockdiag.Dial()
			if err != nil {
				return err
			}
			defer d.Close()
			if got, err = d.Lookup(local, remote); err != nil {
				return err
			}
			_, missErr = d.Lookup(netip.AddrPortFrom(local.Addr(), 1), remote)
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", server, err)
		}
		if want := (sockdiag.Owner{UID: 0, Inode: uint32(inode), Cookie: cookie}); got != want {
			t.Errorf("Lookup(%s, %s) = %+v, want %+v", local, remote, got, want)
		}
		if missErr == nil {
			t.Errorf("Lookup of a tuple no socket has succeeded")
		}
	}
}
