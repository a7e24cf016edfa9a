//go:build linux

package explain

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/procinfo"
	"github.com/smtpguard/smtpguard/internal/sockdiag"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h): the destination
// conntrack saw before a NAT rule rewrote it.
const soOriginalDst = 80

// Finder locates the origin of a connection the kernel sent to the
// responder, by either backend's means:
//   - nft redirects with NAT, so conntrack keeps the original destination
//     (SO_ORIGINAL_DST on the accepted socket) and the client's own socket
//     still names it as its peer;
//   - the bpf program rewrote the client socket's destination before it
//     connected, so that socket names loopback as its peer and the program
//     kept the original one under the socket's cookie (ByCookie).
//
// Either way sock_diag then gives the client socket's uid and inode, and
// /proc the process that holds that inode.
type Finder struct {
	Proc procinfo.Reader
	// ByCookie, when set, returns the destination a client socket with this
	// cookie dialled before the bpf program rewrote it.
	ByCookie func(cookie uint64) (netip.AddrPort, bool)
}

// Locate is a Locator.
func (f Finder) Locate(ctx context.Context, c net.Conn) (Origin, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return Origin{}, fmt.Errorf("locate %s: not a TCP connection", c.RemoteAddr())
	}
	peer, err := netip.ParseAddrPort(tc.RemoteAddr().String())
	if err != nil {
		return Origin{}, fmt.Errorf("locate %s: %w", tc.RemoteAddr(), err)
	}
	local, err := netip.ParseAddrPort(tc.LocalAddr().String())
	if err != nil {
		return Origin{}, fmt.Errorf("locate %s: %w", tc.RemoteAddr(), err)
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	diag, err := sockdiag.Dial()
	if err != nil {
		return Origin{}, err
	}
	defer diag.Close()

	var o Origin
	var owner sockdiag.Owner
	dst, natErr := originalDst(tc, local.Addr().Is4())
	if natErr == nil && dst != local {
		o.Dst = dst
		owner, err = diag.Lookup(peer, dst)
		if err != nil {
			return o, nil // the destination is known, the owner gone already
		}
	} else {
		owner, err = diag.Lookup(peer, local)
		if err != nil {
			return Origin{}, fmt.Errorf("locate %s: no NAT record (%v) and %w", peer, natErr, err)
		}
		if f.ByCookie == nil {
			return Origin{}, fmt.Errorf("locate %s: no NAT record: %w", peer, natErr)
		}
		d, ok := f.ByCookie(owner.Cookie)
		if !ok {
			return Origin{}, fmt.Errorf("locate %s: no original destination recorded for socket cookie %d", peer, owner.Cookie)
		}
		o.Dst = d
	}
	o.UID, o.HasUID = owner.UID, true
	if pid, ok := f.Proc.SocketPID(ctx, owner.Inode, owner.UID); ok {
		o.PID = pid
		o.Proc, _ = f.Proc.Read(pid)
	}
	return o, nil
}

// originalDst asks conntrack where the connection was headed before NAT.
func originalDst(c *net.TCPConn, v4 bool) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var dst netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		if v4 {
			// sockaddr_in in the first 16 of IPv6Mreq's 20 bytes.
			var m *unix.IPv6Mreq
			m, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IP, soOriginalDst)
			if serr == nil {
				b := m.Multiaddr
				dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
			}
			return
		}
		// sockaddr_in6 is IPv6MTUInfo's first 28 bytes.
		var m *unix.IPv6MTUInfo
		m, serr = unix.GetsockoptIPv6MTUInfo(int(fd), unix.IPPROTO_IPV6, soOriginalDst)
		if serr == nil {
			var port [2]byte
			binary.NativeEndian.PutUint16(port[:], m.Addr.Port) // network order in memory
			dst = netip.AddrPortFrom(netip.AddrFrom16(m.Addr.Addr), binary.BigEndian.Uint16(port[:]))
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	if !dst.IsValid() {
		return netip.AddrPort{}, errors.New("original destination: none")
	}
	return dst, nil
}
