//go:build linux

package sockdiag

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// TCP states as the kernel numbers them (include/net/tcp_states.h).
const (
	stateEstablished = 1
	stateSynSent     = 2
	stateSynRecv     = 3
	stateCloseWait   = 8
)

// outgoingStates are the states of a connection that can still carry mail.
const outgoingStates = 1<<stateEstablished | 1<<stateSynSent | 1<<stateSynRecv | 1<<stateCloseWait

// Sizes of the kernel structures (include/uapi/linux/inet_diag.h).
const (
	sizeofSockID = 48 // inet_diag_sockid
	sizeofReqV2  = 8 + sizeofSockID
	sizeofMsg    = 4 + sizeofSockID + 20 // inet_diag_msg
)

// Socket is one TCP connection the kernel reported.
type Socket struct {
	UID uint32
	Src netip.AddrPort
	Dst netip.AddrPort
	// id is the kernel's identification of the socket (addresses, ports,
	// interface and cookie), sent back as-is to destroy exactly this one.
	id     [sizeofSockID]byte
	family uint8
}

// ErrUnsupported is returned (wrapped) when the kernel cannot destroy sockets.
var ErrUnsupported = errors.New("this kernel cannot end established connections (CONFIG_INET_DIAG_DESTROY)")

// Conn is a sock_diag netlink socket in the calling thread's network namespace.
type Conn struct{ c *netlink.Conn }

// Dial opens a sock_diag socket.
func Dial() (*Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	return &Conn{c: c}, nil
}

// Close releases the socket.
func (c *Conn) Close() error { return c.c.Close() }

// TCP lists IPv4 and IPv6 TCP connections that could still carry data
// (established, connecting, or half-closed by the peer).
func (c *Conn) TCP() ([]Socket, error) {
	var out []Socket
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		req := request(family, outgoingStates, [sizeofSockID]byte{})
		msgs, err := c.c.Execute(netlink.Message{
			Header: netlink.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: netlink.Request | netlink.Dump},
			Data:   req,
		})
		if err != nil {
			return nil, fmt.Errorf("list TCP sockets (family %d): %w", family, err)
		}
		for _, m := range msgs {
			s, ok := parse(m.Data)
			if ok {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// Destroy ends s: the local process's next read or write fails with
// ECONNABORTED and the peer receives a reset. A socket that is already gone
// is success.
func (c *Conn) Destroy(s Socket) error {
	_, err := c.c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.SOCK_DESTROY, Flags: netlink.Request | netlink.Acknowledge},
		Data:   request(s.family, 0xffffffff, s.id),
	})
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("end connection %s -> %s: %w", s.Src, s.Dst, ErrUnsupported)
	}
	return fmt.Errorf("end connection %s -> %s of uid %d: %w", s.Src, s.Dst, s.UID, err)
}

// request encodes an inet_diag_req_v2 for TCP.
func request(family uint8, states uint32, id [sizeofSockID]byte) []byte {
	b := make([]byte, sizeofReqV2)
	b[0], b[1] = family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:8], states)
	copy(b[8:], id[:])
	return b
}

// parse decodes an inet_diag_msg.
func parse(b []byte) (Socket, bool) {
	if len(b) < sizeofMsg {
		return Socket{}, false
	}
	s := Socket{family: b[0]}
	copy(s.id[:], b[4:4+sizeofSockID])
	id := b[4 : 4+sizeofSockID]
	sport := binary.BigEndian.Uint16(id[0:2])
	dport := binary.BigEndian.Uint16(id[2:4])
	var src, dst netip.Addr
	switch s.family {
	case unix.AF_INET:
		src = netip.AddrFrom4([4]byte(id[4:8]))
		dst = netip.AddrFrom4([4]byte(id[20:24]))
	case unix.AF_INET6:
		src = netip.AddrFrom16([16]byte(id[4:20]))
		dst = netip.AddrFrom16([16]byte(id[20:36]))
	default:
		return Socket{}, false
	}
	s.Src, s.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	s.UID = binary.NativeEndian.Uint32(b[4+sizeofSockID+12 : 4+sizeofSockID+16])
	return s, true
}

// Ender ends the connections a ruleset refuses. It is the engine's
// SessionEnder on Linux.
type Ender struct {
	// LocalAddrs lists this host's addresses (default: every interface's),
	// which a ruleset that allows local destinations lets through.
	LocalAddrs func() ([]netip.Addr, error)
}

// EndDisallowed ends every TCP connection that rs would refuse if it were
// opened now: a restricted port, a uid that is not allowed and a destination
// that is neither local (when allowed) nor an exception. Log mode refuses
// nothing, so it ends nothing. It returns how many it ended.
func (en Ender) EndDisallowed(ctx context.Context, rs policy.Ruleset) (int, error) {
	if rs.Mode == policy.ModeLog || len(rs.Ports) == 0 {
		return 0, nil
	}
	localAddrs := en.LocalAddrs
	if localAddrs == nil {
		localAddrs = interfaceAddrs
	}
	addrs, err := localAddrs()
	if err != nil {
		return 0, fmt.Errorf("list this host's addresses: %w", err)
	}
	local := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		local[a.Unmap()] = true
	}
	c, err := Dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	socks, err := c.TCP()
	if err != nil {
		return 0, err
	}
	ended := 0
	var errs []error
	for _, s := range socks {
		if err := ctx.Err(); err != nil {
			return ended, err
		}
		dst := s.Dst.Addr().Unmap()
		v := rs.Trace(policy.Packet{UID: s.UID, Dst: dst, DstPort: s.Dst.Port(), DstLocal: dst.IsLoopback() || local[dst]})
		if v != policy.VerdictReject && v != policy.VerdictRedirect && v != policy.VerdictExplain {
			continue
		}
		if err := c.Destroy(s); err != nil {
			if errors.Is(err, ErrUnsupported) {
				return ended, err
			}
			errs = append(errs, err)
			continue
		}
		ended++
	}
	return ended, errors.Join(errs...)
}

func interfaceAddrs() ([]netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ifAddrs))
	for _, a := range ifAddrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}
